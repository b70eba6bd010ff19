"""The health endpoint names what is down, with MongoDB and qcluster as real processes."""

import pytest
from django.test import Client
from model_bakery import baker

from tests.support import EmbeddedMongo, start_qcluster, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_health_names_mongodb_when_its_server_stops_and_recovers_when_it_is_back(
    settings, tmp_path
):
    mongo = EmbeddedMongo(tmp_path).start()
    settings.MONGODB_URI = mongo.uri
    settings.MONGODB_TIMEOUT_MS = 500
    settings.HEALTH_CACHE_SECONDS = 0  # every probe checks again
    settings.HEALTH_MONITORING_TOKEN = "monitor-secret"
    client = Client(headers={"Authorization": "Bearer monitor-secret"})
    try:
        wait_for(lambda: client.get("/api/health").status_code == 200, what="MongoDB to answer")
        body = client.get("/api/health").json()
        assert body["database"] == "ok"
        assert body["mongodb"] == "ok"
        assert body["queue"] == {"queued": 0, "processing": 0, "failed": 0, "jobs_waiting": 0}

        mongo.stop()
        down = client.get("/api/health")
        assert down.status_code == 503
        assert down.json()["mongodb"] == "unavailable"
        assert down.json()["database"] == "ok"

        mongo.start()
        wait_for(lambda: client.get("/api/health").status_code == 200, what="MongoDB to be back")
        assert client.get("/api/health").json()["mongodb"] == "ok"
    finally:
        mongo.stop()


def test_health_counts_the_running_cluster_and_its_workers(mongo_uri, tmp_path, settings):
    settings.HEALTH_CACHE_SECONDS = 0
    staff = baker.make("auth.User", is_staff=True)
    client = Client()
    client.force_login(staff)
    # An earlier test's cluster is reported until its last status expires (3 s).
    wait_for(
        lambda: client.get("/api/health").json()["workers"] == {"running": 0, "workers": 0},
        what="no cluster to be reported",
    )
    assert Client().get("/api/health").json()["cluster"] == "unavailable"

    cluster = start_qcluster(tmp_path, Q_WORKERS="2")
    try:
        wait_for(
            lambda: client.get("/api/health").json()["workers"] == {"running": 1, "workers": 2},
            what="the cluster to report itself and its two workers",
        )
        # The public sees only that the cluster is up, no counts.
        assert Client().get("/api/health").json() == {
            "status": "ok",
            "database": "ok",
            "mongodb": "ok",
            "cluster": "ok",
        }
    finally:
        cluster.stop()
