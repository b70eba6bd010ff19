"""Operators' view: /metrics, readiness, error tracking and JSON logs, on real processes."""

import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.contrib.auth import get_user_model
from django.test import Client
from model_bakery import baker
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token

from sessions_app.models import Answer
from sessions_app.services import session_create
from tests.openai_server import FakeOpenAI
from tests.sentry_server import SentryReceiver
from tests.support import start_gunicorn, start_qcluster, wait_for
from transcription.models import Transcription

pytestmark = [pytest.mark.django_db(transaction=True)]

TOKEN = "scrape-me-" + "x" * 20
STATUSES = ["queued", "processing", "completed", "failed"]


def parse(text: str) -> dict[str, dict[tuple, float]]:
    """Return {sample name: {sorted labels: value}} from Prometheus text."""
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "pid"))
            by_labels = samples.setdefault(sample.name, {})
            by_labels[labels] = by_labels.get(labels, 0) + sample.value
    return samples


def total(samples, name: str, **labels) -> float:
    wanted = set(labels.items())
    return sum(v for key, v in samples.get(name, {}).items() if wanted <= set(key))


def status_gauges(samples) -> dict[str, float]:
    return {status: total(samples, "interview_answers", status=status) for status in STATUSES}


def database_counts() -> dict[str, int]:
    return {s: Answer.objects.filter(transcription__status=s).count() for s in STATUSES}


def test_metrics_need_the_token_or_an_allowed_address_in_production(settings, gridfs):
    settings.DEBUG = False
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_IPS = []
    client = Client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Token {TOKEN}").status_code == 401
    scraped = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert scraped.status_code == 200
    assert scraped["Content-Type"].startswith("text/plain")
    assert "interview_answers" in parse(scraped.content.decode())

    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    assert client.get("/metrics").status_code == 401  # the test client is 127.0.0.1
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "127.0.0.1"]
    assert client.get("/metrics").status_code == 200

    settings.METRICS_ALLOWED_IPS = []  # nothing configured: closed in production
    assert client.get("/metrics").status_code == 401


def test_scrape_time_gauges_match_the_database_and_gridfs(settings, interview, gridfs):
    settings.DEBUG = False
    settings.METRICS_TOKEN = TOKEN
    for status, question in zip(
        ["queued", "failed", "completed"], interview.ordered_questions(), strict=True
    ):
        transcription = baker.make(Transcription, status=status)
        baker.make(Answer, session=interview, question=question, transcription=transcription)
    gridfs["fs.files"].insert_many(
        [{"length": 1000, "chunkSize": 261120}, {"length": 2345, "chunkSize": 261120}]
    )

    def scrape_with_no_cluster():
        response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        samples = parse(response.content.decode())
        return samples if total(samples, "interview_qcluster_clusters") == 0 else None

    # An earlier test's cluster is reported until its last status expires (3 s).
    samples = wait_for(scrape_with_no_cluster, timeout=15, what="no cluster to be reported")
    assert (
        status_gauges(samples)
        == database_counts()
        == {
            "queued": 1,
            "processing": 0,
            "completed": 1,
            "failed": 1,
        }
    )
    assert total(samples, "interview_gridfs_audio_bytes") == 3345
    assert total(samples, "interview_gridfs_audio_files") == 2
    assert total(samples, "interview_queue_oldest_age_seconds") >= 0
    assert all(value == 1 for value in samples["interview_monitoring_source_up"].values())


@pytest.mark.slow
def test_readiness_degrades_when_answers_wait_with_no_cluster_and_a_cluster_brings_it_back(
    settings, interview, upload, spoken, gridfs, tmp_path
):
    settings.QUEUE_STALL_SECONDS = 2
    client = Client()
    assert client.get("/api/health/live").json() == {"status": "alive"}
    assert client.get("/api/health/ready").status_code == 200

    for question in interview.ordered_questions():
        assert upload(interview.pk, question.pk, spoken("Ready or not.")).status_code == 202
    # Young answers are not a stall yet.
    assert client.get("/api/health/ready").status_code == 200
    assert client.get("/api/health").json()["status"] == "ok"

    ready = wait_for(
        lambda: (r := client.get("/api/health/ready")).status_code == 503 and r,
        timeout=15,
        what="readiness to notice the stalled queue",
    )
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["cluster"] == {"running": 0, "workers": 0}
    assert body["oldest_queued_seconds"] >= 2
    assert "no cluster alive" in body["reasons"][0]
    # /api/health caches its report for HEALTH_CACHE_SECONDS.
    health = wait_for(
        lambda: (r := client.get("/api/health")).json()["status"] == "degraded" and r,
        what="health to say degraded",
    )
    assert health.status_code == 200  # the dependencies answer: only readiness fails

    api = FakeOpenAI().start()
    cluster = start_qcluster(
        tmp_path, TRANSCRIBER="openai", OPENAI_BASE_URL=api.base_url, OPENAI_API_KEY="test-key"
    )
    try:
        back = wait_for(
            lambda: (r := client.get("/api/health/ready")).status_code == 200 and r,
            timeout=60,
            what="readiness to come back once a cluster takes the answers",
        )
        assert back.json()["status"] == "ok"
        assert back.json()["cluster"]["running"] == 1
        wait_for(
            lambda: client.get("/api/health").json()["status"] == "ok", what="health to say ok"
        )
    finally:
        cluster.stop()
        api.stop()


