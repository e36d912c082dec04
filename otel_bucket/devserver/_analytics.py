"""Who uses which feature: per feature and company, the users, events and the adoption funnel.

Bucket's model: an event names only its user; a user belongs to the companies whose company
calls named their ``userId``. Events of users in no company count under the company ``""``.

The funnel, per feature, counts companies:

- **tried**: at least one event of the feature;
- **adopted**: events on at least 2 distinct UTC days; it adopted at its first event of the
  second such day;
- **retained**: adopted, and an event later than that moment within the last 7 days.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from otel_bucket.devserver._store import Store, utc_iso

__all__ = ["CHART_DAYS", "NO_COMPANY", "RETAINED_DAYS", "Cell", "Company", "Feature", "Overview"]

CHART_DAYS: Final = 30
RETAINED_DAYS: Final = 7
NO_COMPANY: Final = ""


@dataclass(frozen=True)
class Cell:
    """One feature in one company."""

    users: int
    known_users: int  # the company's users, the denominator of `share`
    events: int
    days: int  # distinct UTC days with an event
    first_seen: str
    last_seen: str
    adopted_at: str | None  # its first event on the second day, when there is one
    retained: bool

    @property
    def share(self) -> float | None:
        return self.users / self.known_users if self.known_users else None

    @property
    def stage(self) -> str:
        return "retained" if self.retained else "adopted" if self.adopted_at else "tried"

    def to_json(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "share": self.share,
            "events": self.events,
            "days": self.days,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "stage": self.stage,
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
    """One feature (event name): reach, volume, trend and funnel."""

    name: str
    users: int
    events: int
    first_seen: str
    last_seen: str
    daily: tuple[int, ...]  # events per UTC day, oldest first; the last one is today
    cells: dict[str, Cell]  # company id -> its use; companies that never used it are absent

    @property
    def tried(self) -> int:
        return sum(1 for company in self.cells if company != NO_COMPANY)

    @property
    def adopted(self) -> int:
        return sum(1 for c, cell in self.cells.items() if c != NO_COMPANY and cell.adopted_at)

    @property
    def retained(self) -> int:
        return sum(1 for c, cell in self.cells.items() if c != NO_COMPANY and cell.retained)

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.name,
            "users": self.users,
            "events": self.events,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "daily": list(self.daily),
            "funnel": {"tried": self.tried, "adopted": self.adopted, "retained": self.retained},
            "by_company": {company: cell.to_json() for company, cell in self.cells.items()},
        }


@dataclass(frozen=True)
class Overview:
    """Every feature and every company, as of ``now``."""

    now: datetime
    days: tuple[str, ...]  # the UTC dates of `Feature.daily`
    features: list[Feature]  # most companies first
    companies: dict[str, Company] = field(default_factory=dict)

    def label(self, company_id: str) -> str:
        """The company's name, else its id."""
        company = self.companies.get(company_id)
        return (company.name if company else None) or company_id or "(no company)"

    def to_json(self) -> dict[str, Any]:
        return {
            "now": utc_iso(self.now),
            "days": list(self.days),
            "features": [feature.to_json() for feature in self.features],
            "company_info": {cid: c.to_json() for cid, c in self.companies.items()},
        }

    @classmethod
    def build(cls, store: Store, now: datetime) -> Overview:
        """Compute the overview from ``store`` (a few grouped queries, then a pass in Python)."""
        members: dict[str, list[str]] = defaultdict(list)  # user -> companies
        known: dict[str, int] = defaultdict(int)  # company -> users
        for company, user in store.query(
            "SELECT DISTINCT company_id, user_id FROM calls"
            " WHERE status = 200 AND method = 'company' AND user_id IS NOT NULL"
        ):
            members[user].append(company)
            known[company] += 1
        loners = sum(
            1
            for (user,) in store.query(
                "SELECT DISTINCT user_id FROM calls"
                " WHERE status = 200 AND method IN ('user', 'event') AND user_id IS NOT NULL"
            )
            if user not in members
        )
        if loners:
            known[NO_COMPANY] = loners
        today = now.date()
        days = tuple((today - timedelta(days=n)).isoformat() for n in range(CHART_DAYS - 1, -1, -1))
        day_index = {day: n for n, day in enumerate(days)}
        recent = utc_iso(now - timedelta(days=RETAINED_DAYS))
        per_feature: dict[str, _FeatureTally] = defaultdict(_FeatureTally)
        for event, user, day, count, first, last in store.query(
            "SELECT event, user_id, substr(ts, 1, 10), COUNT(*), MIN(ts), MAX(ts) FROM calls"
            " WHERE status = 200 AND method = 'event' GROUP BY event, user_id, substr(ts, 1, 10)"
        ):
            per_feature[event].add(user, day, count, first, last, day_index)
            for company in members.get(user) or (NO_COMPANY,):
                per_feature[event].cell(company).add(user, day, count, first, last)
        features = [
            tally.feature(name, len(days), known, recent) for name, tally in per_feature.items()
        ]
        features.sort(key=lambda f: (-f.tried, -f.users, f.name))
        return cls(now, days, features, _companies(store, known, features))


