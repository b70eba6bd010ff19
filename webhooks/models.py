from django.conf import settings
from django.db import models


class Event(models.TextChoices):
    ANSWER_COMPLETED = "answer.completed", "An answer's transcript is ready"
    ANSWER_FAILED = "answer.failed", "An answer could not be transcribed"
    SESSION_ANALYZED = "session.analyzed", "Every answer of a session is transcribed and scored"


class EndpointQuerySet(models.QuerySet):
    def owned_by(self, user):
        return self.filter(user=user)

    def listening(self, *, user_id: int, event: str) -> list["Endpoint"]:
        """Return the active endpoints of a user that subscribed to ``event``."""
        # JSON containment has no SQLite lookup; a user has a handful of endpoints.
        endpoints = self.filter(user_id=user_id, is_active=True)
        return [endpoint for endpoint in endpoints if event in endpoint.events]


class Endpoint(models.Model):
    """A URL of an integrator's that receives signed events about one user's interviews."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list)
    description = models.CharField(max_length=200, blank=True)
    # "whsec_" + base64 of the key, as Standard Webhooks libraries expect it.
    secret = models.CharField(max_length=100)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = EndpointQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.url


class DeliveryQuerySet(models.QuerySet):
    def due(self, now):
        """Return pending deliveries whose next attempt is due and that no worker holds."""
        return self.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now).filter(
            models.Q(claimed_until__isnull=True) | models.Q(claimed_until__lt=now)
        )


class Delivery(models.Model):
    """One event for one endpoint: stored before it is sent, retried until delivered or expired."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    # The webhook-id header: the same on every attempt, so a receiver can drop duplicates.
    message_id = models.CharField(max_length=40, unique=True)
    event = models.CharField(max_length=40, choices=Event)
    payload = models.JSONField()
    status = models.CharField(max_length=20, choices=Status, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # While an attempt is in flight; a claim past this time belongs to a worker that died.
    claimed_until = models.DateTimeField(null=True, blank=True)
    # No retry is scheduled after this time: the delivery fails instead.
    retry_until = models.DateTimeField()
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"

    def __str__(self):
        return f"{self.event} {self.message_id} to {self.endpoint}"


class Attempt(models.Model):
    """One HTTP request of a delivery and what the receiver answered."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_set")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="one_attempt_per_number")
        ]

    def __str__(self):
        return f"Attempt {self.number} of {self.delivery.message_id}"
