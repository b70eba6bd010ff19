"""Webhooks: registered through the API, persisted, signed, retried, and never sent inward."""

import json
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django_q.models import OrmQ, Schedule
from standardwebhooks import Webhook

from tests.support import ROOT, run_queued_jobs, start_qcluster, wait_for
from transcription.backends import TranscriptionError
from transcription.maintenance import schedules_ensure
from webhooks import services, tasks
from webhooks.models import Attempt, Delivery, Endpoint
from webhooks.signing import secret_generate


class Receiver:
    """A real HTTP server on localhost that records each request and answers as scripted."""

    def __init__(self, answers=(), *, tls: tuple[Path, Path] | None = None):
        self.answers = list(answers)  # a status code, or ("hang", seconds) then 200
        self.requests = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(
                    {
                        "at": time.monotonic(),
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                answer = receiver.answers.pop(0) if receiver.answers else 200
                if isinstance(answer, tuple):
                    time.sleep(answer[1])
                    answer = 200
                self.send_response(answer)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(f"answered {answer}".encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/hooks/interviews?source=test"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    servers = []

    def make(*answers, tls=None):
        servers.append(Receiver(answers, tls=tls))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def endpoint_for(user, url, events=("answer.completed",)):
    return services.endpoint_create(user=user, url=url, events=list(events))


def publish(user, event="answer.completed", **data):
    return services.event_publish(
        user_id=user.pk, event=event, data={"session_id": 1, "question_id": 2} | data
    )


# --- Registration ---------------------------------------------------------------------


def test_an_endpoint_is_registered_with_a_secret_shown_only_once(api_client, user, receiver):
    url = receiver().url

    created = api_client.post(
        "/api/webhooks/", {"url": url, "events": ["answer.completed"]}, format="json"
    )

    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert body["url"] == url
    assert body["events"] == ["answer.completed"]
    detail = api_client.get(f"/api/webhooks/{body['id']}/").json()
    listed = api_client.get("/api/webhooks/").json()["results"]
    assert "secret" not in detail
    assert [endpoint["id"] for endpoint in listed] == [body["id"]]
    assert "secret" not in listed[0]


def test_another_users_endpoint_is_not_found_and_deleting_ones_own_removes_it(
    api_client, user, other_user, receiver
):
    theirs = endpoint_for(other_user, receiver().url)
    mine = endpoint_for(user, receiver().url)

    assert api_client.get(f"/api/webhooks/{theirs.pk}/").status_code == 404
    assert api_client.delete(f"/api/webhooks/{theirs.pk}/").status_code == 404
    assert api_client.delete(f"/api/webhooks/{mine.pk}/").status_code == 204
    assert list(Endpoint.objects.all()) == [theirs]


# --- Signing and delivery -------------------------------------------------------------


def test_a_delivery_is_stored_before_it_is_sent_and_verifies_with_the_reference_library(
    user, receiver, django_capture_on_commit_callbacks
):
    server = receiver()
    endpoint = endpoint_for(user, server.url)
    endpoint_for(user, server.url, events=["session.analyzed"])  # not subscribed

    with django_capture_on_commit_callbacks(execute=True):
        [delivery] = publish(user, transcript="I would add an index")

    assert server.requests == []
    assert Delivery.objects.get().status == Delivery.Status.PENDING
    [job] = OrmQ.objects.all()
    assert job.task["func"] == "webhooks.tasks.deliver"
    assert tasks.deliver(*job.task["args"]) == "delivered"
    [request] = server.requests
    # The Standard Webhooks reference implementation, given the secret shown at registration.
    payload = Webhook(endpoint.secret).verify(request["body"], request["headers"])
    assert payload["type"] == "answer.completed"
    assert payload["data"] == {
        "session_id": 1,
        "question_id": 2,
        "transcript": "I would add an index",
    }
    assert request["headers"]["webhook-id"] == delivery.message_id
    assert request["path"] == "/hooks/interviews?source=test"
    assert abs(int(request["headers"]["webhook-timestamp"]) - time.time()) < 60
    assert request["headers"]["webhook-signature"].startswith("v1,")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    # A forged body does not verify.
    with pytest.raises(Exception, match="(?i)signature"):
        Webhook(endpoint.secret).verify(
            request["body"].replace(b"index", b"table"), request["headers"]
        )


def test_a_4xx_other_than_408_and_429_is_not_retried(user, receiver):
    server = receiver(400)
    endpoint_for(user, server.url)
    [delivery] = publish(user)

    assert tasks.deliver(delivery.pk) == "failed"

    assert len(server.requests) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, 400)
    assert not Schedule.objects.filter(func="webhooks.tasks.deliver").exists()
    # Nothing due is left for the reconciler either.
    assert services.deliveries_reconcile() == 0


@pytest.mark.parametrize("answer", [408, 429, 500, 503, ("hang", 1.5)], ids=str)
def test_timeouts_408_429_and_5xx_are_retried(user, receiver, settings, answer):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0.05
    server = receiver(answer)
    endpoint_for(user, server.url)
    [delivery] = publish(user)

    assert tasks.deliver(delivery.pk) == "delivered"

    attempts = list(Attempt.objects.values_list("status_code", flat=True))
    assert attempts == [None if isinstance(answer, tuple) else answer, 200]
    assert len({request["headers"]["webhook-id"] for request in server.requests}) == 1


def test_a_retry_after_the_in_worker_limit_goes_through_the_scheduler(user, receiver, settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 60
    server = receiver(503)
    endpoint_for(user, server.url)
    [delivery] = publish(user)

    assert tasks.deliver(delivery.pk) == "retry scheduled"

    retry = Schedule.objects.get(func="webhooks.tasks.deliver")
    delivery.refresh_from_db()
    assert retry.args == f"({delivery.pk},)"
    assert 40 < (retry.next_run - delivery.created_at).total_seconds() < 80
    assert delivery.status == "pending"
    assert delivery.claimed_until is None
    assert abs((delivery.next_attempt_at - retry.next_run).total_seconds()) < 1


def test_retries_stop_a_day_after_the_event(user, receiver, settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 3600
    settings.WEBHOOK_RETRY_FOR_SECONDS = 24 * 3600
    server = receiver(*[503] * 20)
    endpoint_for(user, server.url)
    [delivery] = publish(user)
    gaps = []
    while True:
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=delivery.created_at)
        outcome = services.delivery_send(delivery_id=delivery.pk)
        if outcome.retry_in is None:
            break
        gaps.append(outcome.retry_in / 3600)

    delivery.refresh_from_db()
    assert delivery.status == "failed"
    # 1, 2, 4, 8 hours (±25%): the next one would fall after the day is over.
    assert len(gaps) in (4, 5)
    assert all(later > earlier for earlier, later in zip(gaps, gaps[1:], strict=False))


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_receiver_answering_503_twice_gets_three_attempts_with_growing_gaps(
    user, receiver, tmp_path
):
    server = receiver(503, 503, 200)
    endpoint = endpoint_for(user, server.url)
    cluster = start_qcluster(
        tmp_path, WEBHOOK_RETRY_BASE_SECONDS="2", WEBHOOK_RETRY_IN_WORKER_SECONDS="10"
    )
    try:
        publish(user)
        wait_for(
            lambda: Delivery.objects.filter(status="delivered").exists(),
            timeout=30,
            what="the delivery to succeed",
        )
    finally:
        cluster.stop()

    assert [r["headers"]["webhook-id"] for r in server.requests] == [
        Delivery.objects.get().message_id
    ] * 3
    first_gap, second_gap = (
        b["at"] - a["at"] for a, b in zip(server.requests, server.requests[1:], strict=False)
    )
    # 2 s then 4 s, each ±25%: the second wait is longer whatever the jitter drew.
    assert 1.5 <= first_gap < second_gap
    assert list(Attempt.objects.values_list("status_code", flat=True)) == [503, 503, 200]
    for request in server.requests:
        Webhook(endpoint.secret).verify(request["body"], request["headers"])


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_deliveries_pending_when_the_qcluster_is_killed_are_delivered_after_restart(
    user, receiver, tmp_path
):
    schedules_ensure()
    # The first request hangs long enough for the cluster to die with it in flight.
    server = receiver(("hang", 20))
    endpoint_for(user, server.url)
    env = {"WEBHOOK_TIMEOUT_SECONDS": "3", "WEBHOOK_CLAIM_MARGIN_SECONDS": "1"}
    env |= {"WEBHOOK_RECONCILE_GRACE_SECONDS": "1"}
    cluster = start_qcluster(tmp_path, **env)
    [in_flight] = publish(user, question_id=1)
    wait_for(lambda: server.requests, timeout=30, what="the first attempt to arrive")
    cluster.stop(sig=9)
    [queued] = publish(user, question_id=2)  # its job waits in the queue for a cluster
    assert Delivery.objects.filter(status="pending").count() == 2

    (tmp_path / "restarted").mkdir()
    cluster = start_qcluster(tmp_path / "restarted", **env)
    try:
        wait_for(
            lambda: Delivery.objects.filter(status="delivered").count() == 2,
            timeout=90,
            what="both deliveries after the restart",
        )
    finally:
        cluster.stop()

    ids = [request["headers"]["webhook-id"] for request in server.requests]
    assert ids.count(queued.message_id) == 1
    # Sent again by the reconciler: the receiver drops the duplicate by its webhook-id.
    assert ids.count(in_flight.message_id) == 2


# --- Where webhooks may go (SSRF) -----------------------------------------------------


@pytest.fixture
def production(settings):
    settings.WEBHOOK_REQUIRE_HTTPS = True
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    return settings


@pytest.fixture
def dns(monkeypatch):
    """Answer chosen names with chosen addresses, as a hostile DNS zone would."""
    zone = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in zone:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in zone[host]]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr("webhooks.addresses.socket.getaddrinfo", getaddrinfo)
    return zone


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://[::1]/hook",
        "https://10.1.2.3/hook",
        "https://172.16.0.9/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://0.0.0.0/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://intranet.example/hook",
        "https://split.example/hook",
        "https://loopback.example/hook",
        "http://public.example/hook",
    ],
)
def test_production_refuses_urls_that_resolve_to_private_networks_or_are_not_https(
    api_client, production, dns, url
):
    dns |= {
        "intranet.example": ["10.20.30.40"],
        "split.example": ["93.184.215.14", "10.0.0.7"],  # one public, one private: refused
        "loopback.example": ["127.0.0.1"],
        "public.example": ["93.184.215.14"],
    }

    response = api_client.post(
        "/api/webhooks/", {"url": url, "events": ["answer.failed"]}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["field_codes"] == {"url": ["url_refused"]}
    assert not Endpoint.objects.exists()


def test_production_accepts_an_https_url_of_a_public_host(api_client, production, dns):
    dns["public.example"] = ["93.184.215.14"]

    response = api_client.post(
        "/api/webhooks/",
        {"url": "https://public.example/hook", "events": ["answer.failed"]},
        format="json",
    )

    assert response.status_code == 201


def test_a_host_that_turns_private_after_registration_is_never_sent_to(
    user, production, dns, receiver
):
    dns["rebind.example"] = ["93.184.215.14"]
    endpoint_for(user, "https://rebind.example/hook")
    dns["rebind.example"] = ["127.0.0.1"]
    [delivery] = publish(user)

    assert tasks.deliver(delivery.pk) == "failed"

    delivery.refresh_from_db()
    assert "private, loopback or link-local" in delivery.last_error
    assert Attempt.objects.get().status_code is None


def test_production_settings_default_to_https_and_public_addresses_only():
    script = (
        "from django.conf import settings; "
        "print(settings.WEBHOOK_REQUIRE_HTTPS, settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES)"
    )
    env = {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "x",
        "DJANGO_SETTINGS_MODULE": "interview_site.settings",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {script}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["True", "False"]


# --- Admin ----------------------------------------------------------------------------


def test_the_admin_lists_attempts_and_resends_a_failed_delivery(
    admin_client, user, receiver, django_capture_on_commit_callbacks
):
    server = receiver(400, 200)
    endpoint_for(user, server.url)
    [delivery] = publish(user)
    tasks.deliver(delivery.pk)

    page = admin_client.get(f"/admin/webhooks/delivery/{delivery.pk}/change/")
    assert page.status_code == 200
    assert b"answered 400" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            "/admin/webhooks/delivery/",
            {"action": "resend", "_selected_action": [delivery.pk]},
        )
    [job] = OrmQ.objects.all()
    assert tasks.deliver(*job.task["args"]) == "delivered"
    assert list(Attempt.objects.values_list("status_code", flat=True)) == [400, 200]


# --- Events from the lifecycle --------------------------------------------------------


def received(server) -> list[dict]:
    return [json.loads(request["body"]) for request in server.requests]


def test_answer_completed_and_answer_failed_are_sent_when_transcriptions_finish(
    user, interview, upload, gridfs, scripted_engine, spoken, receiver
):
    server = receiver()
    endpoint = endpoint_for(user, server.url, events=["answer.completed", "answer.failed"])
    first, second = interview.ordered_questions()[:2]
    upload(interview.pk, first.pk, scripted_engine.say(spoken("An index"), "An index."))
    broken = TranscriptionError("The audio could not be decoded.", permanent=True)
    upload(interview.pk, second.pk, scripted_engine.say(spoken("A cache"), broken))

    run_queued_jobs()  # the transcriptions, then the deliveries their changes caused

    events = {event["type"]: event["data"] for event in received(server)}
    assert set(events) == {"answer.completed", "answer.failed"}
    assert events["answer.completed"]["session_id"] == interview.pk
    assert events["answer.completed"]["question_id"] == first.pk
    assert events["answer.completed"]["transcript"] == "An index."
    assert events["answer.completed"]["score"] is not None  # scored before it was sent
    assert events["answer.failed"]["question_id"] == second.pk
    assert "could not be transcribed" in events["answer.failed"]["error"]
    for request in server.requests:
        Webhook(endpoint.secret).verify(request["body"], request["headers"])


def test_session_analyzed_is_sent_when_the_analysis_completes(
    api_client,
    user,
    interview,
    upload,
    gridfs,
    scripted_engine,
    spoken,
    receiver,
    django_capture_on_commit_callbacks,
):
    server = receiver()
    endpoint_for(user, server.url, events=["session.analyzed"])
    question = interview.ordered_questions()[0]
    upload(interview.pk, question.pk, scripted_engine.say(spoken("An index"), "An index."))
    run_queued_jobs()
    assert server.requests == []  # not subscribed to answer events

    with django_capture_on_commit_callbacks(execute=True):
        analysis = api_client.post(f"/api/analyze/{interview.pk}/")
    run_queued_jobs()

    assert analysis.status_code == 200
    [event] = received(server)
    assert event["type"] == "session.analyzed"
    assert event["data"]["session_id"] == interview.pk
    assert event["data"]["final_score"] == analysis.json()["final_score"]
    assert [a["question_id"] for a in event["data"]["answers"]] == [question.pk]


def test_deleting_a_session_deletes_the_deliveries_that_carry_its_answers(
    api_client, user, interview, receiver, django_capture_on_commit_callbacks
):
    endpoint_for(user, receiver(503).url)
    other = publish(user, session_id=interview.pk + 1000)
    publish(user, session_id=interview.pk, transcript="something private")

    with django_capture_on_commit_callbacks(execute=True):
        assert api_client.delete(f"/api/sessions/{interview.pk}/").status_code == 204

    assert list(Delivery.objects.all()) == other


def test_the_readmes_verification_snippet_accepts_a_real_delivery_and_refuses_a_forgery(
    user, receiver
):
    snippet = re.search(r"```python\n(import base64.*?)```", (ROOT / "README.md").read_text(), re.S)
    namespace = {}
    exec(snippet[1], namespace)  # noqa: S102 - the README's own code, as a reader would paste it
    server = receiver()
    endpoint = endpoint_for(user, server.url)
    [delivery] = publish(user)
    tasks.deliver(delivery.pk)
    [request] = server.requests

    assert namespace["verify"](endpoint.secret, request["headers"], request["body"])
    assert not namespace["verify"](endpoint.secret, request["headers"], request["body"] + b" ")
    assert not namespace["verify"](secret_generate(), request["headers"], request["body"])


def test_https_goes_to_the_checked_address_and_still_verifies_the_certificate_for_the_name(
    user, receiver, dns, settings, tmp_path, monkeypatch
):
    """Production's path: https to the address checked, TLS verified for the name."""
    settings.WEBHOOK_REQUIRE_HTTPS = True
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True  # the receiver is on this machine
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=hooks.test"]
        + ["-addext", "subjectAltName=DNS:hooks.test"],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust it, as a public CA would be
    server = receiver(tls=(cert, key))
    dns |= {"hooks.test": ["127.0.0.1"], "impostor.test": ["127.0.0.1"]}
    good = endpoint_for(user, f"https://hooks.test:{server.port}/hook")
    [delivery] = publish(user)

    assert tasks.deliver(delivery.pk) == "delivered"

    [request] = server.requests
    assert request["headers"]["host"] == f"hooks.test:{server.port}"
    Webhook(good.secret).verify(request["body"], request["headers"])
    # The same server under a name its certificate does not hold: refused by TLS, retried.
    good.delete()
    endpoint_for(user, f"https://impostor.test:{server.port}/hook")
    [delivery] = publish(user)
    settings.WEBHOOK_RETRY_IN_WORKER_SECONDS = 0
    assert tasks.deliver(delivery.pk) == "retry scheduled"
    delivery.refresh_from_db()
    assert "SSLError: hostname 'impostor.test' doesn't match" in delivery.last_error
    assert len(server.requests) == 1
