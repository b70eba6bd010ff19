from django.contrib import admin

from .models import Transcription


@admin.register(Transcription)
class TranscriptionAdmin(admin.ModelAdmin):
    """Every transcription, read-only: its status changes only through the services (staff
    re-queue an answer's transcription from the answer's page)."""

    list_display = ["id", "status", "attempts", "next_attempt_at", "error", "created_at"]
    list_filter = ["status", "language", "created_at"]
    search_fields = ["=id", "gridfs_file_id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
