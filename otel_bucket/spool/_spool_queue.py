"""The spool's ``calls`` table as a queue: rows in, oldest out under a lease, limits kept.

Plain functions on a connection, each run by ``Spool`` inside its own transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from otel_bucket.ground._call import Call

__all__ = [
    "ROW_OVERHEAD",
    "Row",
    "SpooledCall",
    "delete",
    "drop_older",
    "encode",
    "enforce_limits",
    "free_gone",
    "insert",
    "lease",
    "release",
]

# Bytes counted per call beside its method and payload (about SQLite's record overhead): the
# sizes only say which calls to drop; the limit itself is on the file's pages.
ROW_OVERHEAD = 40
_ROUNDS = 8  # dropping frees whole pages only after a few calls: check again, a few times
_CHUNK = 500  # ids per statement, below SQLite's old limit of 999 parameters

Row = tuple[str, str, int]
"""A call as stored: method, payload as JSON, size counted against the limit."""


@dataclass(frozen=True)
class SpooledCall:
    """A call taken from the spool under a lease: ``ack`` or ``release`` it by ``id``."""

    id: int
    call: Call
    spooled_at: float
    """When it was spooled (seconds since the epoch); the payload keeps its own timestamp."""


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _marks(chunk: Sequence[int]) -> str:
    return ",".join("?" * len(chunk))


def encode(calls: Iterable[Call]) -> tuple[list[Row], int]:
    """The rows to store, and how many calls could not be (not JSON: not sendable either).

    Raises:
        TypeError: an item is not a ``Call``.
    """
    rows: list[Row] = []
    unfit = 0
    for call in calls:
        if not isinstance(call, Call):
            raise TypeError(f"calls must hold Call objects, got {type(call).__name__}")
        try:
            text = json.dumps(
                call.payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
            size = len(call.method.encode()) + len(text.encode()) + ROW_OVERHEAD
        except (TypeError, ValueError):  # ValueError: NaN, or a lone surrogate in a string
            unfit += 1
            continue
        rows.append((call.method, text, size))
    return rows, unfit


def insert(conn: sqlite3.Connection, rows: Sequence[Row], now: float) -> None:
    conn.executemany(
        "INSERT INTO calls (spooled, method, payload, size) VALUES (?, ?, ?, ?)",
        [(now, *row) for row in rows],
    )


def enforce_limits(
    conn: sqlite3.Connection, now: float, max_bytes: int, max_age: float
) -> tuple[int, int]:
    """Drop the oldest calls beyond the age limit, then beyond the size limit, until the file's
    pages in use fit in ``max_bytes``; return (too old, too big)."""
    old = drop_older(conn, now - max_age)
    big = 0
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    for _ in range(_ROUNDS):
        # Free pages leave the file at commit (auto_vacuum FULL): count the pages in use.
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        used = (pages - conn.execute("PRAGMA freelist_count").fetchone()[0]) * page_size
        if used <= max_bytes:
            break
        # Calls take the file's pages about in proportion to their stored size.
        total = conn.execute("SELECT value FROM meta WHERE name = 'bytes'").fetchone()[0]
        dropped = _drop_oldest(conn, cutoff=None, excess=-(-(used - max_bytes) * total // used))
        if not dropped:
            break
        big += dropped
    return old, big


def drop_older(conn: sqlite3.Connection, cutoff: float) -> int:
    """Delete the calls spooled before ``cutoff`` (see ``_drop_oldest``); return how many."""
    return _drop_oldest(conn, cutoff=cutoff, excess=0)


def _drop_oldest(conn: sqlite3.Connection, cutoff: float | None, excess: int) -> int:
    """Delete the oldest calls (by id) spooled before ``cutoff``, or whose sizes add up to
    ``excess``; return how many.

    It stops at the first call that is neither, so a call spooled by a process whose clock
    is behind may outlive the age limit a little, until it is the oldest.
    """
    dropped = freed = 0
    last = None
    cursor = conn.execute("SELECT id, spooled, size FROM calls ORDER BY id")
    for key, spooled, size in cursor:
        if not ((cutoff is not None and spooled < cutoff) or freed < excess):
            break
        dropped += 1
        freed += size
        last = key
    cursor.close()
    if last is not None:
        conn.execute("DELETE FROM calls WHERE id <= ?", (last,))
    return dropped


def lease(
    conn: sqlite3.Connection, limit: int, now: float, until: float, owner: str
) -> tuple[list[SpooledCall], int]:
    """Lease the oldest ``limit`` calls nobody holds; return them and how many rows were
    unreadable (deleted)."""
    rows = conn.execute(
        "SELECT id, method, payload, spooled FROM calls WHERE lease_until <= ? ORDER BY id LIMIT ?",
        (now, limit),
    ).fetchall()
    taken: list[SpooledCall] = []
    unreadable: list[int] = []
    for key, method, text, spooled in rows:
        try:
            payload = json.loads(text)
        except (TypeError, ValueError):
            payload = None
        if isinstance(payload, dict) and isinstance(method, str):
            taken.append(SpooledCall(key, Call(method, payload), spooled))
        else:  # only a hand-edited file has these: never send them
            unreadable.append(key)
    for chunk in _chunks([c.id for c in taken]):
        conn.execute(
            f"UPDATE calls SET lease_until = ?, lease_owner = ? WHERE id IN ({_marks(chunk)})",
            (until, owner, *chunk),
        )
    delete(conn, unreadable)
    return taken, len(unreadable)


def delete(conn: sqlite3.Connection, ids: Sequence[int]) -> int:
    """Delete calls by id; return how many were there."""
    deleted = sum(
        conn.execute(f"DELETE FROM calls WHERE id IN ({_marks(c)})", c).rowcount
        for c in _chunks(ids)
    )
    return deleted


def release(conn: sqlite3.Connection, ids: Sequence[int] | None, owner: str) -> int:
    """End ``owner``'s leases on ``ids`` (all of them for None); return how many it held.

    Only the owner's: a lease that expired may be another process's by now.
    """
    clear = "UPDATE calls SET lease_until = 0, lease_owner = NULL WHERE lease_owner = ?"
    if ids is None:
        return conn.execute(clear, (owner,)).rowcount
    return sum(
        conn.execute(f"{clear} AND id IN ({_marks(c)})", (owner, *c)).rowcount for c in _chunks(ids)
    )


def free_gone(conn: sqlite3.Connection, now: float, gone: Callable[[str], bool]) -> int:
    """End the live leases of holders that ``gone`` says no longer run; return how many."""
    owners = conn.execute(
        "SELECT DISTINCT lease_owner FROM calls WHERE lease_until > ? AND lease_owner IS NOT NULL",
        (now,),
    ).fetchall()
    return sum(release(conn, None, owner) for (owner,) in owners if gone(owner))
