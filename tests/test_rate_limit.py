"""The upload rate limit holds in total across gunicorn workers, through the shared cache."""

import re
import sys
from pathlib import Path

import pytest
import redis
import requests
from django.contrib.auth import get_user_model
from django.core.cache import cache
from rest_framework.authtoken.models import Token

from sessions_app.models import Answer
from sessions_app.services import session_create
from tests.support import Process, database_url, free_port, process_env, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

GUNICORN = Path(sys.executable).parent / "gunicorn"
WORKERS = 3
LIMIT = 5
UPLOADS = 12
# A database of its own, emptied before and after, so no earlier run's counts leak in.
TEST_REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture(params=["database", "redis"])
def shared_cache(request):
    """Return the environment that selects the cache, with that cache emptied around the test."""
    if request.param == "database":
        # Transactional tests do not flush the cache table: clear what earlier tests counted.
        cache.clear()
        yield {}
        cache.clear()
        return
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.flushdb()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {TEST_REDIS_URL} (start redis-server): {exc}")
    yield {"REDIS_URL": TEST_REDIS_URL}
    client.flushdb()
    client.close()


@pytest.fixture
def gunicorn(shared_cache, mongo_uri, tmp_path):
    """Serve the app with several gunicorn workers on the test database; return its URL."""
    port = free_port()
    server = Process(
        [
            str(GUNICORN),
            "interview_site.wsgi",
            f"--workers={WORKERS}",
            f"--bind=127.0.0.1:{port}",
            "--access-logfile=-",
            # The worker's pid first, so the test can tell which worker served each request.
            "--access-logformat=%(p)s %(s)s %(m)s %(U)s",
        ],
        log=tmp_path / "gunicorn.log",
        env=process_env(
            DATABASE_URL=database_url(), UPLOAD_RATE_LIMIT=f"{LIMIT}/minute", **shared_cache
        ),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: server.output().count("Booting worker") == WORKERS or not server.alive(),
            timeout=60,
            what="gunicorn workers to boot",
        )
        wait_for(lambda: answers(f"{url}/api/health") or not server.alive(), what="gunicorn")
        assert server.alive(), server.output()
        yield url, server
    finally:
        server.stop()


def answers(url: str) -> bool:
    try:
        requests.get(url, timeout=5)
    except (requests.ConnectionError, requests.Timeout):  # not up yet, or a busy machine
        return False
    return True


def test_upload_rate_limit_holds_in_total_across_gunicorn_workers(
    gunicorn, questions, gridfs, spoken
):
    url, server = gunicorn
    candidate = get_user_model().objects.create_user("fast-talker", password="not used here")
    token = Token.objects.create(user=candidate).key
    interview = session_create(user=candidate, question_count=UPLOADS)
    audio = spoken("I would measure it before changing anything.")

    responses = []
    for question in interview.ordered_questions():
        # A new connection for every request, so that whichever worker is free accepts it.
        responses.append(
            requests.post(
                f"{url}/api/upload-answer/{interview.pk}/{question.pk}",
                headers={"Authorization": f"Token {token}", "Connection": "close"},
                files={"audio": ("answer.wav", audio, "audio/wav")},
                timeout=30,
            )
        )

    assert [r.status_code for r in responses] == [202] * LIMIT + [429] * (UPLOADS - LIMIT)
    for refused in responses[LIMIT:]:
        assert 0 < int(refused.headers["Retry-After"]) <= 60
        error = refused.json()["error"]
        assert error["code"] == "throttled"
        assert "throttled" in error["message"].lower()
    # A refused upload stores nothing.
    assert Answer.objects.count() == LIMIT
    assert gridfs["fs.files"].count_documents({}) == LIMIT

    served_by = re.findall(r"^<(\d+)> (\d{3}) POST /api/upload-answer/", server.output(), re.M)
    assert len(served_by) == UPLOADS
    assert len({pid for pid, _ in served_by}) >= 2, served_by
