from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # /metrics, /api/health/ready and /api/health/live.
    path("", include("monitoring.urls")),
    path("api/", include("sessions_app.urls")),
    path("api/", include("webhooks.urls")),
    # The candidate's interview screen; "/" is where an interview starts.
    path("", include("sessions_app.urls_pages")),
]

handler404 = "sessions_app.api.not_found"
handler500 = "sessions_app.api.server_error"
