"""A local HTTP server that speaks the OpenAI transcription and chat-completion endpoints.

In tests::

    from tests.openai_server import openai_server_fixture  # noqa: F401

    def test_something(openai_server, settings):
        settings.OPENAI_BASE_URL = openai_server.base_url
        openai_server.script(500, error_body("boom", "server_error"), path=TRANSCRIPTIONS)
        ...
        assert openai_server.count(TRANSCRIPTIONS) == 2

``openai_settings_fixture`` (fixture ``openai_settings``) also points the OPENAI_* settings
at the server.

As a process (for a qcluster worker or a benchmark, through ``OPENAI_BASE_URL``)::

    python -m tests.openai_server --port 8765 --latency-min 0.2 --latency-max 1.5
"""

import argparse
import collections
import contextlib
import email.parser
import email.policy
import itertools
import json
import random
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

TRANSCRIPTIONS = "/v1/audio/transcriptions"
# The real API answers only json or text for these (and dated snapshots of them).
JSON_ONLY_MODELS = ("gpt-4o-transcribe", "gpt-4o-mini-transcribe")
CHAT_COMPLETIONS = "/v1/chat/completions"

DEFAULT_TEXT = "A process is an instance of a running program with its own memory."
DEFAULT_COMPLETION = json.dumps(
    {"score": 80, "feedback": ["You explained the main idea clearly.", "Mention threads too."]}
)


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # Names lower-cased.
    form: dict[str, str] = field(default_factory=dict)  # Multipart text fields (last value).
    form_lists: dict[str, list[str]] = field(default_factory=dict)  # Every value of each field.
    file: bytes | None = None
    filename: str | None = None
    file_content_type: str | None = None
    json: dict | None = None
    received_at: float = 0.0


@dataclass
class ScriptedResponse:
    status: int
    body: dict | str
    path: str | None  # None answers the next request on any endpoint.


def error_body(message: str, type: str = "invalid_request_error", code: str | None = None):
    """Return an error body shaped like the OpenAI API's."""
    return {"error": {"message": message, "type": type, "param": None, "code": code}}


def chat_completion_body(content: str, *, model: str = "gpt-4o-mini") -> dict:
    """Return a chat.completion object whose single choice says ``content``."""
    return {
        "id": f"chatcmpl-fake{random.randrange(16**12):012x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 200, "completion_tokens": 40, "total_tokens": 240},
        "system_fingerprint": "fp_fake",
    }


