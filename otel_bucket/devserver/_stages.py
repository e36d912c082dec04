"""The adoption stages: what they mean, in words for the pages and in SQL for the counts.

Both come from the constants here, so the definitions a page shows are the ones its numbers
follow. Stages are per user first; a company's stage is the furthest one of its users reached,
so that users who each tried a feature once never add up to an "adopted" company.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from otel_bucket.devserver._store import utc_iso

__all__ = [
    "DEFINITIONS",
    "DROPPED_SQL",
    "IDLE_CHOICES",
    "IDLE_DAYS",
    "MARKS",
    "RETAINED_DAYS",
    "STAGES",
    "STAGE_SQL",
    "idle_days",
    "stage_name",
    "stage_params",
]

RETAINED_DAYS: Final = 7
IDLE_DAYS: Final = 14  # "not used in the last N days": the default N
IDLE_CHOICES: Final = (7, 14, 30)
STAGES: Final = ("tried", "adopted", "retained")  # code 1, 2, 3: a later stage is a larger code
MARKS: Final = {"tried": "○", "adopted": "◐", "retained": "●"}

# Over a row of the ``uses`` table (one feature, one user): 1 tried, 2 adopted, 3 retained.
STAGE_SQL: Final = (
    "(CASE WHEN adopted_at IS NULL THEN 1"
    " WHEN last_ts > adopted_at AND last_ts >= :recent THEN 3 ELSE 2 END)"
)
# Tried and dropped: one day only, or nothing in the last N days (never a retained user:
# N is at least RETAINED_DAYS).
DROPPED_SQL: Final = "(days = 1 OR last_ts < :idle_since)"

DEFINITIONS: Final = (
    ("tried", "a user has at least one event of the feature."),
    (
        "adopted",
        "the user's events of the feature fall on at least 2 distinct days (UTC); they "
        "adopted it at their first event of the second such day.",
    ),
    (
        "retained",
        f"the user adopted the feature and has an event of it in the last {RETAINED_DAYS} "
        f"days ({RETAINED_DAYS} times 24 hours before now) that came after the moment they "
        "adopted.",
    ),
    (
        "company",
        "a company is at the furthest stage one of its users reached: it tried the feature "
        "when one of its users tried it, adopted it when one of them adopted it, retained it "
        "when one of them is retained. Users who each used a feature on one day never make "
        "their company adopt it.",
    ),
    (
        "dropped",
        "tried and dropped: a user whose events of the feature fall on one day only, or who "
        "has no event of it in the last N days (N is chosen on the feature page: "
        f"{', '.join(str(n) for n in IDLE_CHOICES)}; {IDLE_DAYS} by default). A retained "
        "user is never dropped.",
    ),
)


def stage_name(code: int | None) -> str:
    """``1`` → ``"tried"`` … ``3`` → ``"retained"``; ``"none"`` for a company that never used it."""
    return STAGES[code - 1] if code else "none"


def idle_days(value: int | None) -> int:
    """The N of "not used in the last N days": one of `IDLE_CHOICES`, else the default."""
    return value if value in IDLE_CHOICES else IDLE_DAYS


def stage_params(now: datetime, idle: int = IDLE_DAYS) -> dict[str, Any]:
    """The named parameters `STAGE_SQL` and `DROPPED_SQL` need, as of ``now``."""
    return {
        "recent": utc_iso(now - timedelta(days=RETAINED_DAYS)),
        "idle_since": utc_iso(now - timedelta(days=idle)),
    }
