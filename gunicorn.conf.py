"""gunicorn reads this file from the working directory: Prometheus multiprocess mode for the
web workers, so /metrics adds up every worker's counters whichever worker answers."""

import os
import shutil
import tempfile

# Unset, the web gets a fresh directory of its own (this master's pid), removed on exit. Set
# (`make run`, a host shared with qcluster), whoever starts the process tree empties it first,
# so that qcluster's files written meanwhile are never wiped from under it.
_OWN_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(
        tempfile.gettempdir(), f"interview-prometheus-{os.getpid()}"
    )


def on_starting(server):
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    if _OWN_DIR:
        shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)


def child_exit(server, worker):
    # A dead worker's live gauges leave the sum; its counters stay counted.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _OWN_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
