"""No cold start: qcluster imports the engine before it forks, each worker loads it at spawn."""

import re

import pytest

from tests.support import start_qcluster, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_every_worker_has_the_local_engine_loaded_before_its_first_job(tmp_path, mongo_uri):
    cluster = start_qcluster(tmp_path, TRANSCRIBER="local", Q_WORKERS="2")
    try:
        wait_for(
            lambda: cluster.output().count("Transcription engine ready in") == 2,
            timeout=120,
            what="both workers to load the engine",
        )
        log = cluster.output()
    finally:
        cluster.stop()

    imported = log.index("Transcription engine imported in")
    # Imported once in the parent, before any worker process existed ...
    assert imported < log.index("ready for work")
    # ... and each worker loaded the model as it spawned, not when a job arrived.
    ready = re.findall(r"Transcription engine ready in (Process-\S+) in", log)
    workers = re.findall(r"(Process-\S+) ready for work", log)
    assert sorted(ready) == sorted(workers)