class FakeOpenAI:
    """Serve the OpenAI audio and chat endpoints on 127.0.0.1, recording every request.

    ``transcript`` is the text for every upload, or a function of the uploaded bytes.
    ``completion`` is the chat reply's content, or a function of the request's JSON body.
    ``latency`` is seconds to wait before each response, or a ``(min, max)`` range.
    Attributes may be changed while the server runs.
    """

    def __init__(
        self,
        *,
        transcript: str | Callable[[bytes], str] = DEFAULT_TEXT,
        completion: str | Callable[[dict], str] = DEFAULT_COMPLETION,
        language: str = "english",
        latency: float | tuple[float, float] = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        keep_requests: bool = True,
    ):
        self.transcript = transcript
        self.completion = completion
        self.language = language
        self.latency = latency
        self.keep_requests = keep_requests
        self._address = (host, port)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._counts: collections.Counter[str] = collections.Counter()
        self._successes: collections.Counter[tuple[str, str | None]] = collections.Counter()
        self._scripts: collections.deque[ScriptedResponse] = collections.deque()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- Control ----------------------------------------------------------

    def start(self) -> "FakeOpenAI":
        """Start serving in a daemon thread and return self."""
        self._server = _Server(self._address, _Handler, fake=self)
        # A restarted server comes back on the same port, as an API recovering would.
        self._address = self._server.server_address[:2]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},  # How long stop() waits for the loop to notice.
            name="fake-openai",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections, so clients then see a refused connection."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._address[1]

    @property
    def base_url(self) -> str:
        """The value for OPENAI_BASE_URL, e.g. ``http://127.0.0.1:54321/v1``."""
        return f"http://{self._address[0]}:{self.port}/v1"

    def script(self, status: int, body: dict | str | None = None, *, path: str | None = None):
        """Answer the next request (on ``path`` if given) with this status and body.

        Scripts are used in the order they were added; once used up, the default
        behaviour answers. ``body`` defaults to an OpenAI-shaped error for the status.
        """
        if body is None:
            body = error_body(HTTPStatus(status).phrase, type="server_error")
        with self._lock:
            self._scripts.append(ScriptedResponse(status, body, path))

    def reset(self) -> None:
        """Forget recorded requests, counts and unused scripts."""
        with self._lock:
            self._requests.clear()
            self._counts.clear()
            self._successes.clear()
            self._scripts.clear()

    # --- Inspection -------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def count(self, path: str | None = None) -> int:
        """Return how many requests reached ``path`` (``TRANSCRIPTIONS``...), or all paths."""
        with self._lock:
            return self._counts.total() if path is None else self._counts[path]

    def successes(self, path: str = TRANSCRIPTIONS) -> collections.Counter[str | None]:
        """Return how many 200 answers each uploaded filename got on ``path``."""
        with self._lock:
            return collections.Counter(
                {name: n for (where, name), n in self._successes.items() if where == path}
            )

    # --- Used by the handler ----------------------------------------------

    def _answered(self, request: RecordedRequest, status: int) -> None:
        if status == 200:
            with self._lock:
                self._successes[(request.path, request.filename)] += 1

    def _record(self, request: RecordedRequest) -> ScriptedResponse | None:
        """Store the request and return the script that should answer it, if any."""
        with self._lock:
            self._counts[request.path] += 1
            if self.keep_requests:
                self._requests.append(request)
            for scripted in self._scripts:
                if scripted.path in (None, request.path):
                    self._scripts.remove(scripted)
                    return scripted
        return None

    def _delay(self) -> float:
        latency = self.latency
        if isinstance(latency, tuple):
            return random.uniform(*latency)
        return latency


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, *, fake: FakeOpenAI):
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self):
        # HTTPServer.server_bind looks the host up with getfqdn, which may ask a DNS server.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address):
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        # A client that hung up (timed out, or the server was stopped) is not a server bug.
        if not isinstance(sys.exception(), OSError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        # Keep-alive connections outlive serve_forever; a stopped server must not answer.
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # Already closed by the client.
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # Keep-alive, as the SDK's connection pool expects.
    server_version = "FakeOpenAI/1.0"
    timeout = 60  # Idle keep-alive connections are closed after this.
    server: _Server
    _ids = itertools.count(1)

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._read_body()
        self._send(404, error_body(f"Invalid URL (GET {self.path})"))

    def do_POST(self):
        body = self._read_body()
        fake = self.server.fake
        request = RecordedRequest(
            method="POST",
            path=self.path.split("?", 1)[0],
            headers={name.lower(): value for name, value in self.headers.items()},
            received_at=time.time(),
        )
        try:
            self._parse(request, body)
        except ValueError as error:
            fake._record(request)
            self._send(400, error_body(f"Could not parse the request body: {error}"))
            return

        scripted = fake._record(request)
        delay = fake._delay()
        if delay > 0:
            time.sleep(delay)
        if scripted is not None:
            status, response = scripted.status, scripted.body
        else:
            try:
                status, response = self._answer(request)
            except Exception as error:  # A test's callable failed: report it like an outage.
                status, response = 500, error_body(f"Fake server error: {error!r}", "server_error")
        fake._answered(request, status)
        self._send(status, response)

    # --- Request parsing --------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _parse(self, request: RecordedRequest, body: bytes) -> None:
        content_type = self.headers.get_content_type()
        if content_type == "multipart/form-data":
            boundary = self.headers.get_param("boundary")
            if not boundary:
                raise ValueError("multipart/form-data without a boundary")
            for part in parse_multipart(body, boundary.encode("latin-1")):
                if part.filename is not None:
                    request.file = part.content
                    request.filename = part.filename
                    request.file_content_type = part.content_type
                else:
                    value = part.content.decode("utf-8")
                    request.form[part.name] = value
                    request.form_lists.setdefault(part.name, []).append(value)
        elif content_type == "application/json":
            request.json = json.loads(body)

    # --- Responses --------------------------------------------------------

    def _answer(self, request: RecordedRequest) -> tuple[int, dict | str]:
        if request.headers.get("authorization", "").removeprefix("Bearer ").strip() == "":
            return 401, error_body(
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code=None,
            )
        if request.path == TRANSCRIPTIONS:
            return self._transcription(request)
        if request.path == CHAT_COMPLETIONS:
            return self._chat_completion(request)
        return 404, error_body(f"Invalid URL (POST {request.path})")

    def _transcription(self, request: RecordedRequest) -> tuple[int, dict | str]:
        if request.file is None:
            return 400, error_body("No file was provided.")
        if not request.form.get("model"):
            return 400, error_body("you must provide a model parameter")
        fake = self.server.fake
        transcript = fake.transcript
        text = transcript(request.file) if callable(transcript) else transcript
        model = request.form["model"]
        response_format = request.form.get("response_format", "json")
        granularities = request.form_lists.get("timestamp_granularities[]", [])
        if model.startswith(JSON_ONLY_MODELS) and response_format not in ("json", "text"):
            # What the real API says (vercel/ai #8214 shipped into this).
            return 400, {
                "error": {
                    "message": f"response_format '{response_format}' is not compatible with "
                    f"model '{model}'. Use 'json' or 'text' instead.",
                    "type": "invalid_request_error",
                    "param": "response_format",
                    "code": "unsupported_value",
                }
            }
        if granularities and response_format != "verbose_json":
            return 400, error_body(
                "timestamp_granularities is only supported with response_format verbose_json",
                code="unsupported_value",
            )
        if response_format == "text":
            return 200, text
        # Roughly 16 kB a second of Opus in WebM.
        duration = round(len(request.file) / 16000, 2)
        if response_format == "verbose_json":
            body = {
                "task": "transcribe",
                "language": fake.language,
                "duration": duration,
                "text": text,
                "segments": [],
                "usage": {"type": "duration", "seconds": duration},
            }
            if "word" in granularities:
                spoken = text.split()
                step = duration / max(len(spoken), 1)
                body["words"] = [
                    {"word": word, "start": round(i * step, 2), "end": round((i + 1) * step, 2)}
                    for i, word in enumerate(spoken)
                ]
            return 200, body
        if response_format != "json":
            return 400, error_body(f"Invalid response_format: {response_format}")
        return 200, {"text": text, "usage": {"type": "duration", "seconds": duration}}

    def _chat_completion(self, request: RecordedRequest) -> tuple[int, dict | str]:
        if request.json is None:
            return 400, error_body("We could not parse the JSON body of your request.")
        if not request.json.get("model") or not request.json.get("messages"):
            return 400, error_body("Missing required parameters: 'model' and 'messages'.")
        completion = self.server.fake.completion
        content = completion(request.json) if callable(completion) else completion
        return 200, chat_completion_body(content, model=request.json["model"])

    def _send(self, status: int, body: dict | str) -> None:
        if isinstance(body, str):
            payload, content_type = body.encode(), "text/plain; charset=utf-8"
        else:
            payload, content_type = json.dumps(body).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-request-id", f"req_fake_{next(self._ids)}")
        self.end_headers()
        self.wfile.write(payload)


@dataclass
class MultipartPart:
    name: str
    filename: str | None
    content_type: str
    content: bytes


def parse_multipart(body: bytes, boundary: bytes) -> list[MultipartPart]:
    """Split a multipart/form-data body into its parts, keeping file bytes exact."""
    parts = []
    # The body starts with the first delimiter; a preamble before it is ignored.
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):  # The closing delimiter.
            break
        head, separator, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not separator:
            raise ValueError("multipart part without a blank line after its headers")
        headers = email.parser.BytesHeaderParser(policy=email.policy.HTTP).parsebytes(head)
        name = headers.get_param("name", header="content-disposition")
        if name is None:
            raise ValueError("multipart part without a name")
        parts.append(
            MultipartPart(
                name=str(name),
                filename=headers.get_filename(),
                content_type=headers.get_content_type(),
                content=content.removesuffix(b"\r\n"),
            )
        )
    return parts


