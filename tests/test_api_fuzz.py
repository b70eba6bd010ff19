"""Schemathesis fuzzes every operation of a real gunicorn against the API's own document."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from model_bakery import baker
from rest_framework.authtoken.models import Token

from sessions_app.models import Answer
from sessions_app.services import session_create
from tests.support import Process, database_url, free_port, port_open, process_env, wait_for
from transcription.models import Transcription
from webhooks.models import Endpoint

EXAMPLES_PER_OPERATION = 25
STATES = [
    {"status": "completed", "transcript": "I would add an index.", "language": "en"},
    {"status": "failed", "error": "The audio could not be decoded."},
    {"status": "queued", "gridfs_file_id": None},
]
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_fuzzing_every_operation_finds_no_server_error_and_no_schema_violation(
    questions, mongo_uri, tmp_path, capsys
):
    user = get_user_model().objects.create_user("fuzzer", password="fuzzing along")
    token = Token.objects.create(user=user).key
    # Real ids for part of the cases, so that they reach the views' logic, not only the 404.
    sessions = [session_create(user=user, question_count=3) for _ in range(2)]
    # Answers in each state, so that status and analyze answer with real bodies: the first
    # session waits for a transcription (202), the second can be scored (200).
    seeds = [
        (sessions[0], q, state)
        for q, state in zip(sessions[0].ordered_questions(), STATES, strict=True)
    ]
    seeds.append((sessions[1], sessions[1].ordered_questions()[0], STATES[0]))
    for session, question, state in seeds:
        transcription = baker.make(Transcription, content_type="audio/wav", **state)
        Answer.objects.create(session=session, question=question, transcription=transcription)
    question_ids = [q.pk for session in sessions for q in session.ordered_questions()]
    endpoint = Endpoint.objects.create(user=user, url="https://example.com/hook", secret="whsec_")
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f"""
[dictionaries.sessions]
values = {[session.pk for session in sessions]}
[dictionaries.questions]
values = {question_ids}
[dictionaries.endpoints]
values = [{endpoint.pk}]
[parameters]
"path.session_id" = {{ dictionary = "sessions", probability = 0.6 }}
"path.question_id" = {{ dictionary = "questions", probability = 0.6 }}
"path.endpoint_id" = {{ dictionary = "endpoints", probability = 0.6 }}
"""
    )
    port = free_port()
    # Production settings behind the PaaS router: DEBUG off, plain HTTP marked as https.
    env = process_env(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="only-for-this-test",
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=database_url(),
        EVENTS_MAX_SECONDS="1",  # a stream would otherwise stay open past the request timeout
    )
    server = Process(
        [sys.executable, "-m", "gunicorn", "interview_site.asgi", f"--bind=127.0.0.1:{port}"]
        + ["--worker-class=uvicorn_worker.UvicornWorker", "--workers=2", "--timeout=60"],
        log=tmp_path / "gunicorn.log",
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: port_open(port) or not server.alive(), what="gunicorn to listen")
        assert server.alive(), server.output()
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                f"--config-file={config}",
                "run",
                f"{base}/api/schema/?format=json",
                f"--url={base}",
                f"--header=Authorization: Token {token}",
                "--header=X-Forwarded-Proto: https",
                f"--checks={','.join(CHECKS)}",
                f"--max-examples={EXAMPLES_PER_OPERATION}",
                "--seed=13",
                "--workers=2",
                "--request-timeout=30",
                "--continue-on-failure",
                "--report=json",
                f"--report-json-path={tmp_path / 'report.json'}",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        server.stop()
    summary = run.stdout[-3000:]
    with capsys.disabled():
        print(f"\nSchemathesis against gunicorn:\n{summary}")
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-3000:] + server.output()[-5000:]
    assert not re.search(r"\b[1-9]\d* (failures?|errors?)\b", summary), summary
