"""Everything that writes webhook endpoints and deliveries, and sends them."""

import json
import logging
import random
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django_q.tasks import async_task

from .addresses import AddressRefused, url_target
from .models import Attempt, Delivery, Endpoint
from .signing import secret_generate, sign

logger = logging.getLogger(__name__)

DELIVER_JOB = "webhooks.tasks.deliver"
RESPONSE_KEPT_BYTES = 2048
# A receiver's answer that may change if asked again: timeouts, 408, 429 and 5xx.
RETRYABLE_STATUSES = {408, 429}


def endpoint_create(*, user, url: str, events: list[str], description: str = "") -> Endpoint:
    """Register an endpoint with a new secret; the URL must pass the address checks."""
    url_target(url)
    return Endpoint.objects.create(
        user=user,
        url=url,
        events=sorted(set(events)),
        description=description,
        secret=secret_generate(),
    )


def endpoint_delete(*, endpoint: Endpoint) -> None:
    """Remove an endpoint and its deliveries: nothing more is sent to it."""
    endpoint.delete()


def event_publish(*, user_id: int, event: str, data: dict) -> list[Delivery]:
    """Store one delivery of the event for each endpoint of the user that listens to it."""
    payload = {"type": event, "timestamp": timezone.now().isoformat(), "data": data}
    deliveries = []
    for endpoint in Endpoint.objects.listening(user_id=user_id, event=event):
        with transaction.atomic():
            delivery = Delivery.objects.create(
                endpoint=endpoint,
                message_id=f"msg_{uuid.uuid4().hex}",
                event=event,
                payload=payload,
                next_attempt_at=timezone.now(),
                retry_until=timezone.now() + timedelta(seconds=settings.WEBHOOK_RETRY_FOR_SECONDS),
            )
            # Stored first: if the enqueue is lost, the reconciler still finds it due.
            transaction.on_commit(partial(delivery_enqueue, delivery_id=delivery.pk))
        deliveries.append(delivery)
    return deliveries


def delivery_enqueue(*, delivery_id: int) -> str:
    return async_task(DELIVER_JOB, delivery_id, group="webhooks")


def delivery_resend(*, delivery: Delivery) -> Delivery:
    """Send a delivery again now, whatever it became, with a fresh day of retries."""
    with transaction.atomic():
        Delivery.objects.filter(pk=delivery.pk).update(
            status=Delivery.Status.PENDING,
            next_attempt_at=timezone.now(),
            claimed_until=None,
            retry_until=timezone.now() + timedelta(seconds=settings.WEBHOOK_RETRY_FOR_SECONDS),
        )
        transaction.on_commit(partial(delivery_enqueue, delivery_id=delivery.pk))
    delivery.refresh_from_db()
    return delivery


def retry_delay(attempts: int) -> float:
    """Return the wait after the given number of failed attempts: doubling, with jitter."""
    delay = settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempts - 1)
    # ±25% spreads the retries of many deliveries that failed together (a receiver outage),
    # and keeps every wait longer than the one before.
    return delay * random.uniform(0.75, 1.25)


@dataclass(frozen=True)
class Outcome:
    result: str  # "delivered", "retry", "failed", or "not due" when another run has it
    retry_in: float | None = None


