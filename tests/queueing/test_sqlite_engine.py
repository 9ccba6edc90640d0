"""The SQLite engine queues write transactions on a file lock, bounded by the timeout, and
keeps the database files private."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, OperationalError, connection, connections, transaction

from queueing.models import QueueCounter
from tracardi_site.settings import private_dir
from tracardi_site.sqlite.base import DatabaseWrapper, is_plain_file, open_write_lock, write_lock_timeout
from tracardi_site.sqlite.direct import DirectWriter, direct_writer

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite engine only"),
]


def other_connection(timeout: float) -> DatabaseWrapper:
    settings = {**connection.settings_dict, "OPTIONS": {**connection.settings_dict["OPTIONS"], "timeout": timeout}}
    return DatabaseWrapper(settings, alias="other")


def test_a_writer_waits_for_the_lock_and_gives_up_after_the_timeout():
    other = other_connection(timeout=0.3)
    try:
        with transaction.atomic():  # this test's connection holds the write lock
            started = time.monotonic()
            with pytest.raises(OperationalError, match="write lock timeout"):
                other.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
            assert 0.3 <= time.monotonic() - started < 2
        # Released at commit: the other writer gets in at once.
        other.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
        other.commit()
        other.set_autocommit(True)
    finally:
        other.close()


def private_connection(path: Path) -> DatabaseWrapper:
    return DatabaseWrapper({**connection.settings_dict, "NAME": str(path)}, alias="private")


def modes(directory: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()}


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual umask, under which files were created 0644 and directories 0755."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def write_through(db: DatabaseWrapper) -> None:
    with db.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS t (x)")
        cursor.execute("INSERT INTO t VALUES (1)")


def test_var_dir_and_a_new_database_with_its_wal_and_shm_are_private(tmp_path, open_umask):
    var = private_dir("VAR_DIR", tmp_path / "var")
    db = private_connection(var / "tracardi.sqlite3")
    try:
        write_through(db)
        assert modes(var) == {
            "tracardi.sqlite3": 0o600,
            "tracardi.sqlite3-wal": 0o600,
            "tracardi.sqlite3-shm": 0o600,
        }
    finally:
        db.close()
    assert stat.S_IMODE(var.stat().st_mode) == 0o700


def test_files_and_dir_left_world_readable_by_an_older_version_are_narrowed(tmp_path, open_umask):
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    old = private_connection(var / "tracardi.sqlite3")
    with sqlite3.connect(var / "tracardi.sqlite3") as raw:  # as Django's own engine left them
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("CREATE TABLE t (x)")
        holder = sqlite3.connect(var / "tracardi.sqlite3")  # keeps -wal and -shm in place
        holder.execute("SELECT * FROM t").fetchall()
    (var / "tracardi.sqlite3.writelock").touch(mode=0o644)
    try:
        assert set(modes(var).values()) == {0o644}
        private_dir("VAR_DIR", var)
        write_through(old)
        assert set(modes(var).values()) == {0o600}, modes(var)
        assert stat.S_IMODE(var.stat().st_mode) == 0o700
    finally:
        old.close()
        holder.close()


def test_the_configured_var_dir_and_the_test_database_are_private():
    assert stat.S_IMODE(settings.VAR_DIR.stat().st_mode) == 0o700
    database = Path(connection.settings_dict["NAME"])
    connection.ensure_connection()
    for path in (database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_shared_directory_is_refused_as_var_dir_not_narrowed(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(ImproperlyConfigured, match="a directory of this user's own is required, not a shared one"):
        private_dir("VAR_DIR", shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


def test_a_commit_returns_after_its_write_ahead_log_is_synced_and_outside_the_write_lock(monkeypatch):
    """synchronous=NORMAL plus the engine's own fdatasync of the -wal: durable like FULL,
    with the flush outside the lock. A power cut cannot be staged here, so the test watches
    the boundary we do not own, the kernel call, and what the lock looks like during it."""
    synced: list[tuple[str, bool]] = []
    real_fdatasync = os.fdatasync
    lock_path = f"{connection.settings_dict['NAME']}.writelock"

    def fdatasync(fd: int) -> None:
        probe = os.open(lock_path, os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: the lock was released first
            fcntl.flock(probe, fcntl.LOCK_UN)
            free = True
        except BlockingIOError:
            free = False
        finally:
            os.close(probe)
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), free))
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    with connection.cursor() as cursor:
        assert cursor.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL: no fsync in the commit
    with transaction.atomic():
        QueueCounter.objects.create(topic="synced")
    assert synced == [(f"{connection.settings_dict['NAME']}-wal", True)]


def test_a_database_in_a_missing_directory_is_a_database_error_not_an_os_error(tmp_path):
    """What SQLite itself raises for a file it cannot open, so /track answers 503, not 500."""
    db = private_connection(tmp_path / "missing" / "tracardi.sqlite3")
    try:
        with pytest.raises(OperationalError, match="unable to open database file"):
            db.ensure_connection()
    finally:
        db.close()


# --- the direct writer (tracardi_site/sqlite/direct.py), the broker's group commit -----


def test_the_direct_writer_commits_and_syncs_its_log_outside_the_write_lock(monkeypatch):
    """The same durability as the engine's commit: the -wal is synced after the lock is free
    and before the transaction returns."""
    synced: list[tuple[str, bool]] = []
    real_fdatasync = os.fdatasync
    probe = os.open(f"{connection.settings_dict['NAME']}.writelock", os.O_RDWR)

    def fdatasync(fd: int) -> None:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(probe, fcntl.LOCK_UN)
            free = True
        except BlockingIOError:
            free = False
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), free))
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    try:
        with direct_writer(connections["default"]).transaction() as cursor:
            cursor.execute("INSERT INTO queueing_queuecounter (topic, published, acknowledged) VALUES ('direct', 1, 0)")
    finally:
        os.close(probe)
    assert synced == [(f"{connection.settings_dict['NAME']}-wal", True)]
    assert QueueCounter.objects.get(topic="direct").published == 1  # committed: other connections see it


def test_a_failed_direct_transaction_is_rolled_back_as_a_django_error_and_the_next_one_works():
    writer = direct_writer(connections["default"])
    # Django's error, as from any connection: the broker answers 503.
    with pytest.raises(IntegrityError), writer.transaction() as cursor:
        cursor.execute("INSERT INTO queueing_queuecounter (topic, published, acknowledged) VALUES ('a', 1, 0)")
        cursor.execute("INSERT INTO queueing_queuecounter (topic, published, acknowledged) VALUES ('a', 2, 0)")
    assert not QueueCounter.objects.filter(topic="a").exists()  # the whole transaction, not its first row
    with writer.transaction() as cursor:
        cursor.execute("INSERT INTO queueing_queuecounter (topic, published, acknowledged) VALUES ('a', 3, 0)")
    assert QueueCounter.objects.get(topic="a").published == 3


def test_the_direct_writer_waits_for_the_write_lock_and_gives_up_after_the_timeout():
    writer = DirectWriter(connection.settings_dict["NAME"], timeout=0.3)
    try:
        with transaction.atomic():  # this test's connection holds the write lock
            QueueCounter.objects.create(topic="held")
            started = time.monotonic()
            with pytest.raises(OperationalError, match="write lock timeout"), writer.transaction():
                pass
            assert 0.3 <= time.monotonic() - started < 2
        with writer.transaction() as cursor:  # released at commit: it gets in at once
            cursor.execute("UPDATE queueing_queuecounter SET published = 7 WHERE topic = 'held'")
        assert QueueCounter.objects.get(topic="held").published == 7
    finally:
        writer.close()


def test_there_is_no_direct_writer_for_a_database_without_a_file():
    memory = DatabaseWrapper({**connection.settings_dict, "NAME": ":memory:"}, alias="memory")
    assert direct_writer(memory) is None
    assert direct_writer(connections["default"]) is direct_writer(connections["default"])  # one per process and file


def test_only_a_plain_file_is_created_locked_and_synced_by_the_engine():
    assert is_plain_file("/var/lib/tracardi/tracardi.sqlite3")
    assert not is_plain_file(":memory:")
    assert not is_plain_file("file:memdb1?mode=memory&cache=shared")
    assert not is_plain_file("file:/var/lib/tracardi/tracardi.sqlite3?mode=ro")


def test_every_writer_reads_the_lock_timeout_from_the_database_options_and_locks_one_file(tmp_path):
    assert write_lock_timeout({"OPTIONS": {}}) == 5.0  # SQLite's own default here
    assert write_lock_timeout({"OPTIONS": {"timeout": "2.5"}}) == 2.5
    database = str(tmp_path / "db.sqlite3")
    first, second = open_write_lock(database), open_write_lock(database)
    try:
        fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BlockingIOError):  # the engine's connection and the direct writer exclude each other
            fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(first)
        os.close(second)
    assert os.stat(f"{database}.writelock").st_mode & 0o777 == 0o600
