"""Processes, ports, waiting and whole files, for the tests and the benchmark alike (no Django).

Every process a test or a benchmark run starts is a ``Process``: its own process group, its
output in a log file, stopped by a signal to its leader and killed with its whole group at a
deadline. The product never imports this module.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


class WaitTimeout(TimeoutError, AssertionError):
    """A condition did not hold in time: a failed assertion in a test, a timeout elsewhere."""


def wait_for(condition, *, timeout: float = 30, what: str = "the condition", interval=0.05):
    """Poll ``condition`` until it returns something truthy; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"Timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a reader (another process polling for it, a
    report's viewer) never sees it created but not yet written."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_bytes(data)
    os.replace(partial, path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class Process:
    """A child process in its own process group, with its output in a log file."""

    def __init__(
        self,
        args: list[str],
        *,
        log: Path,
        env: dict[str, str],
        cwd: Path = ROOT,
        stop_timeout: float = 20,
        name: str | None = None,
    ):
        self.name = name or Path(args[0]).name
        self.log = log
        self.stop_timeout = stop_timeout
        self.stopped = False
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
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

    def stop(self, *, sig: int = signal.SIGTERM) -> float:
        """Signal the leader; SIGKILL the group after the deadline. Return the seconds taken."""
        started = time.monotonic()
        if self.stopped:
            return 0.0
        self.stopped = True
        if self.alive():
            # The leader alone: gunicorn's master and qcluster stop their own children in
            # order (a qcluster signalled as a whole group hangs until killed).
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            try:
                self.popen.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(10)
        # Children the leader left behind in its group (a killed qcluster's workers).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log_file.close()
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash or the OOM killer would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(10)
        self.stop()

    def children(self) -> list[int]:
        """Return the pids of this process's direct children (a gunicorn master's workers)."""
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]


def manage(*args: str, log: Path, env: dict[str, str], **options) -> Process:
    """Start ``manage.py`` with these arguments as a ``Process``."""
    return Process([sys.executable, "manage.py", *args], log=log, env=env, name=args[0], **options)


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


class EmbeddedMongo:
    """``manage.py embedded_mongo`` on a free port with data in ``folder``: stop, kill, restart.

    The data outlive the process: ``start()`` again reopens them.
    """

    def __init__(self, folder: Path, *, env: dict[str, str], port: int | None = None):
        self.folder = folder
        self.env = env
        self.port = port or free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}/?directConnection=true"
        self.process: Process | None = None
        self.starts = 0

    @property
    def data(self) -> Path:
        return self.folder / "mongo-data"

    def start(self, *, timeout: float = 60) -> "EmbeddedMongo":
        self.starts += 1
        self.process = manage(
            "embedded_mongo",
            f"--port={self.port}",
            f"--path={self.data}",
            log=self.folder / f"mongo-{self.starts}.log",
            env=self.env,
            stop_timeout=20,
        )
        wait_for(
            lambda: self.answers() or not self.process.alive(),
            timeout=timeout,
            what=f"the embedded MongoDB on port {self.port}",
        )
        if not self.process.alive():
            raise RuntimeError(f"embedded_mongo exited:\n{self.process.output()[-3000:]}")
        return self

    def answers(self) -> bool:
        """True once the server answers a ping."""
        from pymongo import MongoClient

        client = MongoClient(self.uri, serverSelectionTimeoutMS=300, connectTimeoutMS=300)
        try:
            return client.admin.command("ping").get("ok") == 1
        except Exception:
            return False
        finally:
            client.close()

    def stop(self) -> float:
        """SIGTERM, as a supervisor stops it; the port is free afterwards."""
        seconds = self.process.stop()
        assert not port_open(self.port), f"port {self.port} still answers"
        return seconds

    def kill(self) -> None:
        """SIGKILL the server, as a crash or the OOM killer would."""
        self.process.kill()
