"""The spool's SQLite file: creating it private, its schema, telling ours from a foreign or
damaged file, and moving such a file aside."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Literal

from otel_bucket.ground._config import shown_url

__all__ = [
    "Corrupt",
    "Unusable",
    "error_kind",
    "file_id",
    "file_state",
    "immediate",
    "meta",
    "move_aside",
    "open_file",
    "untrusted",
]

APPLICATION_ID = 0x4F425350  # "OBSP": marks the file as an otel-bucket spool
SCHEMA_VERSION = 1
_WAL_LIMIT = 4 * 1024 * 1024  # bytes the write-ahead log is cut back to after a checkpoint

_SCHEMA = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value)",
    # AUTOINCREMENT: ids are never reused, so a late ack cannot delete a newer call.
    """CREATE TABLE calls (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        spooled REAL NOT NULL,
        method TEXT NOT NULL,
        payload TEXT NOT NULL,
        size INTEGER NOT NULL,
        lease_until REAL NOT NULL DEFAULT 0,
        lease_owner TEXT
    )""",
    # The size limit is checked on every put: keep the total at hand instead of summing it.
    """CREATE TRIGGER calls_added AFTER INSERT ON calls BEGIN
        UPDATE meta SET value = value + NEW.size WHERE name = 'bytes';
    END""",
    """CREATE TRIGGER calls_removed AFTER DELETE ON calls BEGIN
        UPDATE meta SET value = value - OLD.size WHERE name = 'bytes';
    END""",
    "INSERT INTO meta (name, value) VALUES ('bytes', 0)",
)

FileState = Literal["fresh", "ours", "newer", "foreign"]
FileId = tuple[int, int] | None  # (device, inode); None when there is no file

# SQLite's primary result codes; Python 3.10's exceptions carry only a message (see below).
_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


class Corrupt(Exception):
    """The file is damaged or not a spool: move it aside."""


class Unusable(Exception):
    """The file must be left alone (a newer otel-bucket wrote it): stop using the spool."""


def error_kind(exc: BaseException) -> Literal["busy", "corrupt", "broken"]:
    """Busy (try later), corrupt (move the file aside) or broken (give the spool up)."""
    if isinstance(exc, Corrupt):
        return "corrupt"
    if not isinstance(exc, sqlite3.Error):
        return "broken"
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        primary = code & 0xFF
        if primary in _BUSY_CODES:
            return "busy"
        if primary in _CORRUPT_CODES:
            return "corrupt"
        return "broken"
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return "busy"
    if isinstance(exc, sqlite3.DatabaseError) and ("malformed" in text or "not a database" in text):
        return "corrupt"
    return "broken"


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at once (``BEGIN IMMEDIATE``) so processes queue, not fail."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # also when COMMIT itself failed (disk full)
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def file_state(conn: sqlite3.Connection) -> FileState:
    """Ours, empty, written by a newer schema, or something else (reads only)."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    if app_id == 0 and version == 0 and not names:
        return "fresh"
    if app_id == APPLICATION_ID and version > SCHEMA_VERSION:
        return "newer"
    if app_id == APPLICATION_ID and version == SCHEMA_VERSION and {"calls", "meta"} <= names:
        return "ours"
    return "foreign"


def meta(conn: sqlite3.Connection, name: str) -> object:
    """A value the file records about itself (``endpoint``, ``max_age``), or None."""
    row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None


