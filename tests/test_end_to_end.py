"""The whole pipeline over HTTP: a live server, a real qcluster process, the embedded MongoDB."""

import pytest
import requests
from bson import ObjectId
from django.contrib.auth import get_user_model

from sessions_app.services import session_create
from tests.engines import release_blocking_engine
from tests.support import start_qcluster, wait_for, word_error_rate

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def candidate(questions):
    return get_user_model().objects.create_user("speaker", password="correct horse battery")


@pytest.fixture
def http(live_server, candidate):
    """An HTTP client authenticated the way an API user is: with a token from the API."""
    token = requests.post(
        f"{live_server.url}/api/auth/token/",
        data={"username": "speaker", "password": "correct horse battery"},
        timeout=10,
    ).json()["token"]
    client = requests.Session()
    client.headers["Authorization"] = f"Token {token}"
    return client


def stored(gridfs, file_id) -> tuple[int, int]:
    """Return how many files documents and chunks GridFS holds for the file."""
    oid = ObjectId(file_id)
    return (
        gridfs["fs.files"].count_documents({"_id": oid}),
        gridfs["fs.chunks"].count_documents({"files_id": oid}),
    )


def gridfs_holds(gridfs, file_id) -> bool:
    """Whether the whole file is there: its files document and its chunks."""
    files, chunks = stored(gridfs, file_id)
    return files == 1 and chunks > 0


def gridfs_gone(gridfs, file_id) -> bool:
    """Whether nothing of the file is left (a deletion removes the document, then chunks)."""
    return stored(gridfs, file_id) == (0, 0)


def test_upload_answers_while_the_engine_is_blocked_and_status_moves_to_completed(
    live_server, http, candidate, gridfs, spoken, tmp_path
):
    interview = session_create(user=candidate, question_count=2)
    first, second = interview.ordered_questions()
    engine_dir = tmp_path / "engine"
    engine_dir.mkdir()

    def upload(question, text):
        return http.post(
            f"{live_server.url}/api/upload-answer/{interview.pk}/{question.pk}",
            files={"audio": ("answer.webm", spoken(text, "webm"), "audio/webm")},
            timeout=30,
        )

    def status(question):
        url = f"{live_server.url}/api/transcription-status/{interview.pk}/{question.pk}"
        return http.get(url, timeout=10).json()

    # No worker yet: the answer waits in the queue with its audio in GridFS.
    first_upload = upload(first, "My first answer.")
    assert first_upload.status_code == 202
    assert status(first)["status"] == "queued"
    assert gridfs_holds(gridfs, first_upload.json()["file_id"])

    cluster = start_qcluster(
        tmp_path,
        TRANSCRIBER="tests.engines.BlockingTranscriber",
        BLOCKING_ENGINE_DIR=str(engine_dir),
        Q_WORKERS="1",
    )
    try:
        wait_for(lambda: status(first)["status"] == "processing", what="the worker to claim it")
        wait_for(lambda: list(engine_dir.glob("started-*")), what="the engine to start")

        # The engine is blocked until released, and the upload still answers at once.
        second_upload = upload(second, "My second answer.")
        assert second_upload.status_code == 202
        assert second_upload.json()["transcription_status"] == "queued"
        assert not (engine_dir / "release").exists()
        assert status(first)["status"] == "processing"
        assert gridfs_holds(gridfs, first_upload.json()["file_id"])
        assert gridfs_holds(gridfs, second_upload.json()["file_id"])

        release_blocking_engine(engine_dir, "released transcript of")
        wait_for(
            lambda: status(first)["status"] == status(second)["status"] == "completed",
            timeout=60,
            what="both transcriptions",
        )
        # The audio goes right after the transcript is committed.
        wait_for(
            lambda: (
                gridfs_gone(gridfs, first_upload.json()["file_id"])
                and gridfs_gone(gridfs, second_upload.json()["file_id"])
            ),
            what="the audio to be deleted",
        )
    finally:
        cluster.stop()

    assert status(first)["transcript"].startswith("released transcript of")
    assert status(first)["transcribed_at"]


def test_spoken_answer_is_transcribed_by_the_local_engine_in_a_real_worker(
    live_server, http, candidate, gridfs, spoken, tmp_path
):
    # Three sentences, so one misheard phrase (the job's prompt is the random question's
    # text) does not decide the word error rate on its own.
    said = (
        "I would add an index to the column and measure the query again. "
        "Then I would read the slow query log and compare the plans before and after. "
        "If the writes got slower, I would keep the index only on the busiest column."
    )
    created = http.post(
        f"{live_server.url}/api/sessions/", json={"question_count": 1}, timeout=10
    ).json()
    session_id, question_id = created["id"], created["questions"][0]["id"]

    cluster = start_qcluster(tmp_path, TRANSCRIBER="local")
    try:
        uploaded = http.post(
            f"{live_server.url}/api/upload-answer/{session_id}/{question_id}",
            files={"audio": ("answer.webm", spoken(said, "webm"), "audio/webm")},
            timeout=30,
        )
        assert uploaded.status_code == 202
        url = f"{live_server.url}/api/transcription-status/{session_id}/{question_id}"
        result = wait_for(
            lambda: (body := http.get(url, timeout=10).json())["status"] == "completed" and body,
            timeout=180,
            what="the local engine's transcript",
        )
        wait_for(
            lambda: gridfs_gone(gridfs, uploaded.json()["file_id"]),
            what="the audio to be deleted",
        )
    finally:
        cluster.stop()

    assert word_error_rate(said, result["transcript"]) <= 0.25, result["transcript"]
    analysis = http.post(f"{live_server.url}/api/analyze/{session_id}", timeout=30)
    assert analysis.status_code == 200
    assert analysis.json()["final_score"] == analysis.json()["answers"][0]["score"]
    assert "Transcription completed" in cluster.output()
    assert "Audio deleted after transcription" in cluster.output()
