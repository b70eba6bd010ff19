"""The candidate's pages: log in and out, start an interview, answer it, see the results."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("", views.interview_start, name="interview-start"),
    path("interviews/<int:session_id>/", views.interview_detail, name="interview-detail"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
]
