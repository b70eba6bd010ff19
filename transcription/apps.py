import logging
import sys
import time

from django.apps import AppConfig

logger = logging.getLogger(__name__)


class TranscriptionConfig(AppConfig):
    name = "transcription"
    verbose_name = "Transcription"

    def ready(self):
        from django_q.signals import post_spawn

        from . import worker

        post_spawn.connect(worker.on_worker_spawn, dispatch_uid="transcription-worker-stop")
        if sys.argv[1:2] == ["qcluster"]:
            engine_ready_before_the_first_job()


def engine_ready_before_the_first_job() -> None:
    """No cold start: import the engine before qcluster forks, load it as each worker spawns.

    The imports (faster-whisper, or the OpenAI SDK with its CA bundle) happen once in the
    parent, so every worker forks with them; so does PyAV, with which every job measures its
    audio whatever the engine. The model is loaded in the worker (django-q2's ``post_spawn``
    signal), never across a fork, and before the worker takes its first job.
    """
    from django_q.signals import post_spawn

    from . import audio, tasks  # noqa: F401 - tasks: the module every job runs
    from .backends import preload

    started = time.monotonic()
    try:
        audio.preload()
        preload()
    except Exception:
        # The job reports what is wrong with the engine, with the answer it concerns.
        logger.warning("Transcription engine not preloaded", exc_info=True)
        return
    logger.info("Transcription engine imported in %.2f s", time.monotonic() - started)
    post_spawn.connect(_warm_up_worker, dispatch_uid="transcription-warm-up")


def _warm_up_worker(sender, proc_name, **kwargs):
    from .backends import warm_up

    started = time.monotonic()
    try:
        warm_up()
    except Exception:
        logger.warning("Transcription engine not warmed up in %s", proc_name, exc_info=True)
        return
    logger.info("Transcription engine ready in %s in %.2f s", proc_name, time.monotonic() - started)
