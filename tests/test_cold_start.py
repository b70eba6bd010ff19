"""No cold start: qcluster imports the engine before it forks, each worker loads it at spawn."""

import re
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from sessions_app.models import Answer
from sessions_app.services import session_create
from tests.openai_server import FakeOpenAI
from tests.support import start_qcluster, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_every_worker_has_the_local_engine_loaded_before_its_first_job(tmp_path, mongo_uri):
    cluster = start_qcluster(tmp_path, TRANSCRIBER="local", Q_WORKERS="2")
    try:
        wait_for(
            lambda: cluster.output().count("Transcription engine ready in") == 2,
            timeout=120,
            what="both workers to load the engine",
        )
        log = cluster.output()
    finally:
        cluster.stop()

    imported = log.index("Transcription engine imported in")
    # Imported once in the parent, before any worker process existed ...
    assert imported < log.index("ready for work")
    # ... and each worker loaded the model as it spawned, not when a job arrived.
    ready = re.findall(r"Transcription engine ready in (Process-\S+) in", log)
    workers = re.findall(r"(Process-\S+) ready for work", log)
    assert sorted(ready) == sorted(workers)


def test_a_worker_s_first_openai_job_imports_nothing(tmp_path, questions, gridfs, spoken):
    """The OpenAI engine's cold start: the SDK's audio API (imported on a client's first use),
    PyAV's stream classes, langcodes' names and the job's own module are all imported before
    the fork. Python reports every import it makes (``PYTHONPROFILEIMPORTTIME``)."""
    api = FakeOpenAI().start()
    cluster = start_qcluster(
        tmp_path,
        TRANSCRIBER="openai",
        OPENAI_BASE_URL=api.base_url,
        OPENAI_API_KEY="test-key",
        Q_WORKERS="1",
        PYTHONPROFILEIMPORTTIME="1",
    )
    try:
        wait_for(lambda: "Transcription engine ready in" in cluster.output(), what="the worker")
        ready = len(cluster.output())
        user = get_user_model().objects.create_user("candidate")
        client = APIClient()
        client.force_authenticate(user)
        session = session_create(user=user, question_count=1)
        question = session.ordered_questions()[0]
        response = client.post(
            f"/api/upload-answer/{session.pk}/{question.pk}",
            {"audio": SimpleUploadedFile("a.webm", spoken("My answer.", "webm"), "audio/webm")},
            format="multipart",
        )
        assert response.status_code == 202, response.content
        wait_for(
            lambda: Answer.objects.filter(transcription__status="completed").exists(),
            what="the transcript",
        )
        log = cluster.output()
    finally:
        cluster.stop()
        api.stop()

    assert "Transcription engine imported in" in log[:ready]
    assert "import time:" in log[:ready]  # the report is on: the parent's imports are in it
    during_the_first_job = [line for line in log[ready:].splitlines() if "import time:" in line]
    assert during_the_first_job == []
    assert api.successes() == Counter(
        {f"transcription-{answer.transcription_id}": 1 for answer in Answer.objects.all()}
    )
