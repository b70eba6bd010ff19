"""/metrics for Prometheus, and the readiness and liveness probes for the platform."""

import hmac
import ipaddress
import logging
import os

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from . import queue
from .collectors import QueueCollector

logger = logging.getLogger(__name__)


def _scraper_allowed(request) -> bool:
    if settings.METRICS_TOKEN:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), settings.METRICS_TOKEN.encode()
        ):
            return True
    if settings.METRICS_ALLOWED_IPS:
        try:
            peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            return False
        return any(
            peer in ipaddress.ip_network(allowed, strict=False)
            for allowed in settings.METRICS_ALLOWED_IPS
        )
    # Nothing configured: open in development only.
    return settings.DEBUG and not settings.METRICS_TOKEN


@require_GET
def metrics(request):
    """Every process's counters and histograms, then the gauges read now."""
    if not _scraper_allowed(request):
        response = HttpResponse("Not authorized to read metrics.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each gunicorn and qcluster process writes its own files; add them all up.
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    now = CollectorRegistry()
    now.register(QueueCollector())
    return HttpResponse(
        generate_latest(processes) + generate_latest(now), content_type=CONTENT_TYPE_LATEST
    )


@require_GET
def ready(request):
    """200 while answers get picked up; 503 "degraded" when the queue has stalled."""
    try:
        state = queue.readiness()
    except DatabaseError as exc:
        logger.warning("Readiness: the database did not answer: %s", exc)
        return JsonResponse({"status": "unavailable", "database": "unavailable"}, status=503)
    return JsonResponse(state.as_dict(), status=200 if state.ready else 503)


@require_GET
def live(request):
    """The process answers requests; touches nothing else, so it stays cheap."""
    return JsonResponse({"status": "alive"})