def create_schema(conn: sqlite3.Connection, endpoint: str | None, now: float) -> None:
    """Make an empty file a spool; a no-op when another process has just done it."""
    with immediate(conn):
        if file_state(conn) != "fresh":
            return
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT INTO meta (name, value) VALUES ('created', ?)", (now,))
        if endpoint is not None:
            conn.execute(
                "INSERT INTO meta (name, value) VALUES ('endpoint', ?)", (shown_url(endpoint),)
            )
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def move_aside(path: Path, now: float) -> Path:
    """Rename a damaged or foreign file (and its -wal/-shm) to ``<name>.corrupt-<time>``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):
        # The log must move too: SQLite would replay it into the fresh file.
        with suppress(FileNotFoundError):
            os.replace(f"{path}{suffix}", f"{target}{suffix}")
    return target


def untrusted(directory: Path) -> str | None:
    """Why another user could read or replace the spool in ``directory``, or None.

    Like ssh's StrictModes and pip's cache check: the directory and each one above it must
    belong to this user or to root, and must not be writable by every user unless sticky (as
    ``/tmp``: there nobody may rename or delete another user's files). Group-writable is
    accepted (volumes shared by a deployment's group). Directories that do not exist yet are
    skipped: they are created as this user's. Not checked where there are no POSIX owners.
    """
    if not hasattr(os, "geteuid"):
        return None
    me = os.geteuid()
    real = Path(os.path.realpath(directory))
    for place in (real, *real.parents):
        try:
            info = os.stat(place)
        except FileNotFoundError:
            continue
        if info.st_uid not in (me, 0):
            return (
                f"{place} belongs to another user (uid {info.st_uid}), who could read or "
                "replace the spool; use a directory of your own (BUCKET_SPOOL_DIR)"
            )
        if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
            return (
                f"{place} is writable by every user, who could replace the spool; "
                f"chmod o-w it, or use another directory (BUCKET_SPOOL_DIR)"
            )
    return None


def file_id(path: Path) -> FileId:
    """What tells this file from one put at the same path later: (device, inode)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


def open_file(
    path: Path, *, create: bool, endpoint: str | None, busy_timeout: float, now: float
) -> tuple[sqlite3.Connection, FileId] | None:
    """A connection to the spool at ``path``, made a spool if empty, and the file it has open
    (see ``file_id``); None when there is no file and ``create`` is false.

    Raises:
        Corrupt: the file is damaged or foreign (it is left as it was).
        Unusable: a newer otel-bucket wrote it, or another user could read or replace it
            (see ``untrusted``).
        OSError, sqlite3.Error: it cannot be created or opened.
    """
    for _ in range(3):
        before = file_id(path)
        conn = _open(path, create=create, endpoint=endpoint, busy_timeout=busy_timeout, now=now)
        if conn is None:
            return None
        after = file_id(path)
        if before is None or after == before:
            return conn, after
        conn.close()  # the file was removed while it was being opened (a sweep): again
    raise sqlite3.OperationalError("database is locked (the file keeps being replaced)")


def _open(
    path: Path, *, create: bool, endpoint: str | None, busy_timeout: float, now: float
) -> sqlite3.Connection | None:
    if not path.exists() and not create:
        return None
    reason = untrusted(path.parent)
    if reason is not None:
        raise Unusable(reason)
    if not path.exists():
        _make_file(path)
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        state = file_state(conn)  # before any write: a foreign file must stay as it is
        if state == "newer":
            raise Unusable(f"{path.name} was written by a newer otel-bucket")
        if state == "foreign":
            raise Corrupt("not an otel-bucket spool")
        # The file shrinks as calls leave (set on an empty file only: later it is a no-op).
        conn.execute("PRAGMA auto_vacuum = FULL")
        conn.execute("PRAGMA journal_mode = WAL")
        # Committed writes survive a killed process; only a power cut may lose the last ones.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT}")
        if state == "fresh":
            create_schema(conn, endpoint, now)
        elif conn.execute("PRAGMA quick_check(1)").fetchone()[0] != "ok":
            raise Corrupt("damaged (quick_check failed)")
    except BaseException:
        conn.close()
        raise
    return conn


def _make_file(path: Path) -> None:
    if not path.parent.is_dir():
        # Only the last directory gets 0700: parents such as ~/.cache are the user's.
        os.makedirs(path.parent, mode=0o700, exist_ok=True)
    # Created here, 0600, because SQLite would make it 0644; its -wal and -shm copy the mode.
    with suppress(FileExistsError):  # another process was first
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
