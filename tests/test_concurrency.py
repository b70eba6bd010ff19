"""Two qcluster processes race for 200 uploads, each job delivered twice: every answer is
transcribed by exactly one successful API request (CI runs this on PostgreSQL too)."""

from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django_q.models import Success
from rest_framework.test import APIClient

from sessions_app.models import Answer
from sessions_app.services import session_create
from tests.openai_server import FakeOpenAI
from tests.support import start_qcluster, wait_for
from transcription.services import _enqueue

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CANDIDATES = 20
ANSWERS_EACH = 10


def test_two_clusters_transcribe_200_uploads_exactly_once(questions, gridfs, spoken, tmp_path):
    api = FakeOpenAI(latency=(0.01, 0.1)).start()
    recordings = [spoken(f"Answer number {n}.", "webm") for n in range(5)]
    env = {
        "TRANSCRIBER": "openai",
        "OPENAI_BASE_URL": api.base_url,
        "OPENAI_API_KEY": "test-key",
        "Q_WORKERS": "3",
    }
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    clusters = [start_qcluster(tmp_path / "a", **env), start_qcluster(tmp_path / "b", **env)]
    try:
        for candidate in range(CANDIDATES):
            user = get_user_model().objects.create_user(f"candidate-{candidate}")
            client = APIClient()
            client.force_authenticate(user)
            session = session_create(user=user, question_count=ANSWERS_EACH)
            for n, question in enumerate(session.ordered_questions()):
                response = client.post(
                    f"/api/upload-answer/{session.pk}/{question.pk}",
                    {"audio": SimpleUploadedFile("a.webm", recordings[n % 5], "audio/webm")},
                    format="multipart",
                )
                assert response.status_code == 202, response.content
                # The broker hands every job out a second time.
                _enqueue(Answer.objects.latest("pk").transcription_id)

        total = CANDIDATES * ANSWERS_EACH
        wait_for(
            lambda: Answer.objects.filter(transcription__status="completed").count() == total,
            timeout=600,
            what=f"{total} transcripts",
        )
        wait_for(lambda: Success.objects.count() == 2 * total, what="every delivery to finish")
    finally:
        for cluster in clusters:
            cluster.stop()
        api.stop()

    answers = Answer.objects.all()
    assert answers.count() == total
    assert api.successes() == Counter(
        {f"transcription-{answer.transcription_id}": 1 for answer in answers}
    )
    assert Counter(task.result for task in Success.objects.all()) == {
        "completed": total,
        "not claimed": total,
    }
    assert {answer.transcription.attempts for answer in answers} == {1}
    assert gridfs["fs.files"].count_documents({}) == 0
    assert gridfs["fs.chunks"].count_documents({}) == 0
    for cluster in clusters:
        assert "processing transcribe-" in cluster.output()
