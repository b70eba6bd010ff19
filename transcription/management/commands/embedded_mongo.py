import asyncio
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from pymongo.uri_parser import parse_uri


class Command(BaseCommand):
    # A database server of its own: it needs none of the project's URLs, models or checks.
    requires_system_checks = []
    help = (
        "Run the embedded MongoDB wire-protocol server (mongoeco, SQLite engine) in the foreground."
    )

    def add_arguments(self, parser):
        host, port = parse_uri(settings.MONGODB_URI)["nodelist"][0]
        parser.add_argument("--host", default=host, help=f"default {host}, from MONGODB_URI")
        parser.add_argument("--port", type=int, default=port, help=f"default {port}")
        parser.add_argument(
            "--path", default=str(settings.EMBEDDED_MONGODB_PATH), help="SQLite file for the data"
        )

    def handle(self, *, host, port, path, **options):
        try:
            from mongoeco.engines import SQLiteEngine
            from mongoeco.wire.proxy import AsyncMongoEcoProxyServer
        except ImportError as exc:
            raise CommandError(
                f"mongoeco is not installed ({exc}): install requirements-local.txt"
            ) from exc
        asyncio.run(self._serve(AsyncMongoEcoProxyServer, SQLiteEngine(path), host, port, path))

    async def _serve(self, server_class, engine, host, port, path):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        server = server_class(engine=engine, host=host, port=port)
        try:
            address = await server.start()
        except OSError as exc:
            raise CommandError(f"Cannot listen on {host}:{port}: {exc}") from exc
        self.stdout.write(f"Embedded MongoDB listening on {address.uri} (data in {path})")
        self.stdout.flush()
        await stop.wait()
        await server.close()
        self.stdout.write("Embedded MongoDB stopped")
