"""SQLite engine whose write transactions queue on a kernel file lock.

The database broker makes SQLite a store that several processes write to all the time
(gunicorn workers publishing, workers acknowledging and saving). SQLite's own busy
handler makes a waiting writer sleep 1, 2, 5 ... 100 ms between tries, so under load
some writers starve for hundreds of milliseconds while others get in. Here each write
transaction first takes an exclusive flock on `<database>.writelock`, retried after
0.1 ms growing to 0.5 ms for the first 5 ms of waiting and then to 5 ms (with jitter),
so a writer gets in soon after the lock is free, and polls less behind a long write. A
transaction of /track holds the lock about 0.15 ms (median; a few ms when its thread
waits for the GIL): with retries growing to 5 ms from the start, a waiter
often slept for milliseconds after the lock was free, and the machine idled while every
thread of a process waited on its commit (bench/api_ratio.py, queue mode with 10
events, alternating A/B rounds: 0.52 -> 0.56 and 0.56 -> 0.59 of the bare endpoint).
The wait is bounded by the database timeout (DATABASE_TIMEOUT_SECONDS), after which it
fails like SQLite's own "database is locked", and the API answers 503.

Hand-written (a subclass of Django's own sqlite3 backend) because neither SQLite nor
Django offers a fair cross-process writer queue or a sync outside the write lock;
tests/queueing/test_sqlite_engine.py holds the lock's bound and the sync's order, and
bench/api_ratio.py measures what they buy on the publish path.

In tracardi_site rather than an app: the database broker and the database store (and
everything else on the default database) write through it.

A transaction is flushed to disk before its commit returns, as with `synchronous=FULL`,
but after the write lock is released: SQLite runs with `synchronous=NORMAL` (no fsync in
the commit) and the committing thread then fdatasyncs the write-ahead log. With FULL the
fsync ran under the lock, so every writer of every process waited for every other's
flush; here the flushes of concurrent writers overlap and the kernel's journal batches
them, a group commit across processes (bench/api_ratio.py measures it). What a
transaction committed is in the log before the sync starts, so once the sync returns it
survives a power cut, exactly as with FULL. Single statements outside a transaction
(autocommit) are not synced: they survive a crash of the process at once, and a power
cut from the next transaction's sync on, as under NORMAL.

The database holds API tokens and every profile: its files are private to the user
(0600). SQLite gives the -wal and -shm files it creates the database file's mode, so
creating that file 0600 before SQLite does is enough for a new database; files from
before are narrowed when a connection opens.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import stat
import time
from pathlib import Path

from django.db import OperationalError
from django.db.backends.sqlite3 import base, creation

FIRST_RETRY_SECONDS = 0.0001
# Retries grow to SHORT_RETRY_SECONDS while the wait is shorter than SHORT_WAIT_SECONDS
# (a /track publish holds the lock for well under that), then to MAX_RETRY_SECONDS
# (behind a background worker's long store write, fewer wake-ups).
SHORT_RETRY_SECONDS = 0.0005
SHORT_WAIT_SECONDS = 0.005
MAX_RETRY_SECONDS = 0.005
PRIVATE_FILE_MODE = 0o600
# The files beside the database: SQLite's write-ahead log and shared memory, and ours.
COMPANION_SUFFIXES = ("-wal", "-shm", ".writelock")


def make_private(path: Path) -> None:
    """Takes the group's and others' bits off a file of ours; leaves alone one another user
    owns (shared on purpose by its owner, and chmod would fail anyway)."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return
    if status.st_uid == os.getuid() and stat.S_IMODE(status.st_mode) & 0o077:
        path.chmod(stat.S_IMODE(status.st_mode) & 0o700)


def create_private(path: Path) -> None:
    """Creates an empty database file 0600 (an empty file is an empty SQLite database), or
    narrows an existing one, before SQLite opens it and copies its mode to -wal and -shm.
    An existing file is never opened here: closing any descriptor of a file drops every
    POSIX lock this process holds on it, those of the process's other SQLite connections
    (the group committer's thread) included, and SQLite then fails with "disk I/O error"."""
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process made it first
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    make_private(path)


def open_write_lock(database: str) -> int:
    """A descriptor of `<database>.writelock`, the file every writer of the database flocks
    (this engine's connections and the broker's direct writer alike)."""
    return os.open(f"{database}.writelock", os.O_RDWR | os.O_CREAT, 0o600)


