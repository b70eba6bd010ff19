import logging
import os
import shutil
import signal
import threading

from django.conf import settings
from django_q.cluster import Cluster
from django_q.management.commands import qcluster

from transcription import worker

logger = logging.getLogger(__name__)

# The workers release their transcriptions in about a second; the rest of django-q2's stop
# gets this long before what is left of the cluster is killed.
STOP_SECONDS = 15
# How long processes orphaned by a group signal get to finish on their own.
ORPHAN_GRACE_SECONDS = 3


class Command(qcluster.Command):
    # Overrides django-q2's qcluster (this app comes first in INSTALLED_APPS), the way
    # staticfiles overrides runserver: the same cluster, with a stop that releases work.
    help = (
        "Start a Django Q cluster. On SIGTERM or SIGINT its workers hand in-flight "
        "transcriptions back to the queue and the cluster exits."
    )

    def handle(self, *args, **options):
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        settings.SECRET_KEY  # noqa: B018 - signing needs it: fail now, not in a worker
        registry = worker.make_registry()
        worker.become_subreaper()
        cluster = Cluster()
        stop = cluster.sig_handler

        stopping = threading.Event()

        def release_then_stop(signum, frame):
            sentinel = cluster.sentinel
            if sentinel is None or stopping.is_set():
                return
            stopping.set()
            worker.signal_workers(registry, parent_pid=sentinel.pid)
            # django-q2's own stop, within a deadline: signalled as a whole process group (as
            # some platforms do), the cluster's other processes die at once and its stop can
            # wait for ever on what they left behind.
            threading.Thread(target=stop, args=(signum, frame), daemon=True).start()
            sentinel.join(timeout=STOP_SECONDS)
            if sentinel.is_alive():
                logger.warning("Cluster not stopped after %s s: killing what is left", STOP_SECONDS)
                worker.kill_children(sentinel.pid)
                os.kill(sentinel.pid, signal.SIGKILL)
                sentinel.join(timeout=STOP_SECONDS)
            # What the stop left: processes orphaned when the group's signal killed their
            # parent (adopted by this one, a subreaper). Their work is released already.
            worker.end_children(os.getpid(), grace=ORPHAN_GRACE_SECONDS)
            shutil.rmtree(registry, ignore_errors=True)

        signal.signal(signal.SIGTERM, release_then_stop)
        signal.signal(signal.SIGINT, release_then_stop)
        # start() returns once the cluster runs; the process then waits for it to stop.
        cluster.start()
        if options.get("run_once", False):
            cluster.stop()
