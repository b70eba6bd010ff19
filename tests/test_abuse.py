"""Abuse resistance, attacked through the Procfile's own web command (gunicorn, uvicorn workers).

Each test does what an attacker or an outage would: release concurrent uploads together,
forge a file's header, send a huge or a slow body, brute-force a password, stop MongoDB.
"""

import contextlib
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import av
import pytest
import redis
import requests
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connections
from django.test import Client
from django_q.models import OrmQ
from requests.structures import CaseInsensitiveDict
from rest_framework.authtoken.models import Token

from sessions_app.models import Answer
from sessions_app.services import session_create
from sessions_app.throttling import AtomicRateThrottle
from tests.openai_server import openai_server_fixture  # noqa: F401
from tests.support import (
    EmbeddedMongo,
    Process,
    database_url,
    free_port,
    process_env,
    procfile_web_command,
    run_queued_jobs,
    start_qcluster,
    wait_for,
)
from transcription.audio import decoded_length
from transcription.models import Transcription

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TEST_REDIS_URL = "redis://127.0.0.1:6379/11"
PASSWORD = "a long and unusual passphrase"
MB = 1024 * 1024


class Stack:
    """The Procfile's web command serving the test database, with its log and temp folder."""

    def __init__(self, tmp_path: Path, *, gunicorn_args: str = "", **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmpdir = tmp_path / "server-tmp"
        self.tmpdir.mkdir(exist_ok=True)
        args = "--access-logformat='%(p)s %(s)s %(m)s %(U)s' " + gunicorn_args
        self.server = Process(
            ["bash", "-c", f"exec {procfile_web_command()}"],
            log=tmp_path / f"web-{self.port}.log",
            env=process_env(
                PORT=str(self.port),
                # As honcho runs the Procfile: the project's virtualenv first on PATH.
                PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                DATABASE_URL=database_url(),
                # Where Django and gunicorn would spool a body: watched by the tests.
                TMPDIR=str(self.tmpdir),
                FILE_UPLOAD_TEMP_DIR=str(self.tmpdir),
                GUNICORN_CMD_ARGS=args,
                **env,
            ),
        )
        try:
            wait_for(
                lambda: self._answers() or not self.server.alive(), timeout=60, what="gunicorn"
            )
            assert self.server.alive(), self.server.output()
        except BaseException:
            self.server.stop()
            raise

    def _answers(self) -> bool:
        try:
            # Not the health URL: some tests need its first check to happen under attack.
            requests.get(f"{self.url}/api/sessions", timeout=10)
        except requests.RequestException:  # not listening yet, or still importing the app
            return False
        return True

    def output(self) -> str:
        return self.server.output()

    def stop(self):
        self.server.stop()


@pytest.fixture
def start_stack(tmp_path, mongo_uri):
    stacks = []

    def start(**env) -> Stack:
        stacks.append(Stack(tmp_path, **env))
        return stacks[-1]

    yield start
    for stack in stacks:
        stack.stop()


@pytest.fixture
def shared_cache(request):
    """The cache the stack counts in, emptied around the test: the database's or Redis."""
    if request.param == "database":
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


def candidate(name: str = "candidate", **fields):
    user = get_user_model().objects.create_user(name, password=PASSWORD, **fields)
    return user, Token.objects.create(user=user).key


def wav(seconds: float, workdir: Path, *, rate: int = 16000) -> bytes:
    """A tone of that length, as 16-bit mono WAV (32 KB a second at 16 kHz)."""
    out = workdir / f"tone-{seconds}-{rate}.wav"
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-ar", str(rate), out)
    return out.read_bytes()


def ffmpeg(*args) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *map(str, args)], check=True)


