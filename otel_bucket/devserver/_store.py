"""Where the devserver keeps what it received: one SQLite file in WAL mode.

WAL lets a user open the same file with the ``sqlite3`` shell while the devserver writes to it.
One connection, guarded by a lock, serves every request thread: the calls are tiny, and a single
writer is what SQLite wants anyway.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from otel_bucket.devserver._bodies import body_to_store, clean, load_stored, text_or_none
from otel_bucket.devserver._call_filter import CallFilter, accepted_sql
from otel_bucket.devserver._masking import mask_key
from otel_bucket.devserver._schema import parse_timestamp
from otel_bucket.devserver._tables import install
from otel_bucket.ground._call import utc_iso

__all__ = ["DEFAULT_DB", "Call", "CallFilter", "Store", "StoreError", "load_stored", "utc_iso"]

DEFAULT_DB: Final = Path(".otel-bucket") / "dev.sqlite3"
"""The default database file, relative to the working directory."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    tracking_key TEXT NOT NULL,
    method TEXT NOT NULL,
    status INTEGER NOT NULL,
    user_id TEXT,
    company_id TEXT,
    event TEXT,
    ts TEXT NOT NULL,
    body TEXT NOT NULL,
    reasons TEXT
);
CREATE INDEX IF NOT EXISTS calls_status ON calls (status, method);
-- Each filter's index holds the status too, so that counting what a filter matches reads
-- the index alone. (Earlier versions had these without it.)
DROP INDEX IF EXISTS calls_user;
DROP INDEX IF EXISTS calls_company;
DROP INDEX IF EXISTS calls_event;
CREATE INDEX IF NOT EXISTS calls_user_status ON calls (user_id, company_id, status);
CREATE INDEX IF NOT EXISTS calls_company_status ON calls (company_id, status);
CREATE INDEX IF NOT EXISTS calls_event_status ON calls (event, status);
-- The latest rejections without reading every accepted call.
CREATE INDEX IF NOT EXISTS calls_rejected ON calls (id) WHERE status != 200;
"""

_MAX_BODY_CHARS: Final = 4096  # what a rejection keeps of its body: enough to debug, bounded
_COLUMNS: Final = (
    "id, received_at, tracking_key, method, status, user_id, company_id, event, ts, body, reasons"
)
_INSERT: Final = (
    "INSERT INTO calls (received_at, tracking_key, method, status, user_id, company_id, event,"
    " ts, body, reasons) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class StoreError(Exception):
    """The database cannot be opened or written (one readable line)."""


@dataclass(frozen=True)
class Call:
    """One POST the devserver answered: accepted (status 200) or not (reasons say why)."""

    id: int
    received_at: str
    tracking_key: str = field(repr=False)  # the full key stays in-process; to_json masks it
    method: str
    status: int
    user_id: str | None
    company_id: str | None
    event: str | None
    timestamp: str
    body: Any
    reasons: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.status == 200

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["tracking_key"] = mask_key(self.tracking_key)
        data["accepted"] = self.accepted
        return data


class Store:
    """The calls table, opened (and created) at ``path``; ``":memory:"`` keeps nothing."""

    def __init__(self, path: str | Path) -> None:
        self.path = path if str(path) == ":memory:" else Path(path).expanduser().resolve()
        self._lock = threading.Lock()
        if isinstance(self.path, Path):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                folder = self.path.parent
                reason = _reason(exc)
                raise StoreError(
                    f"cannot create folder {folder} for the database: {reason}"
                ) from None
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {self.path}: {_reason(exc)}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL keeps this crash-safe
            self._db.executescript(_SCHEMA)
            # Proves the file is writable now rather than on the first call.
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("ROLLBACK")
            install(self._db)
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot write database {self.path}: {_reason(exc)}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(
        self,
        *,
        tracking_key: str,
        method: str,
        status: int,
        body: Any,
        reasons: list[str] | None = None,
        timestamp: str | None = None,
    ) -> Call:
        """Record one answered call and return it as stored.

        Args:
            body: the raw request body (bytes), or a JSON value or text to keep. JSON that could
                not be echoed back safely (too deep, lone surrogates) is kept as text.
        """
        received = utc_iso(datetime.now(timezone.utc))
        parsed, text = body_to_store(body)
        fields = parsed if isinstance(parsed, dict) else {}
        user_id, company_id, event = (
            text_or_none(fields.get(k)) for k in ("userId", "companyId", "event")
        )
        if reasons:
            text = text[:_MAX_BODY_CHARS]
        row = (
            received,
            clean(tracking_key),
            clean(method),
            status,
            user_id,
            company_id,
            event,
            timestamp or received,
            text,
            json.dumps(reasons) if reasons else None,
        )
        with self._lock:
            cursor = self._db.execute(_INSERT, row)
            self._db.commit()
        return _call((cursor.lastrowid, *row))

    def add_accepted(self, tracking_key: str, calls: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Store many valid calls in one transaction, each as received at its own timestamp.

        For sample data and benchmarks: the calls are not validated here.

        Returns:
            How many calls were stored.
        """
        rows = []
        for method, payload in calls:
            stamp = payload.get("timestamp")
            moment = parse_timestamp(stamp) if isinstance(stamp, str) else None
            ts = utc_iso(moment or datetime.now(timezone.utc))
            ids = (text_or_none(payload.get(k)) for k in ("userId", "companyId", "event"))
            text = json.dumps(payload, ensure_ascii=False)
            rows.append((ts, tracking_key, method, 200, *ids, ts, text, None))
        with self._lock:
            self._db.executemany(_INSERT, rows)
            self._db.commit()
        return len(rows)

    def calls(
        self,
        *,
        accepted: bool | None = True,
        limit: int = 100,
        offset: int = 0,
        where: CallFilter | None = None,
    ) -> list[Call]:
        """The most recent calls, newest first: accepted ones, the others, or (None) both."""
        condition, params = self._condition(accepted, where, listing=True)
        # The ids first: SQLite finds them in its indexes alone, then reads only those rows.
        ids = self.query(
            f"SELECT id FROM calls WHERE {condition} ORDER BY id DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        marks = ", ".join("?" * len(ids))
        rows = self.query(
            f"SELECT {_COLUMNS} FROM calls WHERE id IN ({marks}) ORDER BY id DESC",
            tuple(found for (found,) in ids),
        )
        return [_call(row) for row in rows]

    def count(self, *, accepted: bool | None = None, where: CallFilter | None = None) -> int:
        """How many calls `calls` would list without a limit."""
        if where is None or where == CallFilter():  # the tallies know, without a scan
            [(total,)] = self.query(
                "SELECT coalesce(SUM(calls), 0) FROM tallies WHERE ? IS NULL OR (status = 200) = ?",
                (accepted, accepted),
            )
            return int(total)
        condition, params = self._condition(accepted, where)
        [(total,)] = self.query(f"SELECT COUNT(*) FROM calls WHERE {condition}", params)
        return int(total)

    @staticmethod
    def _condition(
        accepted: bool | None, where: CallFilter | None, *, listing: bool = False
    ) -> tuple[str, tuple[Any, ...]]:
        where = where or CallFilter()
        condition, params = where.where(listing=listing)
        if accepted is not None:
            condition += (
                f" AND {accepted_sql(listing, where)}" if accepted else " AND status != 200"
            )
        return condition, params

    def counts(self) -> dict[str, int]:
        """Accepted calls per method, and ``rejected`` for every call answered otherwise."""
        counts = {"user": 0, "company": 0, "event": 0, "rejected": 0}
        for method, status, count in self.query("SELECT method, status, calls FROM tallies"):
            key = method if status == 200 and method in counts else "rejected"
            counts[key] += count
        return counts

    def query(
        self, sql: str, params: tuple[Any, ...] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Run one read-only query (for the views built on the calls table)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()


def _call(row: tuple[Any, ...]) -> Call:
    id_, received, key, method, status, user_id, company_id, event, ts, body, reasons = row
    return Call(
        id=id_,
        received_at=received,
        tracking_key=key,
        method=method,
        status=status,
        user_id=user_id,
        company_id=company_id,
        event=event,
        timestamp=ts,
        body=load_stored(body),
        reasons=json.loads(reasons) if reasons else [],
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
