import json
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "interview_site.settings")
django_application = get_asgi_application()

from django.conf import settings  # noqa: E402 - after the app has configured Django

BODY_METHODS = {"POST", "PUT", "PATCH"}


async def application(scope, receive, send):
    """Django's ASGI application behind the body limit of interview_site.middleware.

    Django's ASGI handler reads (and spools) the whole body before any middleware runs, so
    under ASGI the limit must be enforced here, from the headers, before a byte of the body
    is read: a body over MAX_REQUEST_BYTES is 413, a chunked one (no length) 411, exactly as
    RequestBodyLimitMiddleware answers under WSGI.
    """
    if scope["type"] == "http":
        refusal = _refusal(scope)
        if refusal is not None:
            status, code, message = refusal
            await _send_error(scope, send, status, code, message)
            return
    await django_application(scope, receive, send)


def _refusal(scope) -> tuple[int, str, str] | None:
    headers = {name.lower(): value for name, value in scope.get("headers", [])}
    declared = headers.get(b"content-length", b"").decode("latin-1").strip()
    if headers.get(b"transfer-encoding") and not declared:
        return (
            411,
            "length_required",
            "Send the request with a Content-Length header; chunked bodies are not "
            "accepted. Browsers and HTTP libraries do this when given a whole file.",
        )
    if not declared:
        return None
    if not declared.isascii() or not declared.isdigit():
        return 400, "bad_length", "Content-Length is not a number."
    if int(declared) > settings.MAX_REQUEST_BYTES:
        limit = settings.MAX_UPLOAD_BYTES / 1024 / 1024
        return (
            413,
            "too_large",
            f"The request is larger than the {limit:g} MB limit for an audio upload.",
        )
    return None


async def _send_error(scope, send, status: int, code: str, message: str) -> None:
    if scope["path"].startswith("/api/"):
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        content_type = b"application/json"
    else:
        body, content_type = message.encode(), b"text/plain"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