def delivery_send(*, delivery_id: int) -> Outcome:
    """Make one attempt of a due delivery and record it; say whether and when to retry."""
    now = timezone.now()
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    claimed = (
        Delivery.objects.due(now)
        .filter(pk=delivery_id)
        .update(
            # A claim outlives the request's timeouts (connect, read) by a margin; past
            # it, the worker is gone and the reconciler hands the delivery out again.
            claimed_until=now
            + timedelta(seconds=2 * timeout + settings.WEBHOOK_CLAIM_MARGIN_SECONDS),
            attempts=F("attempts") + 1,
        )
    )
    if not claimed:
        return Outcome("not due")
    delivery = Delivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "interview-practice-webhooks/1",
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(
            secret=endpoint.secret, message_id=delivery.message_id, timestamp=timestamp, body=body
        ),
    }
    status_code, response_body, error, retryable = None, "", "", False
    started = time.monotonic()
    try:
        status_code, response_body = _post(endpoint.url, headers=headers, body=body)
        retryable = status_code in RETRYABLE_STATUSES or status_code >= 500
        if not 200 <= status_code < 300:
            error = f"The receiver answered {status_code}."
    except AddressRefused as exc:
        error = f"Not sent: {exc}."
    except urllib3.exceptions.HTTPError as exc:
        # Timeouts, refused connections, TLS and protocol errors: the receiver may recover.
        error = f"{type(exc).__name__}: {exc}"
        retryable = True
    Attempt.objects.create(
        delivery=delivery,
        number=delivery.attempts,
        started_at=now,
        duration_ms=round((time.monotonic() - started) * 1000),
        status_code=status_code,
        response_body=response_body,
        error=error,
    )
    this_claim = Delivery.objects.filter(
        pk=delivery.pk, status=Delivery.Status.PENDING, attempts=delivery.attempts
    )
    recorded = {"claimed_until": None, "last_status_code": status_code, "last_error": error}
    if not error:
        this_claim.update(status=Delivery.Status.DELIVERED, delivered_at=timezone.now(), **recorded)
        logger.info("Webhook delivered: %s %s", delivery.event, delivery.message_id)
        return Outcome("delivered")
    delay = retry_delay(delivery.attempts)
    next_attempt_at = timezone.now() + timedelta(seconds=delay)
    if retryable and next_attempt_at <= delivery.retry_until:
        this_claim.update(next_attempt_at=next_attempt_at, **recorded)
        logger.warning(
            "Webhook attempt %s failed, retry in %.1fs: %s: %s",
            delivery.attempts,
            delay,
            delivery.message_id,
            error,
        )
        return Outcome("retry", retry_in=delay)
    this_claim.update(status=Delivery.Status.FAILED, **recorded)
    logger.warning("Webhook failed for good: %s: %s", delivery.message_id, error)
    return Outcome("failed")


def _post(url: str, *, headers: dict, body: bytes) -> tuple[int, str]:
    """POST to the first checked address of the URL's host; never follow a redirect."""
    host, port, addresses = url_target(url)
    parts = urlsplit(url)
    timeout = urllib3.Timeout(
        connect=settings.WEBHOOK_TIMEOUT_SECONDS, read=settings.WEBHOOK_TIMEOUT_SECONDS
    )
    # Connecting to the address checked above, not to the name, leaves no second DNS answer
    # (rebinding) to reach a private address; TLS still verifies the certificate for the name.
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            addresses[0],
            port,
            timeout=timeout,
            retries=False,
            server_hostname=host,
            assert_hostname=host,
            ssl_context=ssl.create_default_context(),
        )
    else:
        pool = urllib3.HTTPConnectionPool(addresses[0], port, timeout=timeout, retries=False)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc  # as written, brackets and port included (no credentials)
    with pool:
        response = pool.urlopen(
            "POST",
            target,
            body=body,
            headers=headers | {"Host": host_header},
            redirect=False,
            preload_content=False,
        )
        kept = response.read(RESPONSE_KEPT_BYTES, decode_content=False)
        response.release_conn()
    return response.status, kept.decode("utf-8", errors="replace")


def deliveries_reconcile() -> int:
    """Enqueue every due delivery no job is working on (lost enqueue, killed worker)."""
    now = timezone.now()
    # A delivery just made due has its own job on the way; leave it that long.
    due = Delivery.objects.due(now).filter(
        next_attempt_at__lt=now - timedelta(seconds=settings.WEBHOOK_RECONCILE_GRACE_SECONDS)
    )
    delivery_ids = list(due.values_list("pk", flat=True)[:1000])
    for delivery_id in delivery_ids:
        delivery_enqueue(delivery_id=delivery_id)
    if delivery_ids:
        logger.info("Webhook reconciler enqueued %s due deliveries", len(delivery_ids))
    return len(delivery_ids)
