"""The health endpoint names what is down, with MongoDB and qcluster as real processes."""

import pytest
from django.test import Client

from tests.support import free_port, manage, process_env, start_qcluster, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_health_names_mongodb_when_its_server_stops_and_recovers_when_it_is_back(
    settings, tmp_path
):
    port = free_port()
    settings.MONGODB_URI = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    settings.MONGODB_TIMEOUT_MS = 500

    def start_mongo(name):
        return manage(
            "embedded_mongo",
            f"--port={port}",
            f"--path={tmp_path / 'mongo.sqlite3'}",
            log=tmp_path / f"{name}.log",
            env=process_env(),
        )

    client = Client()  # no credentials: health is public
    server = start_mongo("first")
    try:
        wait_for(lambda: client.get("/api/health").status_code == 200, what="MongoDB to answer")
        body = client.get("/api/health").json()
        assert body["database"] == "ok"
        assert body["mongodb"] == "ok"
        assert body["queue"] == {"queued": 0, "processing": 0, "failed": 0, "jobs_waiting": 0}

        server.stop()
        down = client.get("/api/health")
        assert down.status_code == 503
        assert down.json()["mongodb"] == "unavailable"
        assert down.json()["database"] == "ok"

        server = start_mongo("second")
        wait_for(lambda: client.get("/api/health").status_code == 200, what="MongoDB to be back")
        assert client.get("/api/health").json()["mongodb"] == "ok"
    finally:
        server.stop()


def test_health_counts_the_running_cluster_and_its_workers(mongo_uri, tmp_path):
    client = Client()
    assert client.get("/api/health").json()["cluster"] == {"running": 0, "workers": 0}

    cluster = start_qcluster(tmp_path, Q_WORKERS="2")
    try:
        wait_for(
            lambda: client.get("/api/health").json()["cluster"]["running"] == 1,
            what="the cluster to report its status",
        )
        assert client.get("/api/health").json()["cluster"] == {"running": 1, "workers": 2}
    finally:
        cluster.stop()
