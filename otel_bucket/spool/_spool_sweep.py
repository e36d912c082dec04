"""Ageing out the other spool files of a directory: those of an old endpoint or tracking key.

No process opens them again, yet they hold user attributes (names, emails): calls older than the
age limit are deleted, and a file left empty that no process has open is removed, with the files
set aside as damaged. Run by every spool now and then, and by ``otel-bucket spool prune``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from otel_bucket.spool import _spool_queue as spool_queue
from otel_bucket.spool._spool_db import file_state, immediate, meta, untrusted
from otel_bucket.spool._spool_paths import list_spools

__all__ = ["Swept", "set_aside_files", "sweep", "sweep_file"]

_LOGS = ("-wal", "-shm", "-journal")
_BUSY_TIMEOUT = 1.0  # seconds to wait for another process's write to a file being aged out
_NOT_OURS = {
    "fresh": "being created",
    "newer": "written by a newer otel-bucket",
    "foreign": "not an otel-bucket spool",
}


@dataclass(frozen=True)
class Swept:
    """What ageing out one spool file did."""

    path: Path
    calls: int = 0
    """Calls deleted: spooled before the cutoff."""
    left: int = 0
    """Calls still in the file."""
    removed: bool = False
    """The file is gone (it was empty and no process had it open)."""
    skipped: str | None = None
    """Why the file was left as it was: another user's, not a spool, busy, unreadable."""
    endpoint: str | None = None
    """The endpoint the file's calls are for, when it records it."""


def set_aside_files(directory: Path) -> list[Path]:
    """The damaged or foreign files spools moved aside (``*.corrupt-*``), without their logs."""
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [
        directory / name
        for name in names
        if name.startswith("spool-") and ".db.corrupt-" in name and not name.endswith(_LOGS)
    ]


def sweep_file(path: Path, now: float, older_than: float, own_limit: bool = True) -> Swept:
    """Delete the calls of ``path`` spooled more than ``older_than`` seconds before ``now`` (or
    its own age limit, when it records one and ``own_limit``); remove the file when it is then
    empty and no process has it open. Never raises for what it finds."""
    if hasattr(os, "geteuid"):
        try:
            if os.stat(path).st_uid != os.geteuid():
                return Swept(path, skipped="another user's file")
        except OSError as exc:
            return Swept(path, skipped=str(exc))
    try:
        conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT, isolation_level=None)
    except sqlite3.Error as exc:
        return Swept(path, skipped=str(exc))
    try:
        state = file_state(conn)
        if state != "ours":
            return Swept(path, skipped=_NOT_OURS[state])
        endpoint = meta(conn, "endpoint")
        limit = meta(conn, "max_age") if own_limit else None
        if isinstance(limit, int | float) and limit > 0:
            older_than = limit  # what the file's own processes would keep
        with immediate(conn):
            calls = spool_queue.drop_older(conn, now - older_than)
        left = conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        removed = not left and _remove_unused(conn, path)
        shown = endpoint if isinstance(endpoint, str) else None
        return Swept(path, calls=calls, left=left, removed=removed, endpoint=shown)
    except sqlite3.Error as exc:
        return Swept(path, skipped=str(exc))
    finally:
        conn.close()


def _remove_unused(conn: sqlite3.Connection, path: Path) -> bool:
    """Remove the empty spool behind ``conn`` when no other connection has it open.

    Each connection to a WAL file holds a shared lock for as long as it is open, so leaving
    WAL mode succeeds only with none: that is the test. The exclusive lock taken next keeps a
    newcomer out until the file is gone (a spool that opened it meanwhile sees that it went,
    by its inode, and opens a fresh one).
    """
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        if conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0] != "delete":
            return False
        conn.execute("BEGIN EXCLUSIVE")
    except sqlite3.OperationalError:  # in use
        return False
    try:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "delete":
            return False  # a process opened it in between (and made it WAL again)
        if conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]:
            return False  # a call came in between
        os.remove(path)
        return True
    except OSError:  # e.g. Windows, where an open file cannot be removed
        return False
    finally:
        conn.execute("ROLLBACK")


def _remove_set_aside(paths: Iterable[Path], cutoff: float) -> list[Path]:
    removed = []
    for path in paths:
        with suppress(OSError):
            if os.stat(path).st_mtime < cutoff:
                os.remove(path)
                removed.append(path)
                for suffix in _LOGS:
                    with suppress(FileNotFoundError):
                        os.remove(f"{path}{suffix}")
    return removed


def sweep(
    directory: Path,
    now: float,
    older_than: float,
    *,
    keep: Path | None = None,
    own_limits: bool = True,
    trusted_only: bool = True,
) -> tuple[list[Swept], list[Path]]:
    """Age out every spool file of ``directory`` but ``keep`` (see ``sweep_file``), and remove
    the files set aside more than ``older_than`` seconds ago (by their last change); return
    what was done to each spool file, and the set-aside files removed. With ``trusted_only``,
    nothing is done in a directory another user could write to (see ``untrusted``)."""
    if trusted_only and untrusted(directory) is not None:
        return [], []
    try:
        paths = [path for path in list_spools(directory) if path != keep]
    except OSError:  # e.g. not allowed to list it
        return [], []
    swept = [sweep_file(path, now, older_than, own_limits) for path in paths]
    return swept, _remove_set_aside(set_aside_files(directory), now - older_than)
