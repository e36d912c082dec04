"""What the devserver answers, independent of HTTP plumbing: the Tracking API's rules.

A POST is checked in the order the real API would meet the problems: the path, the tracking key,
the Content-Type, the JSON, the call's fields; then ``fail_rate`` may answer 500 to a valid call
so that users can watch their exporter retry. Every answered POST is stored and echoed as one line.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from otel_bucket.devserver._analytics import Overview
from otel_bucket.devserver._masking import mask_key, mask_path
from otel_bucket.devserver._schema import (
    METHODS,
    SchemaError,
    parse_body,
    parse_timestamp,
    validate_call,
)
from otel_bucket.devserver._store import Call, CallFilter, Store, utc_iso
from otel_bucket.devserver._trends import WEEKS

__all__ = ["Adoption", "Answer", "Snapshot", "TrackingApp", "adoption", "format_line"]

logger = logging.getLogger(__name__)

_SUCCESS: Final = {"success": True}
_USAGE: Final = "expected POST /{tracking_key}/{user|company|event}"


@dataclass(frozen=True)
class Answer:
    """The status and JSON body of one answer, and the call as stored (if it was)."""

    status: int
    body: dict[str, Any]
    call: Call | None = None


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


def adoption(overview: Overview) -> list[Adoption]:
    """The older, simpler view of the overview (``/api/calls`` ``adoption``)."""
    rows = [
        Adoption(
            feature=f.name,
            users=f.users,
            companies=f.tried,
            last_seen=f.last_seen,
            by_company={c: (cell.users, cell.last_seen) for c, cell in sorted(f.cells.items())},
        )
        for f in overview.features
    ]
    rows.sort(key=lambda a: (-a.companies, -a.users, a.feature))
    return rows


@dataclass(frozen=True)
class Snapshot:
    """What the devserver holds: the page shows it and ``GET /api/calls`` returns it as JSON."""

    counts: dict[str, int]
    adoption: list[Adoption]
    calls: list[Call]
    rejections: list[Call]

    @property
    def companies(self) -> list[str]:
        """Company ids of the adoption table's columns, widest adoption first."""
        users: dict[str, int] = {}
        for row in self.adoption:
            for company, (count, _) in row.by_company.items():
                users[company] = users.get(company, 0) + count
        return sorted(users, key=lambda c: (c == "", -users[c], c))

    def to_json(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "companies": self.companies,
            "adoption": [row.to_json() for row in self.adoption],
            "calls": [call.to_json() for call in self.calls],
            "rejections": [call.to_json() for call in self.rejections],
        }


def _failure(status: int, reasons: list[str]) -> dict[str, Any]:
    return {"success": False, "status": status, "errors": reasons}


