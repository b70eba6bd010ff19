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
    from harness import wait_for
    for n in range(rounds):
        wait_for(lambda: (control / f"go-{n}").exists(), timeout=60, what="go")
        with transaction.atomic():
            connection.cursor().execute("INSERT INTO t (who) VALUES ('holder')")
            (control / f"holding-{n}").touch()
            wait_for(lambda: (control / f"commit-{n}").exists(), timeout=60, what="commit")
        (control / f"committed-{n}").write_text(repr(time.time()))
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
            committed = float((control / f"committed-{n}").read_text())
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


def _transaction_seconds(db, *, inserts: int, fail: bool = False) -> float:
    """Run one write transaction of ``inserts`` statements; return how long it held its turn."""
    connection = _connection(db)
    try:
        connection.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
        started = time.perf_counter()  # the turn is ours, and SQLite's write lock
        with connection.cursor() as cursor:
            for _ in range(inserts):
                cursor.execute("INSERT INTO t (who) VALUES ('writer')")
        if fail:
            connection.rollback()
        else:
            connection.commit()
        took = time.perf_counter() - started
        connection.set_autocommit(True)
    finally:
        connection.close()
    return took


# Not inside a test transaction: on SQLite that would hold a turn throughout.
@pytest.mark.django_db(transaction=True)
def test_a_writer_is_not_held_up_by_its_own_process_s_busy_threads(tmp_path, monkeypatch):
    # A web process's other requests run Python while one of its threads holds SQLite's
    # write lock. Each statement releases the GIL; taking it back must not wait for a busy
    # thread's whole switch interval, or every writer of every process waits with it.
    db = tmp_path / "writers.sqlite3"
    setup = _connection(db)
    setup.cursor().execute("PRAGMA journal_mode=WAL")
    setup.cursor().execute("CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT)")
    setup.close()
    interval = sys.getswitchinterval()
    stop = threading.Event()

    def busy():
        while not stop.is_set():
            sum(range(1000))

    threads = [threading.Thread(target=busy, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    hurried, plain = [], []
    try:
        for _ in range(5):
            hurried.append(_transaction_seconds(db, inserts=30))
            with monkeypatch.context() as patch:
                patch.setattr(sqlite_backend, "WRITING_SWITCH_INTERVAL", None)
                plain.append(_transaction_seconds(db, inserts=30))
        _transaction_seconds(db, inserts=3, fail=True)  # a rollback gives the turn back too
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)

    print(
        f"lock held for 30 inserts beside 3 busy threads: {statistics.median(hurried) * 1000:.0f}"
        f" ms, {statistics.median(plain) * 1000:.0f} ms with the interpreter's switch interval"
    )
    assert statistics.median(hurried) * 4 < statistics.median(plain), (hurried, plain)
    assert sys.getswitchinterval() == interval  # the process's own again once no one writes
    with _connection(db).cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM t")
        assert cursor.fetchone() == (300,)
