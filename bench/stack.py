"""The processes a benchmark run starts: each in its own process group, always stopped."""

import contextlib
import os
import sys
from pathlib import Path

import harness
from harness import ROOT, Process, free_port, port_open, reset_peak_rss, rss_kib, wait_for

__all__ = [
    "ROOT",
    "Process",
    "free_port",
    "reset_peak_rss",
    "rss_kib",
    "wait_for",
]


def manage(name: str, *args: str, env: dict[str, str], logs: Path, stop_timeout=20) -> Process:
    return Process(
        [sys.executable, "manage.py", *args],
        env=env,
        log=logs / f"{name}.log",
        stop_timeout=stop_timeout,
        name=name,
    )


def embedded_mongo(folder: Path, *, env: dict[str, str], port: int) -> harness.EmbeddedMongo:
    """Start ``manage.py embedded_mongo`` with its data in ``folder``; wait until it answers."""
    return harness.EmbeddedMongo(folder, env=env, port=port).start()


def embedded_mongo_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("secantusdb")
    except PackageNotFoundError:
        return "not installed"


def gunicorn(
    name: str,
    *,
    port: int,
    workers: int,
    threads: int,
    env: dict[str, str],
    logs: Path,
    app: str = "interview_site.wsgi",
    asgi: bool = False,
) -> Process:
    """Start gunicorn serving ``app`` on 127.0.0.1; wait until it answers.

    ``asgi``: uvicorn workers, as the Procfile's web runs ``interview_site.asgi``; ``threads``
    is then its WEB_THREADS, the views each worker runs at once.
    """
    if asgi:
        env = env | {"WEB_THREADS": str(threads)}
    workers_args = (
        ["--worker-class=uvicorn_worker.UvicornWorker"]
        if asgi
        else [f"--threads={threads}", "--worker-class=gthread"]
    )
    server = Process(
        [
            sys.executable,
            "-m",
            "gunicorn",
            app,
            f"--bind=127.0.0.1:{port}",
            f"--workers={workers}",
            *workers_args,
            # A baseline request waits for the engine; gunicorn must not kill it.
            "--timeout=300",
            "--graceful-timeout=10",
            # Which worker served each request, and its time there in microseconds (%(D)s).
            f"--access-logfile={logs / f'{name}-access.log'}",
            "--access-logformat=%(p)s %(m)s %(U)s %(s)s %(D)s",
        ],
        env=env,
        log=logs / f"{name}.log",
        stop_timeout=20,
        name=name,
    )
    wait_for(lambda: port_open(port) or not server.alive(), timeout=60, what=f"{name} on {port}")
    if not server.alive():
        raise RuntimeError(f"{name} exited early:\n{server.output()[-3000:]}")
    wait_for(
        lambda: len(server.children()) >= workers, timeout=30, what=f"{name}'s {workers} workers"
    )
    return server


def access_log(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Return, by URL path, the worker pid and seconds in the worker of each request."""
    requests: dict[str, list[tuple[int, float]]] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 5 and parts[4].isdigit():
                pid = int(parts[0].strip("<>"))
                requests.setdefault(parts[2], []).append((pid, int(parts[4]) / 1e6))
    return requests


def cpu_seconds(process_group: int) -> float:
    """Return the CPU time (user and system) used by the live processes of a process group."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state, ppid, pgrp, ..., utime (14th field of the line), stime.
        if int(fields[2]) == process_group:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """Return the CPU time all cores spent busy since boot (every process on the machine)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def transcription_api(*, latency: tuple[float, float]):
    """Start the fake transcription API in this process; it records each answer's latency."""
    import threading

    from bench.accounting import ANSWER_FILENAME
    from fake_openai import FakeOpenAI

    class RecordingOpenAI(FakeOpenAI):
        """Remember the latency drawn for each answer (the engine's filename is its id)."""

        def __init__(self, **kwargs):
            super().__init__(keep_requests=False, **kwargs)
            self._handling = threading.local()
            self.engine_seconds: dict[int, float] = {}
            self.received_at: dict[int, float] = {}

        def _record(self, request):
            self._handling.filename = request.filename
            match = ANSWER_FILENAME.search(request.filename or "")
            if match:
                with self._lock:
                    self.received_at[int(match.group(1))] = request.received_at
            return super()._record(request)

        def _delay(self) -> float:
            delay = super()._delay()
            match = ANSWER_FILENAME.search(getattr(self._handling, "filename", None) or "")
            if match:
                with self._lock:
                    answer_id = int(match.group(1))
                    self.engine_seconds[answer_id] = self.engine_seconds.get(answer_id, 0) + delay
            return delay

    return RecordingOpenAI(latency=latency).start()
