"""Django's SQLite backend, its write transactions queued in the kernel instead of in SQLite.

Every write transaction of every process (web workers, qcluster) shares SQLite's one write
lock. A writer that finds it taken waits in SQLite's busy handler, which sleeps in growing
steps (1, 2, 5, ... ms, then 100 ms a try): under a burst a writer that has backed off that
far keeps losing to newer ones, which retry sooner (measured in the bench's 200-candidate
phase: waits of up to 1.7 s for the lock).

Here a writer first takes an exclusive ``flock`` on a file beside the database, and gives it
back at its commit or rollback: waiters sleep in the kernel and one of them wakes the moment
it is free, so ``BEGIN IMMEDIATE`` then rarely waits at all. The threads of one process queue
on a lock of their own first (first come, first served), bounded by the database's
``timeout`` option like SQLite's own wait, so one process has at most one thread waiting in
the kernel. A write outside a transaction (autocommit: ``save()``, ``update()``, the queue's
own bookkeeping) takes its turn the same way: waiting in SQLite's handler behind one, the
writer whose turn it is would hold up every other.

While one of its threads holds a turn, a process hands the GIL from thread to thread every
0.2 ms instead of every 5 ms (``sys.setswitchinterval``). SQLite releases the GIL for each
statement; to get it back, the writer waits until the thread that took it meanwhile is made
to hand it over, which is after the switch interval. With a web process's other requests
running Python, each statement of a transaction could wait that long, and every writer of
every process with it (README, "A night session": in the bench's 200-candidate burst the
upload's transaction, 2 ms alone, held the lock 5.2-6.8 ms at the median, 3.7-6.2 with this).
"""

import fcntl
import os
import sys
import threading

from django.db import OperationalError
from django.db.backends.sqlite3 import base

_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()

WRITING_SWITCH_INTERVAL = 0.0002  # seconds, while a thread of the process holds a turn
_writers = 0  # this process's threads holding a turn (at most one per database)
_writers_guard = threading.Lock()
_switch_interval = sys.getswitchinterval()  # the interpreter's own, restored after


def _writing(delta: int) -> None:
    """Count a turn taken (+1) or given back (-1), and set the switch interval to match."""
    global _writers, _switch_interval
    with _writers_guard:
        if _writers == 0:
            _switch_interval = sys.getswitchinterval()
        _writers += delta
        sys.setswitchinterval(_switch_interval if _writers == 0 else WRITING_SWITCH_INTERVAL)


def _process_lock(path: str) -> threading.Lock:
    with _process_locks_guard:
        return _process_locks.setdefault(path, threading.Lock())


def _forget_locks_in_child() -> None:
    # A lock held by another thread at the fork would stay held in the child for ever.
    global _process_locks_guard, _writers, _writers_guard
    _process_locks.clear()
    _process_locks_guard = threading.Lock()
    if _writers:
        sys.setswitchinterval(_switch_interval)
    _writers = 0
    _writers_guard = threading.Lock()


os.register_at_fork(after_in_child=_forget_locks_in_child)


class DatabaseWrapper(base.DatabaseWrapper):
    _held_lock = None  # this process's lock, while this connection writes
    _queue_fd = None  # the open queue file (one per connection: flock is per open file)
    _queue_pid = None  # the process that opened it: a forked child opens its own
    WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")  # statements that take a turn

    def _queue_path(self) -> str | None:
        if self.is_in_memory_db():
            return None  # one process only: SQLite's own lock is enough
        return f"{self.settings_dict['NAME']}-writers"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.execute_wrappers.append(self._autocommit_write_in_turn)

    def _autocommit_write_in_turn(self, execute, sql, params, many, context):
        if not self.autocommit or self._held_lock is not None:
            return execute(sql, params, many, context)  # in a transaction: its turn holds
        if not sql.lstrip()[:7].upper().startswith(self.WRITES):
            return execute(sql, params, many, context)
        self._take_turn()
        try:
            return execute(sql, params, many, context)
        finally:
            self._release_turn()

    def _start_transaction_under_autocommit(self):
        self._take_turn()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_turn()
            raise

    def _take_turn(self) -> None:
        path = self._queue_path()
        if path is not None:
            lock = _process_lock(path)
            timeout = self.settings_dict.get("OPTIONS", {}).get("timeout", 5)
            if not lock.acquire(timeout=timeout):
                raise OperationalError(f"database is locked (no turn to write in {timeout} s)")
            self._held_lock = lock
            try:
                if self._queue_pid != os.getpid():
                    self._queue_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                    self._queue_pid = os.getpid()
                fcntl.flock(self._queue_fd, fcntl.LOCK_EX)
            except BaseException:
                self._release_turn(unlock=False)
                raise
            _writing(+1)

    def _release_turn(self, *, unlock: bool = True) -> None:
        lock, self._held_lock = self._held_lock, None
        if lock is None:
            return
        try:
            if unlock:
                fcntl.flock(self._queue_fd, fcntl.LOCK_UN)
        finally:
            lock.release()
            if unlock:  # the turn was taken whole, so it counted
                _writing(-1)

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._release_turn()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._release_turn()

    def _close(self):
        try:
            return super()._close()
        finally:
            self._release_turn()
            if self._queue_pid == os.getpid():
                os.close(self._queue_fd)
            self._queue_fd = self._queue_pid = None
