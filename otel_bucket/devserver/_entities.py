"""Companies and users, read from the aggregates: names, members, each user's features.

Attributes are merged from the entity's own calls (the latest value wins); everything else comes
from the aggregate tables (`_tables`), so a page costs the same however many calls are stored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from otel_bucket.devserver._bodies import load_stored
from otel_bucket.devserver._stages import (
    DROPPED_SQL,
    IDLE_DAYS,
    STAGE_SQL,
    STAGES,
    stage_name,
    stage_params,
)
from otel_bucket.devserver._store import Store

__all__ = [
    "USE_COLUMNS",
    "Member",
    "Profile",
    "Use",
    "companies_of",
    "feature_uses",
    "members",
    "names",
    "profile",
    "use_of",
    "uses",
]

_CHUNK: Final = 500  # SQLite limits the parameters of one statement


@dataclass(frozen=True)
class Profile:
    """A company or user: attributes merged over its calls (the latest value wins), and when."""

    id: str
    name: str | None
    attributes: dict[str, Any]
    calls: int
    first_seen: str
    last_seen: str


@dataclass(frozen=True)
class Use:
    """One feature as one user used it, and the stage they are at."""

    feature: str
    user: str
    events: int
    days: int
    first_seen: str
    last_seen: str
    stage: str
    dropped: bool


@dataclass(frozen=True)
class Member:
    """A user of a company, and what they used."""

    id: str
    name: str | None
    uses: list[Use]
    last_seen: str | None

    @property
    def events(self) -> int:
        return sum(use.events for use in self.uses)


def profile(store: Store, kind: str, entity_id: str) -> Profile | None:
    """The company (``kind="company"``) or user with this id; None when no call names it."""
    found = store.query(
        "SELECT name, calls, first_ts, last_ts FROM entities WHERE kind = ? AND id = ?",
        (kind, entity_id),
    )
    if not found:
        return None
    [(name, calls, first, last)] = found
    column = "company_id" if kind == "company" else "user_id"
    attributes: dict[str, Any] = {}
    for (body,) in store.query(
        f"SELECT body FROM calls WHERE status = 200 AND method = ? AND {column} = ? ORDER BY id",
        (kind, entity_id),
    ):
        parsed = load_stored(body)
        values = parsed.get("attributes") if isinstance(parsed, dict) else None
        if isinstance(values, dict):
            attributes.update(values)
    return Profile(entity_id, name, attributes, int(calls), first, last)


def _chunks(ids: Iterable[str]) -> Iterable[tuple[list[str], str]]:
    chosen = sorted(set(ids))
    for start in range(0, len(chosen), _CHUNK):
        chunk = chosen[start : start + _CHUNK]
        yield chunk, ", ".join("?" * len(chunk))


def names(store: Store, kind: str, ids: Iterable[str]) -> dict[str, str]:
    """The latest ``name`` attribute of each of these companies or users that has one."""
    found: dict[str, str] = {}
    for chunk, marks in _chunks(ids):
        found.update(
            store.query(
                f"SELECT id, name FROM entities WHERE kind = ? AND id IN ({marks})"
                " AND name IS NOT NULL",
                (kind, *chunk),
            )
        )
    return found


def companies_of(store: Store, users: Iterable[str]) -> dict[str, list[str]]:
    """User id -> ids of the companies whose company calls named them (users in none absent)."""
    found: dict[str, list[str]] = defaultdict(list)
    for chunk, marks in _chunks(users):
        for user, company in store.query(
            f"SELECT user_id, company_id FROM members WHERE user_id IN ({marks})"
            " ORDER BY user_id, company_id",
            tuple(chunk),
        ):
            found[user].append(company)
    return found


USE_COLUMNS: Final = (
    f"event, user_id, events, days, first_ts, last_ts, {STAGE_SQL} AS stage,"
    f" {DROPPED_SQL} AS dropped"
)
"""The columns `use_of` reads, from the ``uses`` table (with `stage_params` as parameters)."""


def use_of(row: tuple[Any, ...]) -> Use:
    """A `Use` from a row of `USE_COLUMNS`."""
    event, who, events, days, first, last, stage, dropped = row
    return Use(event, who, int(events), int(days), first, last, stage_name(stage), bool(dropped))


def uses(store: Store, now: datetime, users: Iterable[str], idle: int = IDLE_DAYS) -> list[Use]:
    """Each feature each of these users used, most events first."""
    found: list[Use] = []
    for chunk, _ in _chunks(users):
        params = {**stage_params(now, idle), **{f"u{n}": u for n, u in enumerate(chunk)}}
        marks = ", ".join(f":u{n}" for n in range(len(chunk)))
        rows = store.query(f"SELECT {USE_COLUMNS} FROM uses WHERE user_id IN ({marks})", params)
        found += [use_of(row) for row in rows]
    found.sort(key=lambda u: (-u.events, u.feature))
    return found


def members(store: Store, company_id: str, now: datetime) -> list[Member]:
    """The company's users (named by its company calls), most recently seen first."""
    rows = store.query(
        "SELECT e.id, e.name, e.last_ts FROM members m JOIN entities e"
        " ON e.kind = 'user' AND e.id = m.user_id WHERE m.company_id = ?",
        (company_id,),
    )
    by_user: dict[str, list[Use]] = defaultdict(list)
    for use in uses(store, now, [user for user, _, _ in rows]):
        by_user[use.user].append(use)
    result = [Member(user, name, by_user[user], last) for user, name, last in rows]
    result.sort(key=lambda m: (m.last_seen or "", m.id), reverse=True)
    return result


def feature_uses(
    store: Store,
    now: datetime,
    feature: str,
    *,
    stage: str | None = None,
    company: str | None = None,
    idle: int = IDLE_DAYS,
    limit: int = 50,
    offset: int = 0,
) -> tuple[int, list[Use]]:
    """The users of one feature, last used first, and how many there are in all.

    Args:
        stage: only users at this stage (``tried``, ``adopted``, ``retained``), or those who
            tried and dropped it (``dropped``, with ``idle`` as its N days).
        company: only this company's users (``""``: users in no company).
    """
    params: dict[str, Any] = {**stage_params(now, idle), "feature": feature}
    terms = ["event = :feature"]
    if company == "":
        terms.append("NOT EXISTS (SELECT 1 FROM members m WHERE m.user_id = uses.user_id)")
    elif company is not None:
        terms.append("user_id IN (SELECT user_id FROM members WHERE company_id = :company)")
        params["company"] = company
    if stage == "dropped":
        terms.append(DROPPED_SQL)
    elif stage in STAGES:
        terms.append(f"{STAGE_SQL} = :stage")
        params["stage"] = STAGES.index(stage) + 1
    where = " AND ".join(terms)
    [(total,)] = store.query(f"SELECT COUNT(*) FROM uses WHERE {where}", params)
    rows = store.query(
        f"SELECT {USE_COLUMNS} FROM uses WHERE {where}"
        " ORDER BY last_ts DESC, user_id LIMIT :limit OFFSET :offset",
        {**params, "limit": limit, "offset": offset},
    )
    return int(total), [use_of(row) for row in rows]
