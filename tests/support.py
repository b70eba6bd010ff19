"""Helpers the tests share: real processes, speech, the queue, waiting on a condition."""

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import requests
from django.db import connection
from django.test import TestCase
from django.utils.module_loading import import_string
from django_q.brokers import get_broker
from django_q.models import OrmQ
from django_q.signing import SignedPackage

import harness
from harness import (  # noqa: F401 - for the tests
    ROOT,
    Process,
    free_port,
    manage,
    port_open,
    wait_for,
)
from sessions_app.models import Answer, InterviewSession
from transcription.models import Transcription


def process_env(**overrides: str) -> dict[str, str]:
    """Return the environment for a child process that shares the tests' databases."""
    env = os.environ | {"DJANGO_DEBUG": "1", "PYTHONUNBUFFERED": "1"}
    return env | {key: str(value) for key, value in overrides.items()}


def database_url() -> str:
    """Return a DATABASE_URL for the test database, for processes the tests start."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class EmbeddedMongo(harness.EmbeddedMongo):
    """An embedded MongoDB server process of a test's own, to stop, kill and start again."""

    def __init__(self, folder: Path):
        super().__init__(folder, env=process_env())


def start_qcluster(tmp_path: Path, **env: str) -> Process:
    """Start a real ``qcluster`` on the test database; stop it with ``.stop()``."""
    cluster = manage(
        "qcluster",
        log=tmp_path / "qcluster.log",
        env=process_env(DATABASE_URL=database_url(), **env),
        # qcluster can take long to wind down on SIGTERM, and the tests need no graceful stop.
        stop_timeout=5,
    )
    wait_for(
        lambda: "ready for work" in cluster.output() or not cluster.alive(),
        timeout=60,
        what="qcluster to start",
    )
    assert cluster.alive(), cluster.output()
    return cluster


def stored_state(gridfs) -> dict:
    """Return everything a refused request must leave as it was: rows, audio, queued jobs."""
    return {
        "answers": list(
            Answer.objects.values_list(
                "pk",
                "question_id",
                "transcription__gridfs_file_id",
                "transcription__status",
                "transcription__attempts",
            )
        ),
        "transcriptions": Transcription.objects.count(),
        "sessions": list(InterviewSession.objects.values_list("pk", "status", "final_score")),
        "files": gridfs["fs.files"].count_documents({}),
        "chunks": gridfs["fs.chunks"].count_documents({}),
        "jobs": OrmQ.objects.count(),
    }


def run_queued_jobs() -> int:
    """Run every job waiting on the ORM broker in this process, as a worker would.

    The test's transaction never commits, so each job's on-commit hooks (the state-change
    signal) run when the job returns, as they would after a worker's commits.
    """
    broker = get_broker()
    ran = 0
    while tasks := broker.dequeue():
        for ack_id, payload in tasks:
            task = SignedPackage.loads(payload)
            with TestCase.captureOnCommitCallbacks(execute=True):
                import_string(task["func"])(*task["args"], **task["kwargs"])
            broker.acknowledge(ack_id)
            ran += 1
    return ran


_speech_cache: dict[tuple[str, str], bytes] = {}


def no_speech(workdir: Path, *, sample_rate: int, seed: int) -> dict[str, bytes]:
    """Return six seconds of digital silence and six of loud pink noise, WebM/Opus by ffmpeg."""
    made = {}
    for name, source in [
        ("silence", f"anullsrc=r={sample_rate}:cl=mono"),
        ("noise", f"anoisesrc=r={sample_rate}:color=pink:amplitude=0.3:seed={seed}"),
    ]:
        path = workdir / f"{name}.webm"
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-t", "6", "-i", source]
            + ["-c:a", "libopus", str(path)],
            check=True,
        )
        made[name] = path.read_bytes()
    return made


def speak(text: str, *, fmt: str = "wav", workdir: Path) -> bytes:
    """Return ``text`` spoken by espeak-ng, as wav or converted by ffmpeg (webm is opus)."""
    key = (text, fmt)
    if key not in _speech_cache:
        name = hashlib.sha1(text.encode()).hexdigest()[:12]
        wav = workdir / f"{name}.wav"
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), text], check=True)
        if fmt == "wav":
            out = wav
        else:
            out = workdir / f"{name}.{fmt}"
            codec = {"webm": ["-c:a", "libopus"], "ogg": ["-c:a", "libopus"]}.get(fmt, [])
            subprocess.run(
                ["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), *codec, str(out)], check=True
            )
        _speech_cache[key] = out.read_bytes()
    return _speech_cache[key]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Return the word-level edit distance divided by the reference's length."""
    ref, hyp = words(reference), words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i]
        for j, hyp_word in enumerate(hyp, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word))
            )
        previous = current
    return previous[-1] / len(ref)


def procfile_web_command() -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise AssertionError("Procfile has no web process")


class Web:
    """The Procfile's web command on the test database (one uvicorn worker by default)."""

    def __init__(self, tmp_path: Path, name: str, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = Process(
            ["bash", "-c", f"exec {procfile_web_command()}"],
            log=tmp_path / f"web-{name}.log",
            env=process_env(
                **{"WEB_CONCURRENCY": "1"}
                | env
                | {
                    "PORT": str(self.port),
                    "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                    "DATABASE_URL": database_url(),
                    "GUNICORN_CMD_ARGS": "--graceful-timeout 2",
                }
            ),
            stop_timeout=10,
        )
        try:
            wait_for(lambda: self._answers() or not self.server.alive(), timeout=60, what=name)
            assert self.server.alive(), self.server.output()
        except BaseException:
            self.server.stop()
            raise

    def _answers(self) -> bool:
        try:
            requests.get(f"{self.url}/api/sessions", timeout=5)
        except requests.RequestException:
            return False
        return True

    def worker_threads(self) -> int:
        """Return how many threads the web process's (one) worker runs."""
        (worker,) = self.server.children()
        return len(list(Path(f"/proc/{worker}/task").iterdir()))

    def stop(self):
        self.server.stop()


def start_gunicorn(tmp_path: Path, *, workers: int = 2, **env: str) -> tuple[str, Process]:
    """Serve the app with real gunicorn workers on the test database; return (url, process)."""
    import requests

    port = free_port()
    server = Process(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "interview_site.wsgi",
            f"--workers={workers}",
            f"--bind=127.0.0.1:{port}",
            "--access-logfile=-",
            # The worker's pid first, so a test can tell which worker served each request.
            "--access-logformat=%(p)s %(s)s %(m)s %(U)s",
        ],
        log=tmp_path / "gunicorn.log",
        env=process_env(DATABASE_URL=database_url(), **env),
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            # The first request loads the app in a fresh worker: slow on a busy machine.
            requests.get(f"{url}/api/health/live", timeout=30)
        except (requests.ConnectionError, requests.Timeout):
            return False
        return True

    try:
        wait_for(
            lambda: server.output().count("Booting worker") >= workers or not server.alive(),
            timeout=60,
            what="gunicorn workers to boot",
        )
        wait_for(lambda: not server.alive() or answers(), what="gunicorn to answer")
        assert server.alive(), server.output()
    except BaseException:
        server.stop()
        raise
    return url, server
