"""Change over time: active users and companies per ISO week (Monday to Sunday, UTC).

A user is active in a week for a feature when they have an event of it that week; a company
is active when one of its users is. The current week is still running: pages mark it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from otel_bucket.devserver._store import Store

__all__ = ["WEEKS", "WINDOWS", "Series", "weekly", "weekly_by", "weekly_in", "weeks_to", "window"]

WINDOWS: Final = (4, 12, 26)
WEEKS: Final = 12  # the default window

Counts = dict[str, dict[str, int]]  # key (feature, company or user) -> week (Monday) -> count


@dataclass(frozen=True)
class Series:
    """Counts per week, oldest first; the last week is the current one (still running)."""

    weeks: tuple[str, ...]  # the Mondays
    values: tuple[int, ...]

    @property
    def peak(self) -> int:
        return max(self.values, default=0)

    @classmethod
    def of(cls, counts: dict[str, int] | None, weeks: tuple[str, ...]) -> Series:
        found = counts or {}
        return cls(weeks, tuple(found.get(week, 0) for week in weeks))


def window(value: int | None) -> int:
    """How many weeks to show: one of `WINDOWS`, else the default."""
    return value if value in WINDOWS else WEEKS


def weeks_to(now: datetime, count: int) -> tuple[str, ...]:
    """The Mondays of the ``count`` ISO weeks up to and including the one holding ``now``."""
    today = now.date()
    monday = today - timedelta(days=today.weekday())
    return tuple((monday - timedelta(weeks=n)).isoformat() for n in range(count - 1, -1, -1))


def weekly(store: Store, since: str, *, feature: str | None = None) -> tuple[Counts, Counts]:
    """Per feature, active users and active companies per week from the Monday ``since`` on."""
    where, params = ("AND w.event = ?", (since, feature)) if feature else ("", (since,))
    users = _counts(
        store.query(
            f"SELECT w.event, w.week, COUNT(*) FROM use_weeks w WHERE w.week >= ? {where}"
            " GROUP BY w.event, w.week",
            params,
        )
    )
    companies = _counts(
        store.query(
            f"SELECT w.event, w.week, COUNT(*) FROM company_weeks w WHERE w.week >= ? {where}"
            " GROUP BY w.event, w.week",
            params,
        )
    )
    return users, companies


def weekly_by(
    store: Store, feature: str, since: str, *, users: Iterable[str] | None = None
) -> Counts:
    """One feature's active users per week for each company (``users`` None), else for each
    of those users (1 for an active week)."""
    if users is None:
        return _counts(
            store.query(
                "SELECT company_id, week, users FROM company_weeks WHERE event = ? AND week >= ?",
                (feature, since),
            )
        )
    chosen = list(users)
    marks = ", ".join("?" * len(chosen))
    return _counts(
        store.query(
            "SELECT user_id, week, 1 FROM use_weeks"
            f" WHERE event = ? AND week >= ? AND user_id IN ({marks})",
            (feature, since, *chosen),
        )
    )


def _counts(rows: list[tuple[str, str, int]]) -> Counts:
    found: Counts = defaultdict(dict)
    for key, week, count in rows:
        found[key][week] = int(count)
    return found


def weekly_in(store: Store, company: str, since: str) -> Counts:
    """Per feature, one company's active users per week from the Monday ``since`` on."""
    return _counts(
        store.query(
            "SELECT event, week, users FROM company_weeks WHERE company_id = ? AND week >= ?",
            (company, since),
        )
    )
