"""Bounds every request body before anything in Django reads it."""

from django.conf import settings
from django.http import HttpResponse, JsonResponse

BODY_METHODS = {"POST", "PUT", "PATCH"}


class RequestBodyLimitMiddleware:
    """Refuse a body over MAX_REQUEST_BYTES (413), or a body without a length (411).

    It runs first, so CSRF's look at request.POST, DRF's parsers and Django's multipart
    parser (which spools files to disk) never see such a body. Django reads at most
    Content-Length bytes of a body, so the declared length bounds what is read.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        declared = request.META.get("CONTENT_LENGTH") or ""
        if request.META.get("HTTP_TRANSFER_ENCODING") and not declared:
            # Django reads a body only up to its Content-Length: a chunked one would be
            # silently dropped ("No file was submitted").
            return _refusal(
                request,
                411,
                "length_required",
                "Send the request with a Content-Length header; chunked bodies are not "
                "accepted. Browsers and HTTP libraries do this when given a whole file.",
            )
        try:
            length = int(declared or 0)
        except ValueError:
            return _refusal(request, 400, "bad_length", "Content-Length is not a number.")
        if length > settings.MAX_REQUEST_BYTES:
            limit = settings.MAX_UPLOAD_BYTES / 1024 / 1024
            return _refusal(
                request,
                413,
                "too_large",
                f"The request is larger than the {limit:g} MB limit for an audio upload.",
            )
        return self.get_response(request)


def _refusal(request, status: int, code: str, message: str):
    if request.path.startswith("/api/"):
        response = JsonResponse({"error": {"code": code, "message": message}}, status=status)
    else:
        response = HttpResponse(message, status=status, content_type="text/plain")
    # gunicorn drains at most 64 KB of the unread body, then closes the connection.
    return response
