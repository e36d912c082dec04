"""What a spool file holds (``SpoolInfo``), read by the spool itself or by ``otel-bucket spool``."""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from otel_bucket.spool._spool_db import error_kind, file_state, meta
from otel_bucket.spool._spool_owners import gone

__all__ = ["SpoolInfo", "disk_size", "read_info", "read_spool"]


@dataclass(frozen=True)
class SpoolInfo:
    """What one spool file holds (a snapshot)."""

    path: Path
    calls: dict[str, int] = field(default_factory=dict)
    """Calls per method."""
    leased: int = 0
    """Calls a process holds under a lease (sending them now, or died while it did)."""
    orphaned: int = 0
    """Of ``leased``: calls whose holder, a process of this machine, is gone (killed while it
    sent them); the next process to claim calls from the file takes them at once."""
    oldest: float | None = None
    """When the oldest call was spooled (seconds since the epoch)."""
    newest: float | None = None
    """When the newest call was spooled."""
    made_first: str | None = None
    """The earliest time a call was made (its own ``timestamp``, ISO 8601); None when the calls
    carry none. Calls spooled together at an exit were made over the time before it."""
    made_last: str | None = None
    """The latest time a call was made."""
    expired: int = 0
    """Calls older than ``max_age``: they will never be sent; the next spool to open the file,
    or a sweep, deletes them."""
    max_age: float | None = None
    """The age limit of the file's processes, as the file records it, else the one given to
    ``read_info``; None for neither."""
    size: int = 0
    """Bytes on disk: the file and its write-ahead log."""
    endpoint: str | None = None
    """The endpoint the calls are for, when the file records it."""

    @property
    def total(self) -> int:
        """Calls in the spool."""
        return sum(self.calls.values())


def disk_size(path: Path) -> int:
    """Bytes of the file and its write-ahead log (0 for what does not exist)."""
    total = 0
    for name in (str(path), f"{path}-wal"):
        with suppress(OSError):
            total += os.stat(name).st_size
    return total


def read_info(
    conn: sqlite3.Connection, path: Path, now: float, max_age: float | None = None
) -> SpoolInfo:
    """What the spool behind ``conn`` holds (one read transaction, so the figures agree);
    ``max_age`` is the age limit when the file records none."""
    conn.execute("BEGIN")
    try:
        recorded = meta(conn, "max_age")
        if isinstance(recorded, int | float) and recorded > 0:
            max_age = float(recorded)
        calls = dict(conn.execute("SELECT method, COUNT(*) FROM calls GROUP BY method ORDER BY 1"))
        leased, oldest, newest, expired = conn.execute(
            "SELECT COALESCE(SUM(lease_until > ?), 0), MIN(spooled), MAX(spooled),"
            " COALESCE(SUM(spooled < ?), 0) FROM calls",
            (now, float("-inf") if max_age is None else now - max_age),
        ).fetchone()
        holders = conn.execute(
            "SELECT lease_owner, COUNT(*) FROM calls WHERE lease_until > ? GROUP BY lease_owner",
            (now,),
        ).fetchall()
        made = _made(conn)
        endpoint = meta(conn, "endpoint")
    finally:
        conn.execute("COMMIT")
    return SpoolInfo(
        path=path,
        calls=calls,
        leased=leased,
        orphaned=sum(n for owner, n in holders if isinstance(owner, str) and gone(owner)),
        oldest=oldest,
        newest=newest,
        made_first=made[0],
        made_last=made[1],
        expired=expired,
        max_age=max_age,
        size=disk_size(path),
        endpoint=endpoint if isinstance(endpoint, str) else None,
    )


def _made(conn: sqlite3.Connection) -> tuple[str | None, str | None]:
    """The earliest and latest ``timestamp`` of the calls (one format throughout: the greater
    string is the later time); None where SQLite lacks its JSON functions."""
    try:
        first, last = conn.execute(
            "SELECT MIN(t), MAX(t) FROM (SELECT json_extract(payload, '$.timestamp') AS t"
            " FROM calls) WHERE typeof(t) = 'text'"
        ).fetchone()
    except sqlite3.OperationalError:  # no such function: json_extract (SQLite before 3.38)
        return None, None
    return first, last


def read_spool(path: str | os.PathLike[str], max_age: float | None = None) -> SpoolInfo:
    """What a spool file holds, for ``otel-bucket spool``: changes nothing, creates nothing.
    ``max_age`` is the age limit when the file records none.

    Raises:
        ValueError: the file is not an otel-bucket spool (foreign, damaged or newer).
        OSError, sqlite3.Error: it cannot be read.
    """
    path = Path(path)
    if not path.exists():
        return SpoolInfo(path=path)
    uri = path.resolve().as_uri()
    # Read-write when allowed, so that SQLite tidies its -wal/-shm away on close as usual;
    # the queries only read.
    try:
        conn = sqlite3.connect(f"{uri}?mode=rw", uri=True, timeout=5.0, isolation_level=None)
    except sqlite3.OperationalError:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=5.0, isolation_level=None)
    try:
        state = file_state(conn)
        if state == "fresh":  # just created by a process that has not written yet
            return SpoolInfo(path=path, size=disk_size(path))
        if state != "ours":
            raise ValueError(
                "written by a newer otel-bucket" if state == "newer" else "not an otel-bucket spool"
            )
        return read_info(conn, path, time.time(), max_age)
    except sqlite3.DatabaseError as exc:
        if error_kind(exc) == "corrupt":
            raise ValueError(f"damaged ({exc})") from None
        raise
    finally:
        conn.close()