@pytest.mark.slow
def test_metrics_from_two_gunicorn_workers_and_qcluster_after_20_uploads(
    questions, gridfs, spoken, tmp_path
):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    shared = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "METRICS_TOKEN": TOKEN}
    url, web = start_gunicorn(tmp_path, workers=2, **shared)
    api = FakeOpenAI(latency=(0.01, 0.05)).start()
    cluster = None
    try:
        # Two candidates, 10 answers each: MAX_PENDING_PER_USER (10) holds for each.
        tokens, targets = {}, []
        for name in ["talker", "speaker"]:
            candidate = get_user_model().objects.create_user(name)
            interview = session_create(user=candidate, question_count=10)
            tokens[interview.pk] = Token.objects.create(user=candidate).key
            targets += [(interview.pk, q.pk) for q in interview.ordered_questions()]
        audio = spoken("I would measure it before changing anything.", "webm")

        def post(target):
            return requests.post(
                f"{url}/api/upload-answer/{target[0]}/{target[1]}",
                headers={"Authorization": f"Token {tokens[target[0]]}", "Connection": "close"},
                files={"audio": ("answer.webm", audio, "audio/webm")},
                timeout=60,
            )

        # Four at a time: both (sync) workers serve some, whatever the kernel's choice.
        with ThreadPoolExecutor(max_workers=4) as pool:
            responses = list(pool.map(post, targets))
        assert [r.status_code for r in responses] == [202] * 20, [r.text for r in responses]

        def scrape():
            response = requests.get(
                f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
            )
            assert response.status_code == 200, response.text
            return parse(response.text)

        before = scrape()
        assert (
            status_gauges(before)
            == database_counts()
            == {
                "queued": 20,
                "processing": 0,
                "completed": 0,
                "failed": 0,
            }
        )
        assert total(before, "interview_gridfs_audio_files") == 20

        cluster = start_qcluster(
            tmp_path,
            TRANSCRIBER="openai",
            OPENAI_BASE_URL=api.base_url,
            OPENAI_API_KEY="test-key",
            **shared,
        )
        wait_for(
            lambda: Answer.objects.filter(transcription__status="completed").count() == 20,
            timeout=120,
            what="20 transcripts",
        )
        after = wait_for(
            lambda: (
                (s := scrape())
                and total(s, "interview_transcription_upload_to_completed_seconds_count") == 20
                # A cluster's status expires from the cache if its guard is late to renew it
                # (a busy machine): the gauge may read 0 for a scrape meanwhile.
                and total(s, "interview_qcluster_clusters") == 1
                and s
            ),
            what="the jobs' metrics",
        )
    finally:
        if cluster:
            cluster.stop()
        web.stop()
        api.stop()

    assert total(after, "interview_transcriptions_finished_total") == 20
    assert total(after, "interview_transcriptions_finished_total", status="completed") == 20
    assert total(after, "interview_transcription_upload_to_processing_seconds_count") == 20
    assert total(after, "interview_transcription_upload_to_completed_seconds_count") == 20
    # Every observation is counted once, in the +Inf bucket of the histogram.
    assert (
        total(after, "interview_transcription_upload_to_completed_seconds_bucket", le="+Inf") == 20
    )
    assert total(after, "interview_transcription_audio_seconds_total") > 0
    assert total(after, "interview_transcription_engine_seconds_total") > 0
    assert (
        status_gauges(after)
        == database_counts()
        == {
            "queued": 0,
            "processing": 0,
            "completed": 20,
            "failed": 0,
        }
    )
    assert total(after, "interview_gridfs_audio_files") == 0
    assert total(after, "interview_qcluster_clusters") == 1
    # Requests were served by both workers, and /metrics adds both workers' counts up.
    served_by = re.findall(r"^<(\d+)> 202 POST /api/upload-answer/", web.output(), re.M)
    assert len(served_by) == 20
    assert len(set(served_by)) == 2, served_by
    assert (
        total(after, "django_http_responses_total_by_status_view_method_total", status="202") == 20
    )
    latency = "django_http_requests_latency_seconds_by_view_method_count"
    assert total(after, latency, method="POST") == 20
    assert total(after, "django_db_execute_total") > 20  # every upload queries and writes
    assert total(after, "django_cache_get_total", backend="database") >= 20  # the throttle's