# Named ``*_fixture`` so a test module importing them can take ``openai_server`` as an
# argument without shadowing the import (ruff F811).
@pytest.fixture(name="openai_server")
def openai_server_fixture():
    """Run a FakeOpenAI for one test."""
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(name="openai_settings")
def openai_settings_fixture(openai_server, settings):
    """Point the OpenAI settings at the fake server and return it."""
    settings.OPENAI_BASE_URL = openai_server.base_url
    settings.OPENAI_API_KEY = "test-key"
    settings.OPENAI_TRANSCRIPTION_MODEL = "whisper-1"
    settings.OPENAI_SCORING_MODEL = "gpt-4o-mini"
    settings.OPENAI_TIMEOUT_SECONDS = 10
    return openai_server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-min", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--latency-max", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="transcript for every upload")
    parser.add_argument("--language", default="english", help="language the API reports")
    args = parser.parse_args(argv)

    latency_max = args.latency_min if args.latency_max is None else args.latency_max
    if latency_max < args.latency_min:
        parser.error("--latency-max must not be below --latency-min")
    server = FakeOpenAI(
        transcript=args.text,
        language=args.language,
        latency=(args.latency_min, latency_max),
        host=args.host,
        port=args.port,
        keep_requests=False,  # A long benchmark would otherwise hold every upload.
    )
    server.start()
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