class _CellTally:
    def __init__(self) -> None:
        self.users: set[str] = set()
        self.events = 0
        self.by_day: dict[str, tuple[str, str]] = {}  # day -> (first, last)

    def add(self, user: str, day: str, count: int, first: str, last: str) -> None:
        self.users.add(user)
        self.events += count
        seen = self.by_day.get(day)
        self.by_day[day] = (min(seen[0], first), max(seen[1], last)) if seen else (first, last)

    def cell(self, known_users: int, recent: str) -> Cell:
        days = sorted(self.by_day)
        last = max(last for _, last in self.by_day.values())
        adopted_at = self.by_day[days[1]][0] if len(days) >= 2 else None
        return Cell(
            users=len(self.users),
            known_users=known_users,
            events=self.events,
            days=len(days),
            first_seen=self.by_day[days[0]][0],
            last_seen=last,
            adopted_at=adopted_at,
            retained=adopted_at is not None and last > adopted_at and last >= recent,
        )


class _FeatureTally:
    def __init__(self) -> None:
        self.users: set[str] = set()
        self.events = 0
        self.first = ""
        self.last = ""
        self.daily: dict[int, int] = defaultdict(int)
        self.cells: dict[str, _CellTally] = {}

    def add(
        self, user: str, day: str, count: int, first: str, last: str, day_index: dict[str, int]
    ) -> None:
        self.users.add(user)
        self.events += count
        self.first = min(self.first, first) if self.first else first
        self.last = max(self.last, last)
        index = day_index.get(day)
        if index is not None:
            self.daily[index] += count

    def cell(self, company: str) -> _CellTally:
        tally = self.cells.get(company)
        if tally is None:
            tally = self.cells[company] = _CellTally()
        return tally

    def feature(self, name: str, days: int, known: dict[str, int], recent: str) -> Feature:
        return Feature(
            name=name,
            users=len(self.users),
            events=self.events,
            first_seen=self.first,
            last_seen=self.last,
            daily=tuple(self.daily.get(n, 0) for n in range(days)),
            cells={
                company: tally.cell(known.get(company, 0), recent)
                for company, tally in sorted(self.cells.items())
            },
        )


def _companies(store: Store, known: dict[str, int], features: list[Feature]) -> dict[str, Company]:
    seen: dict[str, str] = dict(
        store.query(
            "SELECT company_id, MAX(ts) FROM calls"
            " WHERE status = 200 AND method = 'company' GROUP BY company_id"
        )
    )
    names: dict[str, str] = {}
    for company, name in store.query(
        "SELECT company_id, json_extract(body, '$.attributes.name') FROM calls"
        " WHERE status = 200 AND method = 'company' AND json_valid(body)"
        " AND json_type(body, '$.attributes.name') IN ('text', 'integer', 'real') ORDER BY id"
    ):
        names[company] = str(name)  # the latest call's name wins, as in Bucket
    events: dict[str, int] = defaultdict(int)
    for feature in features:
        for company, cell in feature.cells.items():
            events[company] += cell.events
            if cell.last_seen > seen.get(company, ""):
                seen[company] = cell.last_seen
    ids = set(seen) | set(known)
    return {
        cid: Company(cid, names.get(cid), known.get(cid, 0), events.get(cid, 0), seen.get(cid))
        for cid in sorted(ids)
    }