class HeldRequest:
    """A raw HTTP/1.0 request sent all but its last header bytes, finished on release().

    gunicorn cannot start a request before its headers end, so requests held this way
    reach the application together when released; the connection is already accepted
    (and counted) by one worker meanwhile.
    """

    def __init__(self, port: int, prepared: requests.PreparedRequest):
        path = prepared.path_url
        headers = "".join(f"{k}: {v}\r\n" for k, v in prepared.headers.items())
        self.head = f"{prepared.method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{headers}\r\n"
        self.body = prepared.body or b""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(self.head[:-2].encode())

    def release(self) -> None:
        self.sock.sendall(b"\r\n" + self.body)

    def response(self) -> tuple[int, dict, bytes]:
        data = b""
        while chunk := self.sock.recv(65536):
            data += chunk
        self.sock.close()
        return parse_response(data)


def parse_response(data: bytes) -> tuple[int, dict, bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    # Names are case-insensitive (uvicorn's httptools protocol sends them in lower case).
    headers = CaseInsensitiveDict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def prepared_upload(url: str, token: str, audio: bytes, name="answer.wav", mime="audio/wav"):
    return requests.Request(
        "POST",
        url,
        headers={"Authorization": f"Token {token}"},
        files={"audio": (name, audio, mime)},
    ).prepare()


# --- 1. The upload limit is exact under concurrency ------------------------------------


@pytest.mark.parametrize("shared_cache", ["database", "redis"], indirect=True)
def test_twelve_uploads_released_together_across_two_web_processes_accept_exactly_the_limit(
    shared_cache, start_stack, questions, gridfs, tmp_path
):
    limit, uploads = 5, 12
    # Two web processes (the Procfile's command each), six held connections on each: both
    # count in the shared cache. (Uvicorn workers of one gunicorn take connections as the
    # kernel hands them out, so two processes behind one port would split them by luck.)
    stacks = [
        start_stack(UPLOAD_RATE_LIMIT=f"{limit}/minute", WEB_CONCURRENCY="1", **shared_cache)
        for _ in range(2)
    ]
    user, token = candidate("fast-talker")
    interview = session_create(user=user, question_count=uploads)
    audio = wav(1, tmp_path)

    held = [
        HeldRequest(
            stacks[index % 2].port,
            prepared_upload(
                f"{stacks[index % 2].url}/api/upload-answer/{interview.pk}/{q.pk}", token, audio
            ),
        )
        for index, q in enumerate(interview.ordered_questions())
    ]
    for request in held:
        request.release()
    responses = [request.response() for request in held]

    statuses = sorted(status for status, _, _ in responses)
    assert statuses == [202] * limit + [429] * (uploads - limit), statuses
    for status, headers, body in responses:
        if status == 429:
            assert 0 < int(headers["Retry-After"]) <= 60
            assert json.loads(body)["error"]["code"] == "throttled"
    # Nothing is stored for the refused seven: no answer, no audio, no job.
    assert Answer.objects.count() == limit
    assert gridfs["fs.files"].count_documents({}) == limit
    assert OrmQ.objects.count() == limit
    # Each web process served six of the uploads (the limit held across processes).
    for stack in stacks:
        served = re.findall(r'"POST /api/upload-answer/\S+ HTTP/1.0" (\d{3})', stack.output())
        assert len(served) == uploads // 2, stack.output()[-3000:]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("shared_cache", ["database", "redis"], indirect=True)
def test_sixty_requests_released_together_in_threads_claim_exactly_forty_slots(
    shared_cache, settings
):
    """Past the batch of slots each request reads, and past the hint's every-16 steps."""
    if "REDIS_URL" in shared_cache:
        settings.CACHES = {
            "default": {"BACKEND": "monitoring.cache.RedisCache", "LOCATION": TEST_REDIS_URL}
        }
    limit, requests_count = 40, 60

    class Throttle(AtomicRateThrottle):
        def get_rate(self):
            return f"{limit}/minute"

    view = SimpleNamespace(throttle_scope="uploads")
    request = SimpleNamespace(method="POST", user=SimpleNamespace(is_authenticated=True, pk=7))
    start = threading.Barrier(requests_count)
    allowed = []

    def claim():
        start.wait()
        allowed.append(Throttle().allow_request(request, view))
        connections.close_all()

    threads = [threading.Thread(target=claim) for _ in range(requests_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(allowed) == [False] * (requests_count - limit) + [True] * limit
    # And one at a time after them: the window is full.
    assert not Throttle().allow_request(request, view)


@pytest.mark.django_db
@pytest.mark.parametrize("shared_cache", ["database"], indirect=True)
def test_database_cache_add_claims_a_key_once_and_again_only_once_it_has_expired(shared_cache):
    """The throttle's slots: add is one upsert on the database cache (monitoring.cache)."""
    assert cache.add("slot", "first", 60)
    assert not cache.add("slot", "second", 60)
    assert cache.get("slot") == "first"
    cache.touch("slot", -5)  # its expiry now 5 s in the past
    assert cache.add("slot", "third", 60)
    assert cache.get("slot") == "third"
    assert not cache.add("slot", "fourth", 60)


# --- 2. A forged duration costs at most the limit of measuring --------------------------


def forge_webm_duration(data: bytes, seconds: float) -> bytes:
    """Rewrite the Segment Info Duration element (float, in TimecodeScale ms units)."""
    at = data.index(b"\x44\x89")
    size = data[at + 2] & 0x7F
    fmt = {8: ">d", 4: ">f"}[size]
    return data[: at + 3] + struct.pack(fmt, seconds * 1000) + data[at + 3 + size :]


def test_webm_whose_header_claims_1s_over_120s_of_audio_fails_after_measuring_the_limit(
    start_stack, questions, gridfs, tmp_path, scripted_engine, settings, caplog
):
    """Accepted by the Procfile's web (the length is the job's to measure, so uploads stay
    fast), then failed by its job after measuring just past the limit: the engine never
    hears it, and the candidate reads why."""
    source = tmp_path / "long.webm"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=120", "-c:a", "libopus", source)
    forged = forge_webm_duration(source.read_bytes(), 1.0)
    with av.open(io.BytesIO(forged)) as container:
        assert container.duration / 1e6 == pytest.approx(1.0)  # the header lies
    settings.MAX_ANSWER_SECONDS = 10
    stack = start_stack(MAX_ANSWER_SECONDS="10")
    user, token = candidate()
    interview = session_create(user=user, question_count=1)
    question = interview.ordered_questions()[0]

    started = time.monotonic()
    response = requests.post(
        f"{stack.url}/api/upload-answer/{interview.pk}/{question.pk}",
        headers={"Authorization": f"Token {token}"},
        files={"audio": ("answer.webm", scripted_engine.say(forged, "never heard"), "audio/webm")},
        timeout=60,
    )
    took = time.monotonic() - started
    assert response.status_code == 202, response.text
    with caplog.at_level("INFO", logger="transcription.services"):
        assert run_queued_jobs() == 1

    transcription = Answer.objects.get().transcription
    assert transcription.status == "failed"
    assert "longer than the 10 second limit" in transcription.error
    assert scripted_engine.calls == []
    measured = float(re.search(r"measuring stopped at ([\d.]+) s", caplog.text).group(1))
    assert 10 < measured <= 10.1, measured  # the limit plus at most one 20 ms Opus packet
    print(f"forged WebM: accepted in {took:.2f} s, failed after measuring {measured:.2f} s")


@pytest.mark.parametrize("container", ["webm", "ogg"])
@pytest.mark.parametrize(
    "encoding",
    ["voip-12k-20ms", "audio-64k-2.5ms", "audio-64k-20ms", "voip-24k-60ms", "audio-32k-120ms"],
)
def test_opus_counted_from_its_packets_is_never_shorter_than_its_decoded_audio(
    tmp_path, container, encoding
):
    """Opus is measured from each packet's TOC byte instead of decoding it: the count must be
    what a decoder outputs (SILK, hybrid and CELT modes; one, two and many frames a packet),
    give or take the encoder's padding, and never less, or an answer could pass the limit."""
    application, bitrate, frame_ms = encoding.split("-")
    speech = tmp_path / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-w", speech, "Tell me about a project you are proud of and why."],
        check=True,
    )
    source = tmp_path / f"answer.{container}"
    ffmpeg("-i", speech, "-c:a", "libopus", "-application", application, "-b:a", bitrate,
           "-frame_duration", frame_ms.removesuffix("ms"), source)  # fmt: skip
    with av.open(str(source)) as opened:
        decoded = sum(frame.samples for frame in opened.decode(audio=0)) / 48_000

    counted = decoded_length(io.BytesIO(source.read_bytes()), limit_seconds=600)

    assert not counted.over_limit
    assert decoded <= counted.seconds <= decoded + 0.13, (counted.seconds, decoded)
    limited = decoded_length(io.BytesIO(source.read_bytes()), limit_seconds=decoded / 2)
    assert limited.over_limit
    assert decoded / 2 < limited.seconds <= decoded / 2 + 0.121


# --- 3. Huge bodies are refused before they are read ------------------------------------


def send_huge_body(stack: Stack, head: str, size: int) -> tuple[int, bytes, int, int]:
    """Send ``head`` then up to ``size`` bytes; return status, body, bytes sent, largest
    file seen in the server's temp folder meanwhile."""
    largest = 0
    done = threading.Event()

    def watch():
        nonlocal largest
        while not done.is_set():
            for entry in os.scandir(stack.tmpdir):
                with contextlib.suppress(FileNotFoundError):
                    largest = max(largest, entry.stat().st_size)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    sock = socket.create_connection(("127.0.0.1", stack.port), timeout=30)
    sent = 0

    def pour():
        nonlocal sent
        block = b"\x1a\x45\xdf\xa3" + bytes(MB - 4)
        try:
            sock.sendall(head.encode())
            while sent < size:
                sock.sendall(block)
                sent += len(block)
        except OSError:
            pass  # the server answered and closed the connection

    sender = threading.Thread(target=pour)
    sender.start()
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    sender.join(30)
    sock.close()
    done.set()
    watcher.join()
    status, _, body = parse_response(data)
    return status, body, sent, largest


def test_session_authenticated_200_mb_upload_is_refused_before_anything_is_spooled(
    start_stack, questions, gridfs, settings
):
    stack = start_stack()
    user, _ = candidate()
    interview = session_create(user=user, question_count=1)
    question = interview.ordered_questions()[0]
    browser = Client()
    browser.force_login(user)  # the interview screen's own path: a session cookie and CSRF
    session_id = browser.cookies["sessionid"].value
    csrf = "x" * 32
    head = (
        f"POST /api/upload-answer/{interview.pk}/{question.pk} HTTP/1.0\r\n"
        f"Host: 127.0.0.1\r\nCookie: sessionid={session_id}; csrftoken={csrf}\r\n"
        f"X-CSRFToken: {csrf}\r\nReferer: {stack.url}/\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\n"
        f"Content-Length: {200 * 1000 * 1000}\r\n\r\n"
        '--xyz\r\nContent-Disposition: form-data; name="audio"; filename="a.webm"\r\n\r\n'
    )

    status, body, sent, largest = send_huge_body(stack, head, 200 * 1000 * 1000)

    assert status == 413
    assert json.loads(body)["error"]["code"] == "too_large"
    assert largest <= settings.MAX_REQUEST_BYTES, largest
    assert Answer.objects.count() == 0
    assert gridfs["fs.files"].count_documents({}) == 0
    print(f"200 MB upload: 413 after {sent / MB:.0f} MiB sent, largest temp file {largest} B")


def test_anonymous_150_mib_post_to_the_login_page_is_refused_before_anything_is_spooled(
    start_stack, settings
):
    stack = start_stack()
    head = (
        "POST /accounts/login/ HTTP/1.0\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\n"
        f"Content-Length: {150 * MB}\r\n\r\n"
        '--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
    )

    status, body, sent, largest = send_huge_body(stack, head, 150 * MB)

    assert status == 413
    assert b"larger than the" in body
    assert largest <= settings.MAX_REQUEST_BYTES, largest
    print(f"150 MiB login POST: 413 after {sent / MB:.0f} MiB sent, largest temp file {largest} B")


# --- 4. A slow upload succeeds while health keeps answering -----------------------------


def test_slow_upload_at_64_kb_per_second_succeeds_while_health_answers_within_a_second(
    start_stack, questions, gridfs, tmp_path
):
    stack = start_stack()
    user, token = candidate()
    interview = session_create(user=user, question_count=1)
    question = interview.ordered_questions()[0]
    audio = wav(80, tmp_path)  # 2.5 MB
    assert 2.4 * MB < len(audio) < 2.6 * MB
    prepared = prepared_upload(
        f"{stack.url}/api/upload-answer/{interview.pk}/{question.pk}", token, audio
    )
    held = HeldRequest(stack.port, prepared)
    with ThreadPoolExecutor(max_workers=16) as pool:  # both workers past their first request
        list(pool.map(lambda _: requests.get(f"{stack.url}/api/health", timeout=30), range(16)))

    probes: list[float] = []
    finished = threading.Event()

    def probe():
        while not finished.is_set():
            started = time.monotonic()
            requests.get(f"{stack.url}/api/health", timeout=10)
            probes.append(time.monotonic() - started)
            finished.wait(0.5)

    prober = threading.Thread(target=probe)
    prober.start()
    started = time.monotonic()
    held.sock.sendall(b"\r\n")
    rate = 64 * 1024
    for offset in range(0, len(held.body), rate // 4):  # 16 KB every quarter second
        held.sock.sendall(held.body[offset : offset + rate // 4])
        time.sleep(0.25)
    status, _, body = held.response()
    took = time.monotonic() - started
    finished.set()
    prober.join()

    assert status == 202, body
    assert took > 35  # it really was slow: longer than gunicorn's default 30 s timeout
    assert Answer.objects.get().transcription_status == Answer.Status.QUEUED
    assert len(probes) > 30
    assert max(probes) < 1, probes
    print(f"slow upload: {took:.0f} s; {len(probes)} health probes, slowest {max(probes):.3f} s")


# --- 5. Health during a MongoDB outage --------------------------------------------------


def test_health_answers_fast_during_a_mongodb_outage_and_shows_no_counts_to_the_public(
    start_stack, tmp_path, questions
):
    mongo = EmbeddedMongo(tmp_path).start()
    stack = start_stack(MONGODB_URI=mongo.uri)
    user, token = candidate()
    session_create(user=user, question_count=1)
    with ThreadPoolExecutor(max_workers=16) as pool:  # every worker has served (imports done)
        list(pool.map(lambda _: requests.get(f"{stack.url}/api/sessions", timeout=30), range(16)))
    mongo.stop()

    def get(url, headers=None):
        started = time.monotonic()
        response = requests.get(url, headers=headers, timeout=30)
        return response, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=21) as pool:
        probes = [pool.submit(get, f"{stack.url}/api/health") for _ in range(10)]
        api = pool.submit(get, f"{stack.url}/api/sessions", {"Authorization": f"Token {token}"})
        probes += [pool.submit(get, f"{stack.url}/api/health") for _ in range(10)]
        results = [probe.result() for probe in probes]
        api_response, api_took = api.result()

    assert api_response.status_code == 200
    assert api_took < 1.5, api_took
    slowest = max(took for _, took in results)
    assert slowest < 1.5, [took for _, took in results]
    for response, _ in results:
        assert response.status_code == 503
        body = response.json()
        # Only a word per part: no counts, no hosts, no exception text.
        assert set(body) == {"status", "database", "mongodb", "cluster"}
        assert body["database"] == "ok"
        assert body["mongodb"] == "unavailable"
        assert set(body.values()) <= {"ok", "unavailable", "degraded"}
        assert "queue" not in response.text
        assert "workers" not in response.text
    print(f"MongoDB down: 20 health probes, slowest {slowest:.3f} s; API call {api_took:.3f} s")


# --- 6. Brute force on every login path -------------------------------------------------


def csrf_form(session: requests.Session, url: str) -> str:
    page = session.get(url, timeout=10)
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)


def login_attempt(stack: Stack, path: str, username: str, password: str, session):
    url = f"{stack.url}{path}"
    if path == "/api/auth/token/":
        response = requests.post(url, data={"username": username, "password": password})
        return response.status_code, response.status_code == 200
    token = csrf_form(session, url)
    response = session.post(
        url,
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": url},
        allow_redirects=False,
    )
    return response.status_code, response.status_code == 302


@pytest.mark.parametrize("path", ["/api/auth/token/", "/accounts/login/", "/admin/login/"])
def test_thirty_wrong_passwords_lock_the_account_and_the_right_one_waits_for_the_lockout(
    path, start_stack
):
    limit, lockout = 5, 12  # long enough for the 30 attempts to fall inside the lockout
    stack = start_stack(LOGIN_FAILURE_LIMIT=str(limit), LOGIN_LOCKOUT_SECONDS=str(lockout))
    candidate("target", is_staff=True)
    session = requests.Session()

    statuses, started = [], []
    for n in range(30):
        started.append(time.monotonic())
        statuses.append(login_attempt(stack, path, "target", f"guess-{n}", session)[0])
    status, logged_in = login_attempt(stack, path, "target", PASSWORD, session)

    normal = 400 if path.startswith("/api/") else 200  # the form shown again with its error
    assert statuses == [normal] * (limit - 1) + [429] * (30 - limit + 1), statuses
    assert (status, logged_in) == (429, False)
    # The lockout ends on time even though the attacker's attempts went on during it.
    wait_for(
        lambda: login_attempt(stack, path, "target", PASSWORD, session)[1],
        timeout=lockout + 15,
        what="the lockout to end",
    )
    # Not before the lockout's length has passed since the failure that started it.
    assert time.monotonic() - started[limit - 1] > lockout, statuses


# --- 7. Fairness: a per-user cap on transcriptions in flight -----------------------------


def test_user_at_the_pending_cap_gets_429_while_another_users_upload_is_transcribed(
    start_stack, questions, gridfs, tmp_path, openai_server
):
    cap = 3
    stack = start_stack(MAX_PENDING_PER_USER=str(cap))
    busy, busy_token = candidate("busy")
    other, other_token = candidate("other")
    busy_interview = session_create(user=busy, question_count=cap + 1)
    other_interview = session_create(user=other, question_count=1)
    audio = wav(1, tmp_path)

    def upload(token, interview, question):
        return requests.post(
            f"{stack.url}/api/upload-answer/{interview.pk}/{question.pk}",
            headers={"Authorization": f"Token {token}"},
            files={"audio": ("answer.wav", audio, "audio/wav")},
            timeout=30,
        )

    # No worker runs yet: the busy user's answers stay queued.
    *first, last = busy_interview.ordered_questions()
    assert [upload(busy_token, busy_interview, q).status_code for q in first] == [202] * cap
    refused = upload(busy_token, busy_interview, last)
    again = upload(busy_token, busy_interview, first[0])  # a re-recording replaces, allowed
    accepted = upload(other_token, other_interview, other_interview.ordered_questions()[0])

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_pending"
    assert f"already have {cap} answers waiting" in refused.json()["error"]["message"]
    assert again.status_code == 202
    assert accepted.status_code == 202
    assert Transcription.objects.filter(metadata__user_id=busy.pk).pending().count() == cap
    assert gridfs["fs.files"].count_documents({}) == cap + 1  # nothing for the refused one
    cluster = start_qcluster(
        tmp_path,
        TRANSCRIBER="openai",
        OPENAI_BASE_URL=openai_server.base_url,
        OPENAI_API_KEY="test-key",
    )
    try:
        wait_for(
            lambda: (
                Answer.objects.get(session=other_interview).transcription.status
                == Transcription.Status.COMPLETED
            ),
            timeout=60,
            what="the other user's answer to be transcribed",
        )
    finally:
        cluster.stop()
    assert Answer.objects.get(session=other_interview).transcription.transcript


# --- 8. Item 8: smaller holes -----------------------------------------------------------


def test_chunked_upload_gets_a_clear_411(start_stack, questions, gridfs, tmp_path):
    stack = start_stack()
    user, token = candidate()
    interview = session_create(user=user, question_count=1)
    question = interview.ordered_questions()[0]
    audio = wav(1, tmp_path)

    response = requests.post(
        f"{stack.url}/api/upload-answer/{interview.pk}/{question.pk}",
        headers={"Authorization": f"Token {token}", "Content-Type": "audio/wav"},
        data=iter([audio[:1000], audio[1000:]]),  # a generator: requests sends it chunked
        timeout=30,
    )

    assert response.status_code == 411
    assert "Content-Length" in response.json()["error"]["message"]
    assert gridfs["fs.files"].count_documents({}) == 0


def _video_only_mp4(folder: Path) -> bytes:
    out = folder / "video.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:duration=1", "-c:v", "mpeg4", out)
    return out.read_bytes()


def _video_only_webm(folder: Path) -> bytes:
    out = folder / "video.webm"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:duration=1", "-c:v", "libvpx", out)
    return out.read_bytes()


def _avif(folder: Path) -> bytes:
    out = folder / "image.avif"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=64x64",
        "-frames:v",
        "1",
        "-c:v",
        "libaom-av1",
        "-still-picture",
        "1",
        out,
    )
    return out.read_bytes()


def _heic(folder: Path) -> bytes:
    # An HEIF image's first boxes: ftyp (brand heic) and the start of its meta box.
    ftyp = b"ftypheic" + b"\x00\x00\x00\x00" + b"mif1heic"
    meta = b"meta" + b"\x00" * 4 + b"\x00\x00\x00\x21hdlr" + b"\x00" * 8 + b"pict" + b"\x00" * 13
    return struct.pack(">I", len(ftyp) + 4) + ftyp + struct.pack(">I", len(meta) + 4) + meta


@pytest.mark.parametrize(
    "make", [_avif, _heic, _video_only_mp4, _video_only_webm], ids=lambda f: f.__name__[1:]
)
def test_images_and_video_only_files_that_pass_the_sniff_are_refused(
    make, start_stack, questions, gridfs, tmp_path
):
    stack = start_stack()
    user, token = candidate()
    interview = session_create(user=user, question_count=1)
    question = interview.ordered_questions()[0]
    data = make(tmp_path)
    assert data[4:8] == b"ftyp" or data[:4] == b"\x1a\x45\xdf\xa3"  # passes the first sniff

    response = requests.post(
        f"{stack.url}/api/upload-answer/{interview.pk}/{question.pk}",
        headers={"Authorization": f"Token {token}"},
        files={"audio": ("answer.webm", data, "audio/webm")},
        timeout=30,
    )

    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "video" in message or "could not be decoded" in message or "no audio" in message
    assert gridfs["fs.files"].count_documents({}) == 0
    assert Answer.objects.count() == 0


@pytest.mark.parametrize("language", ["xx", "zzz"])
def test_session_language_the_engine_does_not_know_is_refused(language, start_stack, questions):
    stack = start_stack()
    _, token = candidate()
    headers = {"Authorization": f"Token {token}"}

    refused = requests.post(
        f"{stack.url}/api/sessions", json={"language": language}, headers=headers, timeout=30
    )
    accepted = requests.post(
        f"{stack.url}/api/sessions", json={"language": "fr"}, headers=headers, timeout=30
    )

    assert refused.status_code == 400
    assert "not a language the transcription engine knows" in refused.text
    assert accepted.status_code == 201


def test_bulk_requeue_needs_change_permission(start_stack, questions):
    from django.contrib.auth.models import Permission

    stack = start_stack()
    viewer, _ = candidate("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_answer"))
    session = requests.Session()
    url = f"{stack.url}/admin/login/"
    token = csrf_form(session, url)
    session.post(
        url,
        data={"username": "viewer", "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Referer": url},
    )
    changelist = session.get(f"{stack.url}/admin/sessions_app/answer/", timeout=10)

    assert changelist.status_code == 200
    assert "requeue_transcriptions" not in changelist.text  # not offered to a viewer
    refused = session.post(
        f"{stack.url}/admin/sessions_app/answer/",
        data={
            "action": "requeue_transcriptions",
            "_selected_action": ["1"],
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{stack.url}/admin/sessions_app/answer/"},
        allow_redirects=False,
    )
    assert "Re-queued" not in refused.text
    assert refused.status_code in {200, 302, 403}


def test_pages_carry_a_content_security_policy(start_stack):
    stack = start_stack()

    page = requests.get(f"{stack.url}/accounts/login/", timeout=10)

    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "<script>" not in page.text  # nothing inline for the policy to block


def test_candidate_errors_carry_no_internals_when_mongodb_is_down(start_stack, tmp_path, questions):
    mongo = EmbeddedMongo(tmp_path).start()
    stack = start_stack(MONGODB_URI=mongo.uri, MONGODB_TIMEOUT_MS="500")
    user, token = candidate()
    interview = session_create(user=user, question_count=1)
    question = interview.ordered_questions()[0]
    mongo.stop()

    response = requests.post(
        f"{stack.url}/api/upload-answer/{interview.pk}/{question.pk}",
        headers={"Authorization": f"Token {token}"},
        files={"audio": ("answer.wav", wav(1, tmp_path), "audio/wav")},
        timeout=30,
    )

    assert response.status_code == 503
    message = response.json()["error"]["message"]
    assert "nothing was saved" in message
    for internal in ("127.0.0.1", str(mongo.port), "Topology", "ServerSelection", "Error("):
        assert internal not in response.text
    # The details are for operators, in the log.
    assert f"127.0.0.1:{mongo.port}" in stack.output()


def test_password_validators_refuse_a_one_character_password(start_stack):
    stack = start_stack()
    candidate("operator", is_staff=True, is_superuser=True)
    session = requests.Session()
    login = f"{stack.url}/admin/login/"
    session.post(
        login,
        data={
            "username": "operator",
            "password": PASSWORD,
            "csrfmiddlewaretoken": csrf_form(session, login),
        },
        headers={"Referer": login},
    )
    add = f"{stack.url}/admin/auth/user/add/"

    response = session.post(
        add,
        data={
            "username": "newcomer",
            "password1": "x",
            "password2": "x",
            "usable_password": "true",
            "csrfmiddlewaretoken": csrf_form(session, add),
        },
        headers={"Referer": add},
        allow_redirects=False,
    )

    assert response.status_code == 200  # the form again, with the validators' reasons
    assert "This password is too short" in response.text
    assert not get_user_model().objects.filter(username="newcomer").exists()


def test_session_creation_is_throttled_per_user(start_stack, questions):
    cache.clear()
    stack = start_stack(SESSION_RATE_LIMIT="3/hour")
    _, token = candidate()
    _, other_token = candidate("other")

    def create(key):
        return requests.post(
            f"{stack.url}/api/sessions",
            json={"question_count": 1},
            headers={"Authorization": f"Token {key}"},
            timeout=30,
        )

    statuses = [create(token).status_code for _ in range(5)]

    assert statuses == [201, 201, 201, 429, 429]
    assert create(other_token).status_code == 201  # per user
    listed = requests.get(
        f"{stack.url}/api/sessions", headers={"Authorization": f"Token {token}"}, timeout=30
    )
    assert listed.status_code == 200  # reading is never throttled
    assert listed.json()["count"] == 3
    cache.clear()
