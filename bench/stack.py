"""The processes a benchmark run starts: each in its own process group, always stopped."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, *, timeout: float, what: str, interval: float = 0.05):
    """Poll ``condition`` until it returns something truthy; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"Timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Process:
    """A child process in its own process group, with its output in a log file."""

    def __init__(
        self, name: str, args: list[str], *, env: dict[str, str], logs: Path, stop_timeout
    ):
        self.name = name
        self.log = logs / f"{name}.log"
        self.stop_timeout = stop_timeout
        self.stopped = False
        self._log_file = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_until(self, text: str, *, timeout: float) -> None:
        """Wait until the log shows ``text``; raise with the log's tail if the process died."""
        wait_for(
            lambda: text in self.output() or not self.alive(),
            timeout=timeout,
            what=f"{self.name} to print {text!r}",
        )
        if not self.alive():
            raise RuntimeError(f"{self.name} exited early:\n{self.output()[-3000:]}")

    def stop(self) -> float:
        """SIGTERM the leader, SIGKILL the group after the deadline; return seconds taken."""
        started = time.monotonic()
        if self.stopped:
            return 0.0
        self.stopped = True
        if self.alive():
            # The leader only: gunicorn's master and qcluster's stop their own children in
            # order (qcluster hangs until killed when its workers get SIGTERM too).
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(10)
        # Children the leader left behind in its group (a qcluster's workers).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log_file.close()
        return time.monotonic() - started

    def children(self) -> list[int]:
        """Return the pids of this process's direct children (a gunicorn master's workers)."""
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]


def manage(name: str, *args: str, env: dict[str, str], logs: Path, stop_timeout=20) -> Process:
    return Process(
        name,
        [sys.executable, "manage.py", *args],
        env=env,
        logs=logs,
        stop_timeout=stop_timeout,
    )


def gunicorn(
    name: str, *, port: int, workers: int, threads: int, env: dict[str, str], logs: Path
) -> Process:
    """Start gunicorn serving the project on 127.0.0.1; wait until it answers."""
    server = Process(
        name,
        [
            sys.executable,
            "-m",
            "gunicorn",
            "interview_site.wsgi",
            f"--bind=127.0.0.1:{port}",
            f"--workers={workers}",
            f"--threads={threads}",
            "--worker-class=gthread",
            # A baseline request waits for the engine; gunicorn must not kill it.
            "--timeout=300",
            "--graceful-timeout=10",
            # Which worker served each request, and its time there in microseconds (%(D)s).
            f"--access-logfile={logs / f'{name}-access.log'}",
            "--access-logformat=%(p)s %(m)s %(U)s %(s)s %(D)s",
        ],
        env=env,
        logs=logs,
        stop_timeout=20,
    )
    wait_for(lambda: _listening(port) or not server.alive(), timeout=60, what=f"{name} on {port}")
    if not server.alive():
        raise RuntimeError(f"{name} exited early:\n{server.output()[-3000:]}")
    wait_for(
        lambda: len(server.children()) >= workers, timeout=30, what=f"{name}'s {workers} workers"
    )
    return server


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


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


def rss_kib(pid: int) -> tuple[int, int]:
    """Return (current RSS, peak RSS) of a process in KiB, from /proc."""
    values = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def reset_peak_rss(pid: int) -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of a process; False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def transcription_api(*, latency: tuple[float, float]):
    """Start the fake transcription API in this process; it records each answer's latency."""
    import threading

    from bench.accounting import ANSWER_FILENAME
    from tests.openai_server import FakeOpenAI

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
