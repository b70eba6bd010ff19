from rest_framework import serializers

from .addresses import AddressRefused, url_target
from .models import Endpoint, Event


class EndpointCreateSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=2000, help_text="https in production, public hosts only.")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=Event.choices), min_length=1, max_length=10
    )
    description = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default=""
    )

    def validate_url(self, url):
        try:
            url_target(url)
        except AddressRefused as exc:
            raise serializers.ValidationError(
                f"This URL cannot receive webhooks: {exc}.", code="url_refused"
            ) from None
        return url


class EndpointSerializer(serializers.ModelSerializer):
    events = serializers.ListField(child=serializers.ChoiceField(choices=Event.choices))

    class Meta:
        model = Endpoint
        fields = ["id", "url", "events", "description", "is_active", "created_at"]


class EndpointCreatedSerializer(EndpointSerializer):
    secret = serializers.CharField(
        help_text="Shown only in this response: verify each request's webhook-signature with it."
    )

    class Meta(EndpointSerializer.Meta):
        fields = [*EndpointSerializer.Meta.fields, "secret"]
