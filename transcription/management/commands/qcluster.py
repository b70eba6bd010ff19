import os
import shutil
import signal

from django.conf import settings
from django_q.cluster import Cluster
from django_q.management.commands import qcluster

from transcription import worker

SENTINEL_DEATH_SECONDS = 1.0


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
        cluster = Cluster()
        stop = cluster.sig_handler

        def release_then_stop(signum, frame):
            sentinel = cluster.sentinel
            if sentinel is not None:
                worker.signal_workers(registry, parent_pid=sentinel.pid)
                # Signalled as a whole process group (as some platforms do), the sentinel
                # dies at once, and asking it to stop would wait for ever on the lock it held.
                sentinel.join(timeout=SENTINEL_DEATH_SECONDS)
                if sentinel.is_alive():
                    stop(signum, frame)
            shutil.rmtree(registry, ignore_errors=True)

        signal.signal(signal.SIGTERM, release_then_stop)
        signal.signal(signal.SIGINT, release_then_stop)
        # start() returns once the cluster runs; the process then waits for it to stop.
        cluster.start()
        if options.get("run_once", False):
            cluster.stop()
