from django.urls import re_path

from . import api

urlpatterns = [
    re_path(r"^webhooks/?$", api.EndpointListCreateApi.as_view(), name="webhooks"),
    re_path(
        r"^webhooks/(?P<endpoint_id>[0-9]{1,18})/?$",
        api.EndpointDetailApi.as_view(),
        name="webhook-detail",
    ),
]
