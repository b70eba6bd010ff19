from django.urls import re_path

from . import views

urlpatterns = [
    re_path(r"^metrics/?$", views.metrics, name="metrics"),
    re_path(r"^api/health/ready/?$", views.ready, name="health-ready"),
    re_path(r"^api/health/live/?$", views.live, name="health-live"),
]
