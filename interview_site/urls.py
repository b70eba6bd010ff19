from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("sessions_app.urls")),
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
]

handler404 = "sessions_app.api.not_found"