@pytest.mark.slow
def test_json_logs_of_an_upload_and_its_job_share_the_request_id(
    questions, gridfs, spoken, tmp_path
):
    json_logs = {"LOG_FORMAT": "json"}
    url, web = start_gunicorn(tmp_path, workers=1, **json_logs)
    api = FakeOpenAI().start()
    cluster = start_qcluster(
        tmp_path,
        TRANSCRIBER="openai",
        OPENAI_BASE_URL=api.base_url,
        OPENAI_API_KEY="test-key",
        **json_logs,
    )
    request_id = f"upload-{uuid.uuid4().hex}"
    try:
        candidate = get_user_model().objects.create_user("logger")
        headers = {"Authorization": f"Token {Token.objects.create(user=candidate).key}"}
        interview = session_create(user=candidate, question_count=2)
        first, second = interview.ordered_questions()
        audio = spoken("Follow me through the logs.", "webm")
        given = requests.post(
            f"{url}/api/upload-answer/{interview.pk}/{first.pk}",
            headers=headers | {"X-Request-ID": request_id},
            files={"audio": ("a.webm", audio, "audio/webm")},
            timeout=30,
        )
        made = requests.post(
            f"{url}/api/upload-answer/{interview.pk}/{second.pk}",
            headers=headers,
            files={"audio": ("a.webm", audio, "audio/webm")},
            timeout=30,
        )
        assert given.status_code == made.status_code == 202
        assert given.headers["X-Request-ID"] == request_id
        generated = made.headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated)
        wait_for(
            lambda: Answer.objects.filter(transcription__status="completed").count() == 2,
            timeout=60,
            what="both transcripts",
        )
        wait_for(
            lambda: cluster.output().count("Transcription completed") == 2,
            what="the job's last log line",
        )
    finally:
        cluster.stop()
        web.stop()
        api.stop()

    # The qcluster's output is one JSON object per line, every line.
    job_lines = [json.loads(line) for line in cluster.output().splitlines() if line.strip()]
    # gunicorn's own lines (boot, access log) are plain; Django's are JSON.
    web_lines = [json.loads(line) for line in web.output().splitlines() if line.startswith("{")]
    transcriptions = {a.question_id: a.transcription_id for a in Answer.objects.all()}
    for rid, question in [(request_id, first), (generated, second)]:
        (request_line,) = [
            line
            for line in web_lines
            if line["logger"] == "monitoring.request" and line["request_id"] == rid
        ]
        assert request_line["path"] == f"/api/upload-answer/{interview.pk}/{question.pk}"
        assert request_line["status"] == 202
        job_messages = [line["message"] for line in job_lines if line["request_id"] == rid]
        mine = re.compile(rf"\btranscription={transcriptions[question.pk]}\b")
        assert any(m.startswith("Starting transcription") and mine.search(m) for m in job_messages)
        assert any(m.startswith("Transcription completed") and mine.search(m) for m in job_messages)
        # Nothing of the other answer's job is under this id.
        other = transcriptions[second.pk if question == first else first.pk]
        assert not any(re.search(rf"\btranscription={other}\b", m) for m in job_messages)


@pytest.mark.slow
def test_an_unexpected_job_exception_reaches_sentry_with_ids_and_without_the_transcript(
    interview, upload, spoken, gridfs, tmp_path
):
    receiver = SentryReceiver().start()
    transcript = f"my private answer {uuid.uuid4().hex}"
    cluster = start_qcluster(
        tmp_path,
        TRANSCRIBER="tests.engines.CrashingTranscriber",
        CRASHING_ENGINE_TRANSCRIPT=transcript,
        SENTRY_DSN=receiver.dsn,
    )
    try:
        question = interview.ordered_questions()[0]
        audio = spoken("Nothing of this may leave.")
        assert upload(interview.pk, question.pk, audio).status_code == 202
        answer = Answer.objects.get()
        (event,) = wait_for(receiver.events, timeout=60, what="the error event")
        wait_for(
            lambda: Answer.objects.filter(transcription__status="failed").exists(),
            what="the answer to fail",
        )
    finally:
        cluster.stop()
        receiver.stop()

    assert event["tags"]["answer_id"] == str(answer.pk)
    assert event["tags"]["transcription_id"] == str(answer.transcription_id)
    assert event["tags"]["session_id"] == str(interview.pk)
    assert event["tags"]["attempt"] == "1"
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert "engine bug" in exception["value"]
    raw = b"".join(receiver.bodies)
    assert transcript.encode() not in raw
    assert b"my private answer" not in raw
    assert b"RIFF" not in raw  # the wav's first bytes: no audio either
    assert "vars" not in json.dumps(exception["stacktrace"])  # no local variables at all


