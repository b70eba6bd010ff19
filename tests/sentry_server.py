"""A local HTTP server that receives what sentry-sdk sends (the envelope endpoint).

receiver = SentryReceiver().start()
env = {"SENTRY_DSN": receiver.dsn}
...
event = wait_for(lambda: receiver.events())
"""

import gzip
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SentryReceiver:
    def __init__(self):
        self._lock = threading.Lock()
        self.bodies: list[bytes] = []  # every envelope as received, decompressed
        self._server: ThreadingHTTPServer | None = None

    @property
    def dsn(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://publickey@{host}:{port}/1"

    def start(self) -> "SentryReceiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                elif encoding == "br":
                    import brotli

                    body = brotli.decompress(body)
                with receiver._lock:
                    receiver.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def events(self) -> list[dict]:
        """Every error event received so far (envelope items of type "event")."""
        with self._lock:
            bodies = list(self.bodies)
        return [item for body in bodies for kind, item in _items(body) if kind == "event"]


def _items(body: bytes):
    """Yield (type, payload) for each item of a Sentry envelope."""
    _, _, rest = body.partition(b"\n")  # the envelope header
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        length = header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length + 1 :]
        try:
            yield header.get("type"), json.loads(payload)
        except ValueError:
            yield header.get("type"), payload
