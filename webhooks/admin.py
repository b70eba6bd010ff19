from django.contrib import admin, messages

from .models import Attempt, Delivery, Endpoint
from .services import delivery_resend


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "user", "events", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["url", "user__username"]
    # The secret signs requests: an operator never needs to read it. Endpoints are registered
    # through the API, which checks the URL; staff can only switch one off.
    fields = ["user", "url", "events", "description", "is_active", "created_at"]
    readonly_fields = ["user", "url", "events", "description", "created_at"]

    def has_add_permission(self, request):
        return False


class AttemptInline(admin.TabularInline):
    model = Attempt
    fields = ["number", "started_at", "duration_ms", "status_code", "error", "response_body"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["message_id", "event", "endpoint", "status", "attempts"]
    list_display += ["last_status_code", "next_attempt_at", "created_at"]
    list_filter = ["status", "event"]
    search_fields = ["message_id", "endpoint__url"]
    readonly_fields = [field.name for field in Delivery._meta.fields]
    inlines = [AttemptInline]
    actions = ["resend"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Re-send the selected deliveries now")
    def resend(self, request, queryset):
        for delivery in queryset:
            delivery_resend(delivery=delivery)
        messages.success(request, f"{queryset.count()} deliveries queued to be sent again.")