def test_sentry_events_lose_every_private_value_and_keep_the_ids():
    from monitoring.errors import FILTERED, scrub_event

    event = {
        "tags": {"answer_id": "7", "session_id": "3", "attempt": "2"},
        "request": {
            "headers": {"Authorization": "Token abc", "Cookie": "sessionid=x", "Accept": "*/*"},
            "data": {"audio": "RIFF....", "question": "4"},
        },
        "extra": {"transcript": "what I said", "words": [{"word": "what"}], "api_key": "sk-1"},
        "breadcrumbs": {"values": [{"data": {"OPENAI_API_KEY": "sk-2", "status": "failed"}}]},
    }
    scrubbed = scrub_event(event, {})
    assert scrubbed["tags"] == {"answer_id": "7", "session_id": "3", "attempt": "2"}
    assert scrubbed["request"]["headers"] == {
        "Authorization": FILTERED,
        "Cookie": FILTERED,
        "Accept": "*/*",
    }
    assert scrubbed["request"]["data"] == {"audio": FILTERED, "question": "4"}
    assert set(scrubbed["extra"].values()) == {FILTERED}
    assert scrubbed["breadcrumbs"]["values"][0]["data"] == {
        "OPENAI_API_KEY": FILTERED,
        "status": "failed",
    }


def test_lifecycle_counters_by_outcome_reason_retry_and_reconciler(
    interview, upload, gridfs, spoken, scripted_engine
):
    from datetime import timedelta

    from django.utils import timezone
    from django_q.models import Schedule
    from prometheus_client import REGISTRY

    from tests.support import run_queued_jobs
    from transcription import maintenance
    from transcription.backends import TranscriptionError

    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    watched = [
        ("interview_transcriptions_finished_total", {"status": "completed"}),
        ("interview_transcriptions_finished_total", {"status": "failed"}),
        ("interview_transcription_failures_total", {"reason": "engine_rejected"}),
        ("interview_transcription_failures_total", {"reason": "unexpected"}),
        ("interview_transcription_retries_total", {}),
        ("interview_transcription_reconciler_requeues_total", {}),
        ("interview_transcription_upload_to_processing_seconds_count", {}),
        ("interview_transcription_upload_to_completed_seconds_count", {}),
        ("interview_transcription_audio_seconds_total", {}),
    ]
    before = {(name, tuple(labels.items())): value(name, **labels) for name, labels in watched}

    def delta(name, **labels):
        return value(name, **labels) - before[(name, tuple(labels.items()))]

    flaky, rejected, buggy = (spoken(text) for text in ["flaky engine", "rejected", "buggy"])
    scripted_engine.say(flaky, TranscriptionError("overloaded, try later"))
    scripted_engine.say(rejected, TranscriptionError("Invalid file format.", permanent=True))
    scripted_engine.say(buggy, RuntimeError("a bug"))
    for question, audio in zip(
        interview.ordered_questions(), [flaky, rejected, buggy], strict=True
    ):
        assert upload(interview.pk, question.pk, audio).status_code == 202
    run_queued_jobs()
    assert delta("interview_transcription_retries_total") == 1
    assert delta("interview_transcriptions_finished_total", status="failed") == 2
    assert delta("interview_transcription_failures_total", reason="engine_rejected") == 1
    assert delta("interview_transcription_failures_total", reason="unexpected") == 1

    # The retry's schedule is lost; once due, the reconciler gives it a job.
    Schedule.objects.all().delete()
    Transcription.objects.filter(status="queued").update(
        next_attempt_at=timezone.now() - maintenance.DUE_GRACE - timedelta(seconds=1)
    )
    scripted_engine.say(flaky, "flaky engine")
    assert len(maintenance.reconcile().enqueued) == 1
    assert delta("interview_transcription_reconciler_requeues_total") == 1
    run_queued_jobs()

    assert delta("interview_transcriptions_finished_total", status="completed") == 1
    assert delta("interview_transcription_upload_to_completed_seconds_count") == 1
    # Observed once per upload (attempt 1), not again on the retry.
    assert delta("interview_transcription_upload_to_processing_seconds_count") == 3
    spoken_seconds = Transcription.objects.get(status="completed").audio_seconds
    assert 0.5 < spoken_seconds < 5  # "flaky engine", spoken by espeak-ng
    assert delta("interview_transcription_audio_seconds_total") == pytest.approx(spoken_seconds)
