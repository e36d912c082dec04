"""Where the devserver keeps what it received: one SQLite file in WAL mode.

WAL lets a user open the same file with the ``sqlite3`` shell while the devserver writes to it.
One connection, guarded by a lock, serves every request thread: the calls are tiny, and a single
writer is what SQLite wants anyway.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from otel_bucket._mapping import utc_iso
from otel_bucket._schema import MAX_DEPTH, SchemaError, json_problem, parse_body
from otel_bucket.devserver._masking import mask_key

__all__ = ["DEFAULT_DB", "Adoption", "Call", "Store", "StoreError", "utc_iso"]

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
"""

_MAX_BODY_CHARS: Final = 4096  # what a rejection keeps of its body: enough to debug, bounded


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


@dataclass(frozen=True)
class Adoption:
    """Who used one feature: per company, the users and when it was last seen."""

    feature: str
    users: int
    companies: int
    last_seen: str
    # company id ("" for users not associated with any company) -> (users, last seen)
    by_company: dict[str, tuple[int, str]]

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "users": self.users,
            "companies": self.companies,
            "last_seen": self.last_seen,
            "by_company": {
                company: {"users": users, "last_seen": seen}
                for company, (users, seen) in self.by_company.items()
            },
        }


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
        parsed, text = _body_to_store(body)
        fields = parsed if isinstance(parsed, dict) else {}
        user_id, company_id, event = (
            _text(fields.get(k)) for k in ("userId", "companyId", "event")
        )
        if reasons:
            text = text[:_MAX_BODY_CHARS]
        row = (
            received,
            _clean(tracking_key),
            _clean(method),
            status,
            user_id,
            company_id,
            event,
            timestamp or received,
            text,
            json.dumps(reasons) if reasons else None,
        )
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO calls (received_at, tracking_key, method, status, user_id,"
                " company_id, event, ts, body, reasons) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            self._db.commit()
        return _call((cursor.lastrowid, *row))

    def calls(self, *, accepted: bool = True, limit: int = 100) -> list[Call]:
        """The most recent accepted calls (or the others), newest first."""
        where = "status = 200" if accepted else "status != 200"
        return [
            _call(row)
            for row in self._query(
                f"SELECT id, received_at, tracking_key, method, status, user_id, company_id,"
                f" event, ts, body, reasons FROM calls WHERE {where} ORDER BY id DESC LIMIT ?",
                (limit,),
            )
        ]

    def counts(self) -> dict[str, int]:
        """Accepted calls per method, and ``rejected`` for every call answered otherwise."""
        counts = {"user": 0, "company": 0, "event": 0, "rejected": 0}
        for method, status, count in self._query(
            "SELECT method, status = 200, COUNT(*) FROM calls GROUP BY method, status = 200", ()
        ):
            key = method if status and method in counts else "rejected"
            counts[key] += count
        return counts

    def adoption(self) -> list[Adoption]:
        """Per feature (event name): users and companies that used it, most used first.

        An event names only its user; the user's companies come from company calls that carry
        a ``userId``, as in Bucket. Events of users in no company count under ``""``.
        """
        rows = self._query(
            """
            WITH members AS (
                SELECT DISTINCT company_id, user_id FROM calls
                WHERE status = 200 AND method = 'company' AND user_id IS NOT NULL
            )
            SELECT e.event, COALESCE(m.company_id, ''), e.user_id, MAX(e.ts)
            FROM calls e LEFT JOIN members m ON m.user_id = e.user_id
            WHERE e.status = 200 AND e.method = 'event'
            GROUP BY e.event, m.company_id, e.user_id
            """,
            (),
        )
        per_feature: dict[str, dict[str, dict[str, str]]] = {}
        for event, company, user, seen in rows:
            per_feature.setdefault(event, {}).setdefault(company, {})[user] = seen
        result = []
        for event, companies in per_feature.items():
            users = {u for members in companies.values() for u in members}
            by_company = {
                company: (len(members), max(members.values()))
                for company, members in sorted(companies.items())
            }
            result.append(
                Adoption(
                    feature=event,
                    users=len(users),
                    companies=sum(1 for company in companies if company),
                    last_seen=max(seen for _, seen in by_company.values()),
                    by_company=by_company,
                )
            )
        result.sort(key=lambda a: (-a.companies, -a.users, a.feature))
        return result

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()


def _clean(text: str) -> str:
    # SQLite (and every reader after it) needs UTF-8: a lone surrogate is kept as its escape.
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _text(value: Any) -> str | None:
    return _clean(value) if isinstance(value, str) else None


def _echoable(value: Any) -> bool:
    # A whole body nests one level above its attributes object.
    return json_problem(value, MAX_DEPTH + 1) is None


def _body_to_store(body: Any) -> tuple[Any, str]:
    """The parsed body (None when it is not JSON) and the text to store for it."""
    if isinstance(body, bytes):
        text = _clean(body.decode("utf-8", errors="replace"))
        try:
            parsed = parse_body(body)
        except SchemaError:
            return None, text
        if not _echoable(parsed):
            return parsed, text
    elif isinstance(body, str):
        return None, _clean(body)
    else:
        parsed = body
        if not _echoable(parsed):
            return parsed, f"<{type(body).__name__} that is not JSON to echo>"
    return parsed, json.dumps(parsed, ensure_ascii=False)


def load_stored(text: str) -> Any:
    """A stored body as JSON when it is safe to echo (any devserver version wrote it), else text."""
    try:
        parsed = parse_body(text.encode("utf-8", errors="replace"))
    except SchemaError:  # a rejected body that was not JSON, or was cut short: keep the text
        return text
    return parsed if _echoable(parsed) else text


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