def write_lock_timeout(settings_dict: dict) -> float:
    """Seconds a writer waits for the write lock: the database's OPTIONS timeout, as SQLite's."""
    return float(settings_dict["OPTIONS"].get("timeout", 5))


def acquire_write_lock(fd: int, *, timeout: float) -> None:
    """Takes the exclusive flock on `<database>.writelock`, retrying with a growing delay;
    after `timeout` seconds fails as SQLite's own "database is locked" does."""
    started = time.monotonic()
    delay = FIRST_RETRY_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waited = time.monotonic() - started
            if waited > timeout:
                raise OperationalError("database is locked (write lock timeout)") from None
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, SHORT_RETRY_SECONDS if waited < SHORT_WAIT_SECONDS else MAX_RETRY_SECONDS)
        else:
            return


class WalSync:
    """fdatasync of a database's write-ahead log, after a commit. The descriptor stays open
    (closing one drops the process's POSIX locks on that file); it is reopened if SQLite
    replaced the file, which happens only when every connection had closed."""

    def __init__(self, database: str) -> None:
        self.path = f"{database}-wal"
        self._fd: int | None = None

    def sync(self) -> None:
        try:
            current = os.stat(self.path).st_ino
        except FileNotFoundError:  # not in WAL mode: SQLite synced the commit itself
            return
        if self._fd is not None and os.fstat(self._fd).st_ino != current:
            self.close()
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        os.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def is_plain_file(name: object) -> bool:
    """Whether the database `name` is a file this engine creates private, locks and syncs:
    not in memory, and not a `file:` URI (whose own options rule)."""
    return not (creation.DatabaseCreation.is_in_memory_db(name) or str(name).startswith("file:"))


class DatabaseCreation(creation.DatabaseCreation):
    """Deletes a test database with its -wal and -shm: a thread of the last run (the group
    committer) may have left a -wal behind, which SQLite would read as the new database's."""

    def _remove_companions(self, name: object) -> None:
        if not self.is_in_memory_db(name):
            for suffix in ("-wal", "-shm"):
                Path(f"{name}{suffix}").unlink(missing_ok=True)

    def _create_test_db(self, verbosity: int, autoclobber: bool, keepdb: bool = False) -> str:
        name = self._get_test_db_name()
        if not keepdb:
            self._remove_companions(name)
        return super()._create_test_db(verbosity, autoclobber, keepdb)

    def _destroy_test_db(self, test_database_name: str, verbosity: int) -> None:
        super()._destroy_test_db(test_database_name, verbosity)
        self._remove_companions(test_database_name)


class DatabaseWrapper(base.DatabaseWrapper):
    creation_class = DatabaseCreation
    _lock_fd: int | None = None
    _lock_held = False
    _wal: WalSync | None = None

    def get_new_connection(self, conn_params: dict):
        name = conn_params["database"]
        if not is_plain_file(name):
            return super().get_new_connection(conn_params)
        path = Path(name)
        try:
            create_private(path)
        except OSError as exc:  # as SQLite itself reports a file it cannot open: a database error (503)
            raise OperationalError(f"unable to open database file {path}: {exc.strerror}") from exc
        connection = super().get_new_connection(conn_params)
        # -wal and -shm exist now (the init command turned WAL on); ones left by an older
        # version of this engine still have the old, wider mode.
        for suffix in COMPANION_SUFFIXES:
            make_private(path.with_name(path.name + suffix))
        return connection

    def _write_lock_fd(self) -> int:
        if self._lock_fd is None:
            self._lock_fd = open_write_lock(self.settings_dict["NAME"])
        return self._lock_fd

    def _release_write_lock(self) -> None:
        if self._lock_held:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            self._lock_held = False

    def _acquire_write_lock(self) -> None:
        acquire_write_lock(self._write_lock_fd(), timeout=write_lock_timeout(self.settings_dict))
        self._lock_held = True

    def _start_transaction_under_autocommit(self) -> None:
        self._acquire_write_lock()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_write_lock()
            raise

    def _commit(self) -> None:
        try:
            super()._commit()
        finally:
            self._release_write_lock()
        self._sync_wal()

    def _sync_wal(self) -> None:
        name = self.settings_dict["NAME"]
        if not is_plain_file(name):
            return
        if self._wal is None:
            self._wal = WalSync(name)
        self._wal.sync()

    def _rollback(self) -> None:
        try:
            return super()._rollback()
        finally:
            self._release_write_lock()

    def _close(self) -> None:
        self._release_write_lock()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        if self._wal is not None:
            self._wal.close()
        self._lock_fd = self._wal = None
        return super()._close()
