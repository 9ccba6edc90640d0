"""Write transactions on a plain sqlite3 connection, for the database broker's group commit.

Every /track publish on the embedded default is one of these (queueing/group_commit.py).
Django's `transaction.atomic` and cursor wrappers add the autocommit switches and
savepoint bookkeeping around it and the rewriting of every statement's placeholders: the
same commit cost about 1.5 times the CPU through them, the log's flush included
(bench/publish_cost.py prints the ratio). The guarantees are the engine's own (base.py):
the write lock, BEGIN IMMEDIATE, the commit, the lock released, then the fdatasync of the
write-ahead log before `transaction()` returns. Errors are Django's database errors, as
from any Django connection, so the broker's callers handle them the same way.

One writer per process and database file (a forked process opens its own); its
transactions run one at a time.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import DatabaseErrorWrapper

from tracardi_site.sqlite.base import (
    DatabaseWrapper,
    WalSync,
    acquire_write_lock,
    is_plain_file,
    open_write_lock,
    write_lock_timeout,
)


class DirectWriter:
    Database = sqlite3  # what DatabaseErrorWrapper maps exceptions from

    def __init__(self, database: str, *, timeout: float) -> None:
        self.database, self.timeout = database, timeout
        self.errors_occurred = False  # DatabaseErrorWrapper sets it (Django's connections read it)
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._wal = WalSync(database)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """A cursor inside a write transaction, committed and synced when the block ends,
        rolled back if it raises."""
        with self._lock, DatabaseErrorWrapper(self):
            try:
                cursor = self._cursor()
                acquire_write_lock(self._lock_fd, timeout=self.timeout)
                try:
                    cursor.execute("BEGIN IMMEDIATE")
                    try:
                        yield cursor
                    except BaseException:
                        if self._connection.in_transaction:  # some errors end it in SQLite itself
                            cursor.execute("ROLLBACK")
                        raise
                    cursor.execute("COMMIT")
                finally:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                self._wal.sync()
            except sqlite3.Error as exc:
                if not isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError):
                    self.close()  # a broken connection: the next transaction opens a new one
                raise

    def _cursor(self) -> sqlite3.Cursor:
        if self._connection is None:
            # mode=rw: never creates a missing database (the engine creates it, private).
            self._connection = sqlite3.connect(
                f"{Path(self.database).resolve().as_uri()}?mode=rw", uri=True, timeout=self.timeout,
                isolation_level=None, check_same_thread=False,
            )  # fmt: skip
            self._connection.execute("PRAGMA synchronous=NORMAL")  # the engine's: it syncs the log itself
        if self._lock_fd is None:
            self._lock_fd = open_write_lock(self.database)
        return self._connection.cursor()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._wal.close()


_writers: dict[tuple[int, str], DirectWriter] = {}
_writers_lock = threading.Lock()


def direct_writer(connection: BaseDatabaseWrapper) -> DirectWriter | None:
    """The process's writer for `connection`'s database file; None when that is not a file
    of this engine (MySQL, an in-memory or URI database): use the Django connection."""
    name = str(connection.settings_dict["NAME"])
    if not isinstance(connection, DatabaseWrapper) or not is_plain_file(name):
        return None
    key = (os.getpid(), name)  # the test database's name differs from the configured one
    writer = _writers.get(key)
    if writer is None:
        with _writers_lock:
            writer = _writers.setdefault(key, DirectWriter(name, timeout=write_lock_timeout(connection.settings_dict)))
    return writer
