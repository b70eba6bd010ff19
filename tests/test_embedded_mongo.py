"""The embedded MongoDB (SecantusDB, WiredTiger) and the app's GridFS writes: an accepted
upload survives the server's crash, a failed write leaves nothing, and an upload's memory
is one chunk, not the file."""

import hashlib
import io
import math
import os
import signal
import struct
import sys
import threading
import time
import wave
from pathlib import Path

import gridfs
import pytest
import requests
from bson import ObjectId
from rest_framework.authtoken.models import Token

from harness import reset_peak_rss, rss_kib
from sessions_app.services import session_create
from tests.openai_server import openai_server_fixture  # noqa: F401
from tests.support import (
    EmbeddedMongo,
    Process,
    database_url,
    free_port,
    process_env,
    start_qcluster,
    wait_for,
)
from transcription import storage

GUNICORN = Path(sys.executable).parent / "gunicorn"


@pytest.fixture
def own_mongo(settings, tmp_path, mongo_uri):
    """An embedded MongoDB of this test's own, which the test may kill and restart."""
    mongo = EmbeddedMongo(tmp_path).start()
    settings.MONGODB_URI = mongo.uri
    settings.MONGODB_TIMEOUT_MS = 1000
    yield mongo
    mongo.stop()


def serve(tmp_path: Path, *, args: list[str], env: dict[str, str]) -> tuple[Process, str]:
    """Serve the app with gunicorn on the test database; return the process and its URL."""
    port = free_port()
    server = Process(
        [str(GUNICORN), "interview_site.wsgi", f"--bind=127.0.0.1:{port}", *args],
        log=tmp_path / "gunicorn.log",
        env=process_env(DATABASE_URL=database_url(), UPLOAD_RATE_LIMIT="100000/minute", **env),
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(
        lambda: _answers(f"{url}/api/health") or not server.alive(), timeout=60, what="gunicorn"
    )
    assert server.alive(), server.output()
    return server, url


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False


def upload(url, token, session_id, question_id, audio: bytes, name="answer.wav"):
    return requests.post(
        f"{url}/api/upload-answer/{session_id}/{question_id}",
        files={"audio": (name, audio, "audio/wav")},
        headers={"Authorization": f"Token {token}"},
        timeout=120,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_server_killed_during_a_burst_every_accepted_upload_survives_and_completes(
    own_mongo, questions, user, openai_server, spoken, tmp_path
):
    audio = spoken("This answer was accepted, so it must survive the crash of the store.")
    digest = hashlib.sha256(audio).hexdigest()
    token = Token.objects.create(user=user).key
    sessions = [session_create(user=user, question_count=6) for _ in range(4)]
    web, url = serve(
        tmp_path,
        args=["--workers=2", "--threads=4", "--worker-class=gthread"],
        # 24 answers of one candidate wait at once here: no worker runs during the burst.
        env={
            "MONGODB_URI": own_mongo.uri,
            "MONGODB_TIMEOUT_MS": "1000",
            "MAX_PENDING_PER_USER": "100",
        },
    )
    results: list[tuple[int, int, int, dict, float]] = []
    lock = threading.Lock()
    start = threading.Barrier(len(sessions) + 1)

    def candidate(session) -> None:
        start.wait()
        for question in session.ordered_questions():
            response = upload(url, token, session.pk, question.pk, audio)
            with lock:
                results.append(
                    (
                        session.pk,
                        question.pk,
                        response.status_code,
                        response.json(),
                        time.monotonic(),
                    )
                )

    threads = [threading.Thread(target=candidate, args=(s,), daemon=True) for s in sessions]
    try:
        for thread in threads:
            thread.start()
        start.wait()
        wait_for(
            lambda: sum(status == 202 for _, _, status, _, _ in results) >= 6,
            what="the first uploads",
        )
        own_mongo.kill()
        killed_at = time.monotonic()
        wait_for(
            lambda: sum(status == 503 for _, _, status, _, _ in results) >= 2,
            what="uploads refused while the store is down",
        )
        own_mongo.start()
        for thread in threads:
            thread.join(120)
    finally:
        web.stop()

    accepted = [r for r in results if r[2] == 202]
    refused = [r for r in results if r[2] != 202]
    assert len(results) == 24
    # The burst went on across the crash: uploads accepted after the restart too.
    assert any(at > killed_at for *_, status, _, at in results if status == 202)
    assert {status for _, _, status, _, _ in refused} == {503}
    assert all(body["error"]["code"] == "storage_unavailable" for _, _, _, body, _ in refused)
    # Every accepted upload's audio is readable, byte for byte, after the kill and restart.
    for _, _, _, body, _ in accepted:
        assert hashlib.sha256(storage.get_audio(body["file_id"])).hexdigest() == digest

    cluster = start_qcluster(
        tmp_path,
        MONGODB_URI=own_mongo.uri,
        TRANSCRIBER="openai",
        OPENAI_BASE_URL=openai_server.base_url,
        OPENAI_API_KEY="test-key",
        Q_WORKERS="2",
    )
    api = requests.Session()
    api.headers["Authorization"] = f"Token {token}"

    def status(session_id, question_id) -> dict:
        return api.get(
            f"{url}/api/transcription-status/{session_id}/{question_id}", timeout=10
        ).json()

    web, url = serve(tmp_path, args=["--workers=1"], env={"MONGODB_URI": own_mongo.uri})
    try:
        for session_id, question_id, _, body, _ in accepted:
            wait_for(
                lambda s=session_id, q=question_id: status(s, q).get("status") == "completed",
                timeout=60,
                what=f"answer {session_id}/{question_id} to complete",
            )
            wait_for(
                lambda f=body["file_id"]: not storage.audio_exists(f),
                what="its audio to be deleted after the transcript",
            )
        for session_id, question_id, _, _, _ in refused:
            # Refused: the candidate was told nothing was saved, and nothing was.
            assert status(session_id, question_id)["error"]["code"] == "answer_not_found"
    finally:
        cluster.stop()
        web.stop()
    assert openai_server.successes()
    assert sum(openai_server.successes().values()) == len(accepted)


class FailingAfter(io.BytesIO):
    """An upload whose reading fails after ``chunks`` chunks, as a dropped connection would."""

    def __init__(self, data: bytes, chunks: int):
        super().__init__(data)
        self.left = chunks

    def read(self, size=-1):
        if self.left == 0:
            raise OSError("connection reset while reading the upload")
        self.left -= 1
        return super().read(size)


@pytest.mark.slow
def test_a_deleted_recording_leaves_no_copy_anywhere_in_the_embedded_server(own_mongo):
    # Only text is kept. A replica set's oplog would keep a copy of every chunk it was sent
    # (SecantusDB's default persona: for an hour) after the audio itself is deleted.
    marker = b"recording-" + os.urandom(8).hex().encode()
    audio = marker * (storage.CHUNK_SIZE // len(marker) + 100)  # two chunks
    file_id = storage.store_audio(
        audio, metadata={"session_id": 1, "question_id": 2, "user_id": 3}, content_type="audio/wav"
    )
    database = storage.get_database()

    assert storage.get_audio(file_id) == audio
    assert holders_of(database.client, marker) == [f"{database.name}.fs.chunks"]

    assert storage.delete_audio(file_id)

    assert holders_of(database.client, marker) == []


def holders_of(client, needle: bytes) -> list[str]:
    """Every collection of every database (the oplog included) that holds ``needle``."""
    found = []
    for database in sorted({*client.list_database_names(), "local"}):
        names = set(client[database].list_collection_names())
        if database == "local":
            names.add("oplog.rs")
        for name in sorted(names):
            batches = client[database][name].find_raw_batches()
            if any(needle in bytes(batch) for batch in batches):
                found.append(f"{database}.{name}")
    return found


@pytest.mark.django_db
def test_a_write_that_fails_midway_leaves_no_chunk_and_no_file(gridfs):
    data = bytes(range(256)) * (storage.CHUNK_SIZE * 3 // 256 + 7)

    with pytest.raises(OSError, match="connection reset"):
        storage.store_audio(
            FailingAfter(data, chunks=2),
            metadata={"session_id": 1, "question_id": 2, "user_id": 3},
            content_type="audio/wav",
        )

    assert gridfs["fs.files"].count_documents({}) == 0
    assert gridfs["fs.chunks"].count_documents({}) == 0


@pytest.mark.django_db
def test_a_write_whose_files_document_is_refused_removes_its_chunks(gridfs, monkeypatch):
    data = b"\x00" * (storage.CHUNK_SIZE * 2 + 5)
    file_id = ObjectId()
    # The files document's insert is refused (its id is taken) after every chunk was written.
    gridfs["fs.files"].insert_one({"_id": file_id, "length": 0, "chunkSize": 1, "note": "taken"})
    monkeypatch.setattr(storage, "ObjectId", lambda: file_id)

    with pytest.raises(storage.StorageUnavailable):
        storage.store_audio(
            data,
            metadata={"session_id": 1, "question_id": 2, "user_id": 3},
            content_type="audio/wav",
        )

    assert gridfs["fs.chunks"].count_documents({}) == 0
    gridfs["fs.files"].delete_one({"_id": file_id})


class Watched(io.BytesIO):
    """An upload that notes, at each read, how many files a reader would find."""

    def __init__(self, data: bytes, database):
        super().__init__(data)
        self.database = database
        self.files_seen: list[int] = []

    def read(self, size=-1):
        self.files_seen.append(self.database["fs.files"].count_documents({}))
        return super().read(size)


@pytest.mark.django_db
def test_stored_audio_is_standard_gridfs_chunks_in_order_and_the_file_last(gridfs):
    data = bytes(range(256)) * (storage.CHUNK_SIZE * 2 // 256 + 1000)
    source = Watched(data, gridfs)

    file_id = storage.store_audio(
        source, metadata={"session_id": 4, "question_id": 5, "user_id": 6}, content_type="audio/ogg"
    )

    # While its chunks were being written no reader could find the file.
    assert source.files_seen == [0, 0, 0, 0]

    chunks = list(gridfs["fs.chunks"].find({"files_id": ObjectId(file_id)}).sort("n"))
    assert [chunk["n"] for chunk in chunks] == [0, 1, 2]
    assert b"".join(chunk["data"] for chunk in chunks) == data
    stored = gridfs["fs.files"].find_one({"_id": ObjectId(file_id)})
    assert stored["length"] == len(data)
    assert stored["metadata"]["content_type"] == "audio/ogg"
    # Any GridFS reader (the driver's own here) reads it back.
    assert gridfs_bucket(gridfs).open_download_stream(ObjectId(file_id)).read() == data
    indexes = {tuple(index["key"].items()) for index in gridfs["fs.chunks"].list_indexes()}
    assert (("files_id", 1), ("n", 1)) in indexes


def gridfs_bucket(database):
    return gridfs.GridFSBucket(database)


def large_wav(size: int) -> bytes:
    """A WAV of ``size`` bytes: a tone at 44.1 kHz mono (about 280 s, under the length limit)."""
    frames = (size - 44) // 2
    period = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 44100))) for i in range(100)
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(44100)
        writer.writeframes((period * (frames // 100 + 1))[: frames * 2])
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_25_mb_upload_raises_the_serving_workers_memory_by_less_than_16_mb(
    questions, user, gridfs, spoken, tmp_path
):
    token = Token.objects.create(user=user).key
    session = session_create(user=user, question_count=4)
    first, second, third, large = session.ordered_questions()
    audio = large_wav(24_900_000)
    web, url = serve(tmp_path, args=["--workers=1", "--timeout=120"], env={})
    try:
        (worker,) = wait_for(lambda: web.children(), what="the gunicorn worker")
        # Warm the worker up as serving would: imports, connections, the temp-file path.
        for question, warmup in [
            (first, spoken("warming up")),
            (second, large_wav(3_000_000)),
            (third, large_wav(3_000_000)),
        ]:
            assert upload(url, token, session.pk, question.pk, warmup).status_code == 202
        assert reset_peak_rss(worker)
        idle, _ = rss_kib(worker)

        response = upload(url, token, session.pk, large.pk, audio)

        _, peak = rss_kib(worker)
    finally:
        web.stop()
    assert response.status_code == 202, response.text
    stored = gridfs["fs.files"].find_one({"_id": ObjectId(response.json()["file_id"])})
    assert stored["length"] == len(audio)
    growth_mib = (peak - idle) / 1024
    assert growth_mib < 16, f"the worker grew by {growth_mib:.1f} MiB (idle {idle / 1024:.0f})"


def test_embedded_mongo_stops_on_sigint_and_sigterm(tmp_path):
    for sig in (signal.SIGINT, signal.SIGTERM):
        mongo = EmbeddedMongo(tmp_path / sig.name)
        (tmp_path / sig.name).mkdir()
        mongo.start()
        assert "SecantusDB" in mongo.process.output()
        mongo.process.popen.send_signal(sig)
        assert mongo.process.popen.wait(20) == 0
        assert not mongo.answers()
        mongo.stop()
