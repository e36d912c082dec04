"""Who uses which feature: per feature, company and user, the use, the stage and the trend.

Bucket's model: an event names only its user; a user belongs to the companies whose company
calls named their ``userId``. Events of users in no company count under the company ``""``.
Stages are defined in `_stages` (per user; a company is at its furthest user's stage). Every
number here is read from the aggregate tables (`_tables`) with a few grouped queries, so a page
costs the same with 1,000 or 100,000 stored calls.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from otel_bucket.devserver._stages import (
    DROPPED_SQL,
    IDLE_DAYS,
    STAGE_SQL,
    stage_name,
    stage_params,
)
from otel_bucket.devserver._store import Store, utc_iso
from otel_bucket.devserver._trends import WEEKS, Series, weekly, weeks_to

__all__ = ["CHART_DAYS", "NO_COMPANY", "Cell", "Company", "Feature", "Funnel", "Overview", "cells"]

CHART_DAYS: Final = 30
NO_COMPANY: Final = ""


@dataclass(frozen=True)
class Funnel:
    """How many reached each stage (a later stage counts in the earlier ones too)."""

    tried: int = 0
    adopted: int = 0
    retained: int = 0

    def to_json(self) -> dict[str, int]:
        return {"tried": self.tried, "adopted": self.adopted, "retained": self.retained}


@dataclass(frozen=True)
class Cell:
    """One feature in one company: its users who used it, and where each of them is now."""

    users: int
    known_users: int  # the company's users, the denominator of `share`
    events: int
    first_seen: str
    last_seen: str
    at_stage: tuple[int, int, int]  # users now tried (only), adopted (not retained), retained

    @property
    def share(self) -> float | None:
        return self.users / self.known_users if self.known_users else None

    @property
    def stage(self) -> str:
        """The furthest stage one of its users reached."""
        return stage_name(max(n for n, count in enumerate(self.at_stage, 1) if count))

    def to_json(self) -> dict[str, Any]:
        tried, adopted, retained = self.at_stage
        return {
            "users": self.users,
            "share": self.share,
            "events": self.events,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "stage": self.stage,
            "users_at_stage": {"tried": tried, "adopted": adopted, "retained": retained},
        }


@dataclass(frozen=True)
class Company:
    """A company the devserver heard of (``""``: users in no company)."""

    id: str
    name: str | None
    users: int  # known users: associated by a company call (for "": seen, in no company)
    events: int
    last_seen: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "users": self.users,
            "events": self.events,
            "last_seen": self.last_seen,
        }


@dataclass(frozen=True)
class Feature:
    """One feature (event name): reach, volume, funnels, dropped users and weekly trend."""

    name: str
    users: int
    events: int
    first_seen: str
    last_seen: str
    users_funnel: Funnel
    dropped: int  # users who tried and dropped (`_stages.DROPPED_SQL`)
    cells: dict[str, Cell]  # company id -> its use; companies that never used it are absent
    active_users: Series
    active_companies: Series

    @property
    def funnel(self) -> Funnel:
        """Companies (not users in no company) that reached each stage."""
        stages = [cell.at_stage for c, cell in self.cells.items() if c != NO_COMPANY]
        return Funnel(
            tried=len(stages),
            adopted=sum(1 for s in stages if s[1] or s[2]),
            retained=sum(1 for s in stages if s[2]),
        )

    @property
    def tried(self) -> int:
        return self.funnel.tried

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.name,
            "users": self.users,
            "events": self.events,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "funnel": self.funnel.to_json(),
            "users_funnel": self.users_funnel.to_json(),
            "dropped_users": self.dropped,
            "weekly": {
                "weeks": list(self.active_users.weeks),
                "users": list(self.active_users.values),
                "companies": list(self.active_companies.values),
            },
            "by_company": {company: cell.to_json() for company, cell in self.cells.items()},
        }


def cells(
    store: Store, now: datetime, *, feature: str | None = None, company: str | None = None
) -> dict[tuple[str, str], Cell]:
    """(feature, company id) -> its `Cell`, for every feature and company or only one of each."""
    terms, params = [], stage_params(now)
    if feature is not None:
        terms.append("u.event = :feature")
        params["feature"] = feature
    if company is not None:
        terms.append("coalesce(m.company_id, '') = :company")
        params["company"] = company
    where = f"WHERE {' AND '.join(terms)}" if terms else ""
    known = known_users(store)
    found = {}
    for event, cid, users, events, first, last, tried, adopted, retained in store.query(
        "SELECT u.event, coalesce(m.company_id, ''), COUNT(*), SUM(u.events), MIN(u.first_ts),"
        " MAX(u.last_ts), SUM(u.stage = 1), SUM(u.stage = 2), SUM(u.stage = 3)"
        f" FROM (SELECT event, user_id, events, first_ts, last_ts, {STAGE_SQL} AS stage"
        " FROM uses) u LEFT JOIN members m ON m.user_id = u.user_id"
        f" {where} GROUP BY u.event, coalesce(m.company_id, '')",
        params,
    ):
        found[(event, cid)] = Cell(
            int(users), known.get(cid, 0), int(events), first, last, (tried, adopted, retained)
        )
    return found


def known_users(store: Store) -> dict[str, int]:
    """Company id -> its users (named by its company calls); ``""`` -> users in no company."""
    known = dict(store.query("SELECT company_id, COUNT(*) FROM members GROUP BY company_id"))
    [(loners,)] = store.query(
        "SELECT COUNT(*) FROM entities e WHERE kind = 'user'"
        " AND NOT EXISTS (SELECT 1 FROM members m WHERE m.user_id = e.id)"
    )
    if loners:
        known[NO_COMPANY] = loners
    return known


@dataclass(frozen=True)
class Overview:
    """Every feature and every company, as of ``now``."""

    now: datetime
    weeks: tuple[str, ...]  # the Mondays of each feature's `active_users`
    features: list[Feature]  # most companies first
    companies: dict[str, Company] = field(default_factory=dict)
    users: int = 0  # distinct users, whatever the number of companies they belong to

    def label(self, company_id: str) -> str:
        """The company's name, else its id."""
        company = self.companies.get(company_id)
        return (company.name if company else None) or company_id or "(no company)"

    def daily(self, store: Store) -> tuple[tuple[str, ...], dict[str, list[int]]]:
        """The last `CHART_DAYS` UTC dates and, per feature, its events on each."""
        today = self.now.date()
        days = tuple((today - timedelta(days=n)).isoformat() for n in range(CHART_DAYS - 1, -1, -1))
        index = {day: n for n, day in enumerate(days)}
        counts: dict[str, list[int]] = {f.name: [0] * CHART_DAYS for f in self.features}
        for event, day, events in store.query(
            "SELECT event, day, events FROM feature_days WHERE day >= ?",
            (days[0],),
        ):
            if event in counts and day in index:
                counts[event][index[day]] = int(events)
        return days, counts

    def to_json(self) -> dict[str, Any]:
        return {
            "now": utc_iso(self.now),
            "users": self.users,
            "weeks": list(self.weeks),
            "features": [feature.to_json() for feature in self.features],
            "company_info": {cid: c.to_json() for cid, c in self.companies.items()},
        }

    @classmethod
    def build(
        cls, store: Store, now: datetime, *, weeks: int = WEEKS, idle: int = IDLE_DAYS
    ) -> Overview:
        """Read the overview from the aggregates (a handful of grouped queries)."""
        mondays = weeks_to(now, weeks)
        active_users, active_companies = weekly(store, mondays[0])
        by_feature: dict[str, dict[str, Cell]] = defaultdict(dict)
        for (event, company), cell in sorted(cells(store, now).items()):
            by_feature[event][company] = cell
        features = [
            Feature(
                name=event,
                users=int(users),
                events=int(events),
                first_seen=first,
                last_seen=last,
                users_funnel=Funnel(int(users), int(adopted), int(retained)),
                dropped=int(dropped),
                cells=by_feature[event],
                active_users=Series.of(active_users.get(event), mondays),
                active_companies=Series.of(active_companies.get(event), mondays),
            )
            for event, users, events, first, last, adopted, retained, dropped in store.query(
                "SELECT event, COUNT(*), SUM(events), MIN(first_ts), MAX(last_ts),"
                " SUM(stage >= 2), SUM(stage = 3), SUM(dropped)"
                f" FROM (SELECT *, {STAGE_SQL} AS stage, {DROPPED_SQL} AS dropped FROM uses)"
                " GROUP BY event",
                stage_params(now, idle),
            )
        ]
        features.sort(key=lambda f: (-f.tried, -f.users, f.name))
        [(users,)] = store.query("SELECT COUNT(*) FROM entities WHERE kind = 'user'")
        return cls(now, mondays, features, _companies(store, features), int(users))


def _companies(store: Store, features: list[Feature]) -> dict[str, Company]:
    known = known_users(store)
    info: dict[str, tuple[str | None, str | None]] = {
        cid: (name, last)
        for cid, name, last in store.query(
            "SELECT id, name, last_ts FROM entities WHERE kind = 'company'"
        )
    }
    events: dict[str, int] = defaultdict(int)
    seen: dict[str, str] = {cid: last for cid, (_, last) in info.items() if last}
    for feature in features:
        for company, cell in feature.cells.items():
            events[company] += cell.events
            if cell.last_seen > seen.get(company, ""):
                seen[company] = cell.last_seen
    ids = set(info) | set(known) | set(events)
    return {
        cid: Company(
            cid, info.get(cid, (None, None))[0], known.get(cid, 0), events[cid], seen.get(cid)
        )
        for cid in sorted(ids)
    }
