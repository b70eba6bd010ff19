"""SQLite's writers, from several processes, take turns without SQLite's backing-off waits.

The development database is SQLite, written by every web and queue process at once. A writer
that waits in SQLite's own busy handler sleeps 100 ms a try once it has waited a while, and
under a burst keeps losing to newer writers (interview_site/sqlite/base.py). These tests use
their own SQLite file, whatever database the suite runs on.
"""

import statistics
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from django.db.utils import ConnectionHandler

from interview_site.sqlite import base as sqlite_backend
from tests.support import ROOT, process_env, wait_for

ENGINE = "interview_site.sqlite"
OPTIONS = {"timeout": 30, "transaction_mode": "IMMEDIATE"}

# Another process's writer: each round it takes its turn, writes, holds the transaction open
# until told to commit, then says when it committed.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import django
    from django.conf import settings
    db, control, rounds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    settings.configure(USE_TZ=True, DATABASES={"default": {
        "ENGINE": "interview_site.sqlite", "NAME": str(db),
        "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"}}})
    django.setup()
    from django.db import connection, transaction
    from harness import wait_for, write_atomically
    for n in range(rounds):
        wait_for(lambda: (control / f"go-{n}").exists(), timeout=60, what="go")
        with transaction.atomic():
            connection.cursor().execute("INSERT INTO t (who) VALUES ('holder')")
            (control / f"holding-{n}").touch()
            wait_for(lambda: (control / f"commit-{n}").exists(), timeout=60, what="commit")
        # Whole or not at all: the waiter may be done before this line runs.
        write_atomically(control / f"committed-{n}", repr(time.time()).encode())
    """
)
ROUNDS = 6


def _connection(path):
    handler = ConnectionHandler(
        {"default": {"ENGINE": ENGINE, "NAME": str(path), "OPTIONS": OPTIONS}}
    )
    return handler["default"]


@pytest.mark.django_db  # lets these connections (to their own file) open
def test_a_waiting_writer_gets_its_turn_as_soon_as_another_process_commits(tmp_path):
    db = tmp_path / "writers.sqlite3"
    control = tmp_path / "control"
    control.mkdir()
    setup = _connection(db)
    setup.cursor().execute("PRAGMA journal_mode=WAL")
    setup.cursor().execute("CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT)")
    setup.close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db), str(control), str(ROUNDS)],
        cwd=ROOT,
        env=process_env(PYTHONPATH=str(ROOT)),
    )
    lags = []
    try:
        for n in range(ROUNDS):
            (control / f"go-{n}").touch()
            wait_for(lambda n=n: (control / f"holding-{n}").exists(), timeout=30, what="holder")
            began = threading.Event()
            done = {}

            def write(began=began, done=done):
                connection = _connection(db)
                try:
                    began.set()
                    # What transaction.atomic does on SQLite (this connection is not in
                    # django.db.connections, so atomic() cannot be pointed at it).
                    connection.set_autocommit(
                        False, force_begin_transaction_with_broken_autocommit=True
                    )
                    done["at"] = time.time()  # the turn is ours, and SQLite's write lock
                    connection.cursor().execute("INSERT INTO t (who) VALUES ('waiter')")
                    connection.commit()
                    connection.set_autocommit(True)
                finally:
                    connection.close()

            waiter = threading.Thread(target=write)
            waiter.start()
            began.wait(10)
            # The other process keeps its transaction open long enough for a writer waiting
            # in SQLite's busy handler to be sleeping 100 ms a try (after 228 ms of waiting).
            time.sleep(0.6)
            assert "at" not in done, "the waiter wrote while another process held the lock"
            (control / f"commit-{n}").touch()
            waiter.join(30)
            committed_at = control / f"committed-{n}"
            wait_for(committed_at.exists, timeout=30, what="the holder's commit time")
            committed = float(committed_at.read_text())
            lags.append(done["at"] - committed)
        assert holder.wait(30) == 0
    finally:
        holder.kill()
    print(f"turn taken after the other process's commit: {[round(x * 1000) for x in lags]} ms")
    # SQLite's own handler would leave 0-100 ms (50 on average) between the two.
    assert max(lags) < 0.05, lags
    assert statistics.median(lags) < 0.02, lags
    with _connection(db).cursor() as cursor:
        cursor.execute("SELECT who, COUNT(*) FROM t GROUP BY who ORDER BY who")
        assert cursor.fetchall() == [("holder", ROUNDS), ("waiter", ROUNDS)]


# Not inside a test transaction: on SQLite that would hold a turn throughout.
@pytest.mark.django_db(transaction=True)
def test_while_a_thread_writes_its_process_hands_the_gil_over_every_fifth_of_a_millisecond(
    tmp_path,
):
    # SQLite releases the GIL for each statement; a writer taking it back waits until the
    # thread that took it meanwhile is made to hand it over, after the switch interval.
    # While a turn is held, every thread of the process runs under the short interval; once
    # it is given back (commit, rollback, an autocommit write's end), the interpreter's own.
    # The effect is measured in the bench (README, "A night session").
    db = tmp_path / "writers.sqlite3"
    setup = _connection(db)
    setup.cursor().execute("PRAGMA journal_mode=WAL")
    setup.cursor().execute("CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT)")
    setup.close()
    interval = sys.getswitchinterval()
    seen = {}

    def from_another_thread(key):
        thread = threading.Thread(target=lambda: seen.setdefault(key, sys.getswitchinterval()))
        thread.start()
        thread.join(10)

    connection = _connection(db)
    try:
        for end in ("commit", "rollback"):
            connection.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
            connection.cursor().execute("INSERT INTO t (who) VALUES ('writer')")
            from_another_thread(f"writing, before its {end}")
            getattr(connection, end)()
            connection.set_autocommit(True)
            seen[f"after its {end}"] = sys.getswitchinterval()
        connection.cursor().execute("INSERT INTO t (who) VALUES ('autocommit')")
        seen["after an autocommit write"] = sys.getswitchinterval()
    finally:
        connection.close()

    writing = pytest.approx(sqlite_backend.WRITING_SWITCH_INTERVAL)  # kept in whole µs
    assert seen == {
        "writing, before its commit": writing,
        "after its commit": interval,
        "writing, before its rollback": writing,
        "after its rollback": interval,
        "after an autocommit write": interval,
    }
    assert interval / 10 >= sqlite_backend.WRITING_SWITCH_INTERVAL
    with _connection(db).cursor() as cursor:
        cursor.execute("SELECT who FROM t ORDER BY id")
        assert cursor.fetchall() == [("writer",), ("autocommit",)]