class TrackingApp:
    """The emulated Tracking API.

    Args:
        store: where answered calls go.
        tracking_key: when set, every other key is answered with 404.
        fail_rate: the share (0 to 1) of valid calls answered with 500 instead of stored.
        seed: seeds the random choice of failing calls, for reproducible runs.
        on_call: called with every answered call, for one call at a time; by default each is
            logged at INFO.
        clock: what "now" is for the pages (the last 30 days, retention); UTC wall time by
            default.
    """

    def __init__(
        self,
        store: Store,
        *,
        tracking_key: str | None = None,
        fail_rate: float = 0.0,
        seed: int | None = None,
        on_call: Callable[[Call], None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be between 0 and 1, got {fail_rate!r}")
        if tracking_key is not None and not tracking_key.strip():
            raise ValueError("tracking_key must not be empty")
        self.store = store
        self.tracking_key = tracking_key
        self.fail_rate = fail_rate
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()
        self._on_call = on_call or _log_call
        # Request threads answer at once; their lines must not: a sink such as print() writes
        # a line and its newline separately, so two calls could share one terminal line.
        self._on_call_lock = threading.Lock()
        self._clock = clock or _utc_now

    def now(self) -> datetime:
        """The current time, as the pages see it (aware, UTC)."""
        return self._clock().astimezone(timezone.utc)

    def post(self, path: str, content_type: str | None, raw: bytes) -> Answer:
        """Answer ``POST path`` with body ``raw``."""
        parts = path.split("?", 1)[0].strip("/").split("/")
        if len(parts) != 2 or not all(parts):
            reason = f"no such path {mask_path(path)!r}: {_USAGE}"
            return self._record("", "?", 404, raw, [reason])
        key, method = parts
        if self.tracking_key is not None and key != self.tracking_key:
            reason = f"unknown tracking key {mask_key(key)!r}"
            return self._record(key, method, 404, raw, [reason])
        if method not in METHODS:
            return self._record(key, method, 400, raw, validate_call(method, {}))
        method = "event" if method == "events" else method
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            sent = f"got {content_type!r}" if content_type else "none was sent"
            reason = f"Content-Type must be application/json, {sent}"
            return self._record(key, method, 400, raw, [reason])
        try:
            payload = parse_body(raw)
        except SchemaError as exc:
            return self._record(key, method, 400, raw, [str(exc)])
        problems = validate_call(method, payload)
        if problems:
            return self._record(key, method, 400, raw, problems)
        if self.fail_rate and self._roll():
            reason = f"simulated failure (--fail-rate {self.fail_rate:g}): retry the call"
            return self._record(key, method, 500, raw, [reason])
        return self._record(key, method, 200, raw, [], _timestamp(payload))

    def overview(self, weeks: int = WEEKS) -> Overview:
        """Every feature and company as of `now`: funnels, trend, adoption per company."""
        return Overview.build(self.store, self.now(), weeks=weeks)

    def snapshot(
        self,
        limit: int = 50,
        *,
        offset: int = 0,
        where: CallFilter | None = None,
        overview: Overview | None = None,
    ) -> Snapshot:
        """The counts, the adoption table and the ``limit`` most recent calls and rejections.

        Args:
            limit: how many calls and how many rejections at most.
            offset: how many of the most recent ones to skip (pagination).
            where: only the calls it matches.
            overview: an overview already built for this request (else one is built).
        """
        return Snapshot(
            counts=self.store.counts(),
            adoption=adoption(overview or self.overview()),
            calls=self.store.calls(accepted=True, limit=limit, offset=offset, where=where),
            rejections=self.store.calls(accepted=False, limit=limit, offset=offset, where=where),
        )

    def _roll(self) -> bool:
        with self._random_lock:
            return self._random.random() < self.fail_rate

    def _record(
        self,
        key: str,
        method: str,
        status: int,
        raw: bytes,
        reasons: list[str],
        timestamp: str | None = None,
    ) -> Answer:
        call = self.store.add(
            tracking_key=key,
            method=method,
            status=status,
            body=raw,
            reasons=reasons,
            timestamp=timestamp,
        )
        try:
            with self._on_call_lock:
                self._on_call(call)
        except Exception:  # a broken sink must not turn a stored call into a 500
            logger.exception("otel-bucket devserver: the on_call callback failed")
        return Answer(status, _SUCCESS if status == 200 else _failure(status, reasons), call)


def _timestamp(payload: Any) -> str | None:
    value = payload.get("timestamp") if isinstance(payload, dict) else None
    moment = parse_timestamp(value) if isinstance(value, str) else None
    return utc_iso(moment) if moment else None


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _log_call(call: Call) -> None:
    if logger.isEnabledFor(logging.INFO):
        logger.info("%s", format_line(call))


def format_line(call: Call) -> str:
    """One readable terminal line for ``call``: time, outcome, method, ids, event, reasons."""
    moment = datetime.fromisoformat(call.received_at.replace("Z", "+00:00")).astimezone()
    outcome = {200: "accepted", 500: "failed"}.get(call.status, "rejected")
    parts = [moment.strftime("%H:%M:%S"), f"{call.status} {outcome:<8}", f"{call.method:<7}"]
    if call.event is not None:
        parts.append(repr(call.event))
    if call.user_id is not None and call.method != "company":
        parts.append(f"userId={call.user_id!r}")
    if call.company_id is not None:
        parts.append(f"companyId={call.company_id!r}")
        if call.user_id is not None:
            parts.append(f"userId={call.user_id!r}")
    attributes = call.body.get("attributes") if isinstance(call.body, dict) else None
    if call.accepted and isinstance(attributes, dict) and attributes:
        parts.append("attributes: " + ", ".join(sorted(attributes)))
    if call.reasons:
        parts.append("- " + "; ".join(call.reasons))
    return " ".join(parts)
