"""The web process's ASGI application (the Procfile runs it under uvicorn workers).

Two things happen here before Django's ASGI handler: the body limit (from the headers, before
a byte of the body is read), and the live event streams, which are served without Django's
handler holding a thread for each open stream (see ``stream``).
"""

import asyncio
import io
import json
import os
import re
from contextlib import aclosing

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "interview_site.settings")
django.setup(set_prefix=False)  # as get_asgi_application() does

# After Django is configured:
from asgiref.sync import sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core import signals  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, ASGIRequest, get_script_prefix  # noqa: E402
from django.urls import Resolver404, resolve, set_script_prefix  # noqa: E402


class BoundedASGIHandler(ASGIHandler):
    """Django's ASGI handler, running at most WEB_THREADS requests' views at once.

    Under uvicorn each request's middleware and view run in a thread of their own, so a
    burst of uploads shares the process's GIL among all of them and they all finish late
    together; a gthread worker ran eight and queued the rest in arrival order. This keeps
    that order (asyncio's semaphore is first come, first served). A request's body is read
    by the event loop before its turn, so a slow client holds no slot, and a streaming
    response's body is sent after its view has returned the slot.
    """

    slots = asyncio.Semaphore(settings.WEB_THREADS)

    def load_middleware(self, is_async=False):
        # The whole chain synchronously, as a WSGI worker runs it: our middleware and
        # WhiteNoise are synchronous, so an async chain switched between the event loop and
        # the request's thread five times a request (the middleware with its switches: 11% of
        # a web worker's CPU in the bench's upload burst, py-spy --gil); now once.
        super().load_middleware(is_async=False)

    async def get_response_async(self, request):
        async with self.slots:
            # In the request's own thread (thread-sensitive), where request_started and
            # request_finished run close_old_connections on this thread's connections.
            return await sync_to_async(self.get_response, thread_sensitive=True)(request)


django_application = BoundedASGIHandler()

BODY_METHODS = {"POST", "PUT", "PATCH"}
# The URL names whose GET answers a long-lived stream (StreamingHttpResponse over an async
# iterator), and a cheap test of the path before the resolver is asked.
STREAM_URL_NAMES = {"session-events"}
STREAM_PATH = re.compile(r"/events/?$")


async def application(scope, receive, send):
    """Django's ASGI application behind the body limit, with the event streams beside it.

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
        if _is_stream(scope):
            await stream(scope, receive, send)
            return
    await django_application(scope, receive, send)


def _is_stream(scope) -> bool:
    if scope["method"] != "GET" or not STREAM_PATH.search(scope["path"]):
        return False
    try:
        return resolve(scope["path"]).url_name in STREAM_URL_NAMES
    except Resolver404:
        return False


def _respond(scope):
    """Run a stream's request through the middleware and the view (in a worker thread).

    The handler's own chain, which is synchronous (``BoundedASGIHandler.load_middleware``).
    """
    set_script_prefix(get_script_prefix(scope))
    signals.request_started.send(sender=ASGIHandler, scope=scope)
    request = ASGIRequest(scope, io.BytesIO())
    response = django_application.get_response(request)
    # The request is done (the access checked, the headers set); a streaming body is an
    # async iterator that the response's closers leave alone.
    response.close()
    return response


async def stream(scope, receive, send):
    """Serve a stream's GET: the view once in a worker thread, then its body in the loop.

    Under Django's ASGI handler each open stream kept a thread (its per-request
    ThreadSensitiveContext, which the synchronous middleware runs in) and its middleware
    adapters: 1,000 idle streams meant 1,000 threads in the process serving the uploads.
    Here the middleware, authentication and the view run once, in the shared pool, so every
    answer (401, 404, 400, the headers) is exactly the API's; then the body (an async
    generator waiting on the process's event hub) is sent from the event loop, holding no
    thread, until it ends or the client goes away.
    """
    response = await sync_to_async(_respond, thread_sensitive=False)(scope)
    headers = [
        (str(name).encode("latin-1"), str(value).encode("latin-1"))
        for name, value in response.items()
    ]
    headers += [(b"set-cookie", c.OutputString().encode()) for c in response.cookies.values()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    if not (response.streaming and response.is_async):
        body = response.content if not response.streaming else b"".join(response)
        await send({"type": "http.response.body", "body": body})
        return

    async def send_body():
        async with aclosing(aiter(response)) as content:
            async for part in content:
                await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body"})

    async def client_gone():
        while (await receive())["type"] != "http.disconnect":
            pass

    body, gone = asyncio.create_task(send_body()), asyncio.create_task(client_gone())
    try:
        await asyncio.wait({body, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # The client gone: closing the body ends its generator (it leaves the hub).
        for task in (body, gone):
            task.cancel()
        await asyncio.gather(body, gone, return_exceptions=True)
    if not body.cancelled() and body.exception() is not None:
        raise body.exception()


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
