"""The OpenAPI document: valid, complete against the URLconf, served with offline docs."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from openapi_spec_validator import validate
from rest_framework.test import APIClient
from rest_framework.views import APIView

DOCUMENT_VIEWS = (SpectacularAPIView, SpectacularSwaggerView, SpectacularRedocView)
METHODS = {"get", "post", "put", "patch", "delete"}


def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def url_template(regex: str) -> str:
    """Turn a URL pattern's regex into an OpenAPI path: named groups become {name}."""
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", regex)
    return "/" + path.replace("^", "").replace("$", "").replace("/?", "/").replace("\\", "")


def api_endpoints(patterns=None, prefix="") -> set[tuple[str, str]]:
    """Return (path, method) for every API view the URLconf routes to, docs views aside."""
    endpoints = set()
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        regex = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            endpoints |= api_endpoints(pattern.url_patterns, regex)
            continue
        assert isinstance(pattern, URLPattern)
        view = getattr(pattern.callback, "cls", None)
        if view is None or not issubclass(view, APIView) or issubclass(view, DOCUMENT_VIEWS):
            continue
        path = url_template(regex)
        endpoints |= {(path, method) for method in METHODS if hasattr(view, method)}
    return endpoints


def test_the_document_is_valid_openapi_3_1():
    document = schema()

    validate(document)  # raises on the first error, against the 3.1 meta-schema
    assert document["openapi"] == "3.1.0"


def test_every_api_endpoint_of_the_urlconf_is_in_the_document():
    in_urlconf = api_endpoints()
    in_document = {(path, method) for path, item in schema()["paths"].items() for method in item}

    assert {path for path, _ in in_urlconf} >= {"/api/sessions/", "/api/webhooks/"}
    assert in_urlconf - in_document == set()
    assert in_document - in_urlconf == set()


def test_the_document_states_every_status_code_and_both_auth_schemes():
    document = schema()
    operations = {
        item[method]["operationId"]: item[method]
        for item in document["paths"].values()
        for method in item
    }
    upload = operations["answer_upload"]["responses"]
    analyze = operations["session_analyze"]["responses"]

    assert set(upload) >= {"202", "400", "401", "404", "413", "415", "429", "503"}
    assert "Retry-After" in upload["429"]["headers"]
    assert "status_url" in document["components"]["schemas"]["UploadAccepted"]["required"]
    assert set(analyze) >= {"200", "202", "401", "404"}
    assert "Retry-After" in analyze["202"]["headers"]
    assert set(document["components"]["securitySchemes"]) == {"tokenAuth", "cookieAuth"}
    error = document["components"]["schemas"]["ErrorBody"]["properties"]
    assert {"code", "message", "fields", "field_codes"} <= set(error)
    for operation_id, operation in operations.items():
        if operation_id not in {"health", "auth_token"}:
            assert operation["security"] == [{"tokenAuth": []}, {"cookieAuth": []}]
            assert "401" in operation["responses"], operation_id


@pytest.mark.django_db
def test_the_schema_and_its_docs_are_served_without_any_outside_asset():
    client = APIClient()

    document = client.get("/api/schema/?format=json")
    docs = client.get("/api/docs/")

    assert document.status_code == 200
    assert "/api/sessions/" in document.json()["paths"]
    assert docs.status_code == 200
    html = docs.content.decode()
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "an asset from another host"
    assets = re.findall(r"/static/(drf_spectacular_sidecar/[^\"']+)", html)
    assert len(assets) >= 3  # the bundle, the preset and the stylesheet
    for asset in assets:
        assert finders.find(asset), asset


@pytest.mark.django_db
def test_a_validation_error_keeps_each_fields_own_code(api_client, questions):
    response = api_client.post(
        "/api/sessions/", {"role": "x" * 101, "question_count": 0}, format="json"
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["field_codes"] == {"role": ["max_length"], "question_count": ["min_value"]}
    assert set(error["fields"]) == {"role", "question_count"}


def test_an_undecodable_answer_reaches_the_client_as_unreadable(interview, upload, gridfs):
    question = interview.ordered_questions()[0]
    webm_then_garbage = b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 20

    response = upload(interview.pk, question.pk, webm_then_garbage)

    assert response.status_code == 400
    assert response.json()["error"]["field_codes"] == {"audio": ["unreadable"]}


@pytest.mark.django_db
def test_an_error_inside_a_list_is_reported_under_its_dotted_field_name(api_client):
    response = api_client.post(
        "/api/webhooks/",
        {"url": "http://127.0.0.1:9/hook", "events": ["answer.completed", "nope"]},
        format="json",
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["fields"] == {"events.1": ['"nope" is not a valid choice.']}
    assert error["field_codes"] == {"events.1": ["invalid_choice"]}
