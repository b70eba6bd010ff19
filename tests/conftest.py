import os

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from model_bakery import baker
from pymongo import MongoClient
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from sessions_app.services import question_bank_load, session_create
from tests.engines import ScriptedTranscriber
from tests.support import EmbeddedMongo, Web, speak, wait_for
from transcription import storage

TEST_MONGODB_DB = "interview_practice_test"


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory):
    """The MongoDB the tests use: MONGODB_URI if set, else an embedded server started here."""
    uri = os.environ.get("MONGODB_URI")
    server = None
    if not uri:
        server = EmbeddedMongo(tmp_path_factory.mktemp("embedded-mongo")).start()
        uri = server.uri
    # Child processes (qcluster, gunicorn) inherit these.
    os.environ["MONGODB_URI"] = settings.MONGODB_URI = uri
    os.environ["MONGODB_DB"] = settings.MONGODB_DB = TEST_MONGODB_DB
    client = MongoClient(uri, serverSelectionTimeoutMS=1000)
    wait_for(lambda: _pings(client), timeout=60, what=f"MongoDB at {uri}")
    client.close()
    yield uri
    if server:
        server.stop()


def _pings(client) -> bool:
    try:
        return client.admin.command("ping")["ok"] == 1
    except Exception:
        return False


@pytest.fixture
def gridfs(mongo_uri):
    """The GridFS database, emptied before the test."""
    db = storage.get_database()
    db["fs.files"].delete_many({})
    db["fs.chunks"].delete_many({})
    return db


@pytest.fixture
def questions(db):
    question_bank_load()


@pytest.fixture
def user(db):
    return baker.make("auth.User", username="candidate")


@pytest.fixture
def other_user(db):
    return baker.make("auth.User", username="someone-else")


@pytest.fixture
def api_client(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def interview(user, questions):
    return session_create(user=user, question_count=3)


@pytest.fixture
def scripted_engine(settings):
    """Use an engine that returns the text registered for each audio, and counts calls."""
    settings.TRANSCRIBER = "tests.engines.ScriptedTranscriber"
    ScriptedTranscriber.reset()
    return ScriptedTranscriber


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("speech")


@pytest.fixture
def spoken(speech_dir):
    """Return real speech for a text (wav by default), made with espeak-ng and ffmpeg."""

    def make(text: str, fmt: str = "wav") -> bytes:
        return speak(text, fmt=fmt, workdir=speech_dir)

    return make


@pytest.fixture
def upload(api_client, django_capture_on_commit_callbacks):
    """POST audio to the upload endpoint, running its on-commit hooks as a real commit would."""

    def post(session_id, question_id, audio: bytes, *, name="answer.wav", content_type="audio/wav"):
        with django_capture_on_commit_callbacks(execute=True):
            return api_client.post(
                f"/api/upload-answer/{session_id}/{question_id}",
                {"audio": SimpleUploadedFile(name, audio, content_type=content_type)},
                format="multipart",
            )

    return post


@pytest.fixture
def start_web(tmp_path, mongo_uri):
    servers = []

    """Start the Procfile's web command (ASGI) on the test database; stopped after the test."""

    def start(name: str, **env) -> Web:
        servers.append(Web(tmp_path, name, **env))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
