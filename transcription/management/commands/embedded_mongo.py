import os
import shutil
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from pymongo.uri_parser import parse_uri

DAEMON = "secantusd-py"


def daemon_path() -> str | None:
    """The SecantusDB daemon of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).with_name(DAEMON)
    return str(beside) if beside.exists() else shutil.which(DAEMON)


class Command(BaseCommand):
    # A database server of its own: it needs none of the project's URLs, models or checks.
    requires_system_checks = []
    help = (
        "Run the embedded MongoDB for development and tests: SecantusDB (WiredTiger storage, "
        "GPL-2.0), in the foreground, as this very process (SIGTERM or Ctrl-C stops it)."
    )

    def add_arguments(self, parser):
        host, port = parse_uri(settings.MONGODB_URI)["nodelist"][0]
        parser.add_argument("--host", default=host, help=f"default {host}, from MONGODB_URI")
        parser.add_argument("--port", type=int, default=port, help=f"default {port}")
        parser.add_argument(
            "--path",
            default=str(settings.EMBEDDED_MONGODB_PATH),
            help="directory for the data (WiredTiger files), created if missing",
        )

    def handle(self, *, host, port, path, **options):
        daemon = daemon_path()
        if daemon is None:
            raise CommandError(
                f"SecantusDB's {DAEMON} is not installed: install requirements-local.txt"
            )
        Path(path).mkdir(parents=True, exist_ok=True)
        self.stdout.write(
            f"Embedded MongoDB (SecantusDB) starting on mongodb://{host}:{port}/"
            f"?directConnection=true (data in {path})"
        )
        self.stdout.flush()
        sys.stderr.flush()
        # Replace this process with the server: the pid a supervisor (honcho, the tests,
        # the benchmark) holds is the server's, so SIGTERM, Ctrl-C and kill -9 reach it.
        # Durable across kill -9 (every commit's log record reaches the OS before the reply);
        # SecantusDB's own test switch would turn the journal off.
        # Standalone, as a plain mongod: by default SecantusDB advertises a one-node replica
        # set and so keeps an oplog, which holds a copy of every insert (each audio chunk)
        # for an hour after the audio itself is deleted, and writes every chunk twice. The
        # app uses neither change streams nor transactions, which are what need the oplog.
        env = {
            key: value for key, value in os.environ.items() if key != "SECANTUS_TEST_FAST_STORAGE"
        }
        os.execve(
            daemon,
            [
                daemon,
                f"--host={host}",
                f"--port={port}",
                f"--storage-path={path}",
                "--log-level=WARNING",
                "--standalone",
            ],
            env,
        )
