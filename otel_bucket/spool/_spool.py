"""A durable spool of calls that could not be delivered: one SQLite file, shared by processes.

Calls go in with ``put`` and come out with ``claim`` under a lease, which ``ack`` (delivered or
rejected for good: delete) or ``release`` (failed again) ends; a lease whose holder died expires,
or ends at once when that holder is a process of this machine known to be gone (``_spool_owners``).
A spool problem never reaches the caller: the spool turns itself off with one warning.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from otel_bucket.ground._call import Call
from otel_bucket.ground._config import DEFAULT_MAX_AGE, DEFAULT_MAX_BYTES
from otel_bucket.ground._fork import after_fork_in_child
from otel_bucket.spool import _spool_queue as spool_queue
from otel_bucket.spool._spool_db import (
    FileId,
    Unusable,
    error_kind,
    file_id,
    immediate,
    move_aside,
    open_file,
)
from otel_bucket.spool._spool_info import SpoolInfo, read_info
from otel_bucket.spool._spool_log import Harm, SpoolLog
from otel_bucket.spool._spool_owners import gone, new_owner
from otel_bucket.spool._spool_queue import SpooledCall
from otel_bucket.spool._spool_sweep import sweep

__all__ = ["DEFAULT_LEASE", "Spool", "SpooledCall"]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_LEASE = 120.0
_SWEEP_EVERY = 3600.0  # seconds between two sweeps of the directory's other files, at most
_OWNERS_EVERY = 5.0  # seconds between two looks for leases whose holder is gone, at most

# Connections inherited through fork(): never used (SQLite forbids it) and never closed (closing
# could disturb the parent's locks), only kept from the garbage collector.
_INHERITED: list[sqlite3.Connection] = []


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class Spool:
    """Calls kept on disk until delivered; thread-safe, shareable between processes.

    Nothing is created on disk until the first ``put``. The spool is for the exporter's worker
    threads: a call may wait up to ``busy_timeout`` for another process's write.

    Args:
        path: the SQLite file (see ``spool_path``); its directory is created 0700, it 0600.
        max_bytes: the database file's size at most; the oldest calls go to keep within it.
        max_age: seconds a call may stay; older calls go.
        clock: wall-clock time in seconds (shared by processes: leases expire by it).
        lease_seconds: how long a claim holds its calls before another process may take them.
        endpoint: shown by ``otel-bucket spool`` (never the tracking key).
        busy_timeout: seconds to wait for another process's write before giving up this once.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age: float = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
        lease_seconds: float = DEFAULT_LEASE,
        endpoint: str | None = None,
        busy_timeout: float = 5.0,
    ) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a path, got {type(path).__name__}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
            raise TypeError(f"max_bytes must be an integer, got {type(max_bytes).__name__}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes!r}")
        if not callable(clock):
            raise TypeError("clock must be callable")
        if endpoint is not None and not isinstance(endpoint, str):
            raise TypeError(f"endpoint must be a string, got {type(endpoint).__name__}")
        self._path = Path(path)
        self._max_bytes = max_bytes
        self._max_age = _positive("max_age", max_age)
        self._lease = _positive("lease_seconds", lease_seconds)
        self._busy_timeout = _positive("busy_timeout", busy_timeout)
        self._clock = clock
        self._endpoint = endpoint
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._owner = new_owner()
        self._disabled = False
        self._retired = False  # retire(): no more claims from this object
        self._next_owners = float("-inf")
        self._stored = self._acked = self._dropped = 0
        self._log = SpoolLog(self._path, self._max_age, max_bytes, clock)
        self._file: FileId = None  # the file self._conn has open
        self._next_sweep = float("-inf")
        after_fork_in_child(self, Spool._after_fork)

    def __repr__(self) -> str:
        return f"Spool({str(self._path)!r})"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def disabled(self) -> bool:
        """True once the spool gave up (it could not create or write its file)."""
        return self._disabled

    @property
    def stored(self) -> int:
        """Calls this object put in the spool."""
        return self._stored

    @property
    def acked(self) -> int:
        """Calls this object deleted with ``ack``."""
        return self._acked

    @property
    def dropped(self) -> int:
        """Calls lost to the size or age limit (or unreadable) while this object worked."""
        return self._dropped

    def put(self, calls: Sequence[Call]) -> int:
        """Keep ``calls`` (one transaction); return how many were stored, 0 if the spool is off.

        Calls that the limits then push out (the oldest first) are counted in ``dropped``.
        """
        if self._disabled:
            return 0
        rows, unfit = spool_queue.encode(calls)
        if unfit:
            with self._lock:
                self._dropped += unfit
            _log.error("otel-bucket spool could not keep %d call(s): not JSON", unfit)
        if not rows:
            return 0

        def put(conn: sqlite3.Connection) -> int:
            now = self._clock()
            with immediate(conn):
                spool_queue.insert(conn, rows, now)
                dropped = spool_queue.enforce_limits(conn, now, self._max_bytes, self._max_age)
            self._stored += len(rows)
            self._report(*dropped)
            return len(rows)

        return self._run(put, 0, create=True, harm=("not kept", len(rows)))

    def claim(self, limit: int) -> list[SpooledCall]:
        """Lease up to ``limit`` of the oldest calls no one else holds, oldest first."""
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an integer, got {type(limit).__name__}")
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")

        def claim(conn: sqlite3.Connection) -> list[SpooledCall]:
            if self._retired:
                return []
            now = self._clock()
            with immediate(conn):
                if now >= self._next_owners:
                    self._next_owners = now + _OWNERS_EVERY
                    spool_queue.free_gone(conn, now, gone)
                taken, unreadable = spool_queue.lease(
                    conn, limit, now, now + self._lease, self._owner
                )
            if unreadable:
                self._dropped += unreadable
                _log.error("otel-bucket spool dropped %d unreadable call(s)", unreadable)
            return taken

        return self._run(claim, [], create=False)

    def ack(self, ids: Iterable[int]) -> int:
        """Delete calls (delivered, or rejected for good); return how many were still there."""
        keys = self._ids(ids)

        def ack(conn: sqlite3.Connection) -> int:
            with immediate(conn):
                deleted = spool_queue.delete(conn, keys)
            self._acked += deleted
            return deleted

        return self._run(ack, 0, create=False, harm=("sent again", len(keys))) if keys else 0

    def release(self, ids: Iterable[int]) -> int:
        """Give leases back (the calls failed again); return how many this object still held."""
        keys = self._ids(ids)

        def release(conn: sqlite3.Connection) -> int:
            with immediate(conn):
                return spool_queue.release(conn, keys, self._owner)

        return self._run(release, 0, create=False) if keys else 0

    def info(self) -> SpoolInfo:
        """What the spool holds now; empty when its file does not exist (nothing is created)."""
        empty = SpoolInfo(path=self._path)
        return self._run(
            lambda conn: read_info(conn, self._path, self._clock()), empty, create=False
        )

    def retire(self) -> None:
        """``close`` for good as a sender: no call is claimed from this object any more (a
        claim racing with this returns none rather than leasing calls again that this process
        will not send); ``put`` and the rest still work."""
        with self._lock:
            self._retired = True
        self.close()

    def close(self) -> None:
        """Give back this object's leases and close the file; a later call opens it again."""
        with self._lock:
            self._log.flush()
            if self._pid != os.getpid():  # never close the parent's connection
                self._forget_inherited()
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                with immediate(conn):
                    spool_queue.release(conn, None, self._owner)
            except sqlite3.Error as exc:  # the leases then expire on their own
                _log.debug("otel-bucket spool could not give its leases back: %s", exc)
            finally:
                conn.close()

    # -- internals --------------------------------------------------------------------------

    @staticmethod
    def _ids(ids: Iterable[int]) -> list[int]:
        keys = list(ids)
        for key in keys:
            if isinstance(key, bool) or not isinstance(key, int):
                raise TypeError(f"ids must be integers, got {type(key).__name__}")
        return keys

    def _run(
        self,
        op: Callable[[sqlite3.Connection], _T],
        default: _T,
        create: bool,
        harm: tuple[Harm, int] | None = None,
    ) -> _T:
        """``op`` on the open file; a failure gives ``default`` and is dealt with here.

        ``harm`` says what a failure costs beyond a delay, and to how many calls (for the log
        when the file stays locked by another process)."""
        self._sweep_now_and_then()
        with self._lock:
            for attempt in (1, 2):
                if self._disabled:
                    return default
                try:
                    conn = self._connect(create)
                    result = default if conn is None else op(conn)
                    self._log.not_busy()
                    return result
                except Exception as exc:
                    kind = error_kind(exc)
                    if kind == "busy":
                        self._log.busy(exc, *(harm or (None, 0)))
                        return default
                    if kind == "corrupt" and attempt == 1 and self._set_aside(exc):
                        continue
                    self._disable(exc)
            return default

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        if self._pid != os.getpid():  # forked without the hook having run
            self._forget_inherited()
        if self._conn is not None:
            if file_id(self._path) == self._file:
                return self._conn
            self._forget_connection()  # removed (or replaced) under us: never write to a ghost
        opened = open_file(
            self._path,
            create=create,
            endpoint=self._endpoint,
            busy_timeout=self._busy_timeout,
            now=self._clock(),
        )
        if opened is None:
            return None
        conn, self._file = opened
        try:
            with immediate(conn):  # the limits hold from the start, also for old files
                dropped = spool_queue.enforce_limits(
                    conn, self._clock(), self._max_bytes, self._max_age
                )
                # For the other processes that age out this file while no one uses it.
                conn.execute(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES ('max_age', ?)",
                    (self._max_age,),
                )
        except BaseException:
            conn.close()
            raise
        self._report(*dropped)
        self._conn = conn
        return conn

    def _report(self, old: int, big: int) -> None:
        self._dropped += old + big
        self._log.dropped(old, big)

    def _sweep_now_and_then(self) -> None:
        """Age out the directory's other spool files: at the first use, then hourly at most
        (outside the lock: this spool's own work does not wait for it)."""
        now = self._clock()
        with self._lock:
            if now < self._next_sweep or self._disabled:
                return
            self._next_sweep = now + min(self._max_age, _SWEEP_EVERY)
        try:
            self._log.swept(*sweep(self._path.parent, now, self._max_age, keep=self._path))
        except Exception:  # other files' faults are not this spool's: never fail on them
            _log.debug("otel-bucket spool could not age out other files", exc_info=True)

    def _set_aside(self, exc: BaseException) -> bool:
        """Move a damaged or foreign file aside; True when a fresh start is possible."""
        self._forget_connection()
        try:
            target = move_aside(self._path, self._clock())
        except FileNotFoundError:  # another process moved it first
            return True
        except OSError as move_error:
            self._disable(move_error)
            return False
        _log.warning(
            "otel-bucket spool: %s is %s; moved it to %s and starting a fresh one",
            self._path,
            exc,
            target.name,
        )
        return True

    def _disable(self, exc: BaseException) -> None:
        self._forget_connection()
        if not self._disabled:
            self._disabled = True
            _log.warning(
                "otel-bucket spool off in this process: cannot use %s (%s); calls that cannot "
                "be delivered will not be kept across a restart",
                self._path,
                exc,
                # A fault of ours rather than of the file system: show where.
                exc_info=None if isinstance(exc, sqlite3.Error | OSError | Unusable) else exc,
            )

    def _forget_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _forget_inherited(self) -> None:
        if self._conn is not None:
            _INHERITED.append(self._conn)
            self._conn = None
        self._pid = os.getpid()
        # The parent's leases stay the parent's: the child is a holder of its own.
        self._owner = new_owner()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at fork()
        self._forget_inherited()
