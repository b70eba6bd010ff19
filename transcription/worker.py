"""Graceful stop for queue workers: SIGTERM hands in-flight transcriptions back to the queue.

django-q2 stops a cluster by letting each worker finish its current task, which for a long
recording outlasts a platform's shutdown grace (then everything is killed and the task comes
back only after Q_RETRY). Here a worker that gets SIGTERM interrupts the engine at its next
Python step, releases the transcription to ``queued`` with a fresh job (so another cluster
takes it at once), defers any task it had already taken, and exits once idle.
"""

import contextlib
import logging
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

# Where the workers of one cluster write their pids, so that its leader can signal them.
REGISTRY_ENV = "TRANSCRIPTION_WORKER_REGISTRY"
# A stopping worker exits after this long without a job (tasks it had taken are deferred).
IDLE_EXIT_SECONDS = 1.0


class WorkerStopping(BaseException):  # noqa: N818 - not an error: the worker is shutting down
    """Raised inside a releasable step when this worker was asked to stop."""


_stop = threading.Event()
_state = {"releasable": False, "busy": False, "last_busy": 0.0}


def stopping() -> bool:
    return _stop.is_set()


@contextlib.contextmanager
def releasable():
    """Run a step that a SIGTERM interrupts with WorkerStopping."""
    _state["busy"] = True
    _state["releasable"] = True
    try:
        if stopping():
            raise WorkerStopping
        yield
    finally:
        _state["releasable"] = False
        _state["busy"] = False
        _state["last_busy"] = time.monotonic()


def _on_sigterm(signum, frame):
    first = not _stop.is_set()
    _stop.set()
    if first:
        logger.info("Worker %s stopping: releasing its transcription, if any", os.getpid())
        threading.Thread(target=_exit_when_idle, daemon=True).start()
    if _state["releasable"]:
        _state["releasable"] = False
        raise WorkerStopping


def _exit_when_idle():
    """End this worker once it has been idle for a moment after the stop request."""
    _state["last_busy"] = time.monotonic()
    while True:
        idle_for = time.monotonic() - _state["last_busy"]
        if not _state["busy"] and idle_for >= IDLE_EXIT_SECONDS:
            logger.info("Worker %s stopped", os.getpid())
            os._exit(0)
        _stop.wait(0.1)  # already set: this only paces the loop


def on_worker_spawn(**kwargs) -> None:
    """django-q2's post_spawn, in each new worker process: take over SIGTERM, register."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    registry = os.environ.get(REGISTRY_ENV)
    if registry:
        # Without its entry the worker still stops cleanly when signalled itself.
        with contextlib.suppress(OSError):
            (Path(registry) / str(os.getpid())).touch()


def make_registry() -> Path:
    """Create the folder this cluster's workers register in, for its leader to read."""
    folder = Path(tempfile.mkdtemp(prefix="qcluster-workers-"))
    os.environ[REGISTRY_ENV] = str(folder)
    return folder


def signal_workers(registry: Path, *, parent_pid: int) -> int:
    """Send SIGTERM to each registered worker still a child of ``parent_pid``; count them."""
    signalled = 0
    for entry in registry.iterdir():
        pid = int(entry.name)
        # A recycled worker's pid may since belong to another process: check its parent.
        if _parent_of(pid) == parent_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                signalled += 1
    return signalled


PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def become_subreaper() -> None:
    """Adopt this process's orphaned descendants (Linux; elsewhere nothing happens).

    Signalled as a whole process group, a cluster's sentinel can die before its workers; they
    are then re-parented here instead of to init, so the leader can end them (kill_children)
    rather than leave them running after it exits.
    """
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def kill_children(parent_pid: int) -> None:
    """SIGKILL every process whose parent is ``parent_pid`` (Linux /proc)."""
    for pid in _children(parent_pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def end_children(parent_pid: int, *, grace: float) -> None:
    """Give ``parent_pid``'s children ``grace`` seconds to exit (a worker finishing its
    release), then SIGKILL those left; zombies, already ended, are left to be reaped."""
    deadline = time.monotonic() + grace
    while _children(parent_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    kill_children(parent_pid)


def _children(parent_pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if _parent_of(pid) == parent_pid and not _zombie(pid):
            children.append(pid)
    return children


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: the fields after it follow its ")".
    return int(stat.rsplit(")", 1)[1].split()[1])
