"""One company or one user, read from the calls table: attributes, members, features."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Final

from otel_bucket.devserver._bodies import load_stored
from otel_bucket.devserver._store import Store

__all__ = [
    "Member",
    "Profile",
    "UserFeature",
    "members",
    "names",
    "profile",
    "user_companies",
    "user_features",
]

_ACCEPTED_COMPANY: Final = "status = 200 AND method = 'company'"


@dataclass(frozen=True)
class Profile:
    """A company or user: attributes merged over its calls (the latest value wins), and when."""

    id: str
    attributes: dict[str, Any]
    calls: int
    first_seen: str
    last_seen: str


@dataclass(frozen=True)
class Member:
    """A user of a company, and what they used."""

    id: str
    name: str | None
    features: dict[str, int]  # feature -> events
    last_seen: str | None

    @property
    def events(self) -> int:
        return sum(self.features.values())


@dataclass(frozen=True)
class UserFeature:
    """One feature as one user used it."""

    name: str
    events: int
    days: int
    first_seen: str
    last_seen: str


def profile(store: Store, kind: str, entity_id: str) -> Profile | None:
    """The company (``kind="company"``) or user with this id; None when no call names it."""
    column = "company_id" if kind == "company" else "user_id"
    [(count, first, last)] = store.query(
        f"SELECT COUNT(*), MIN(ts), MAX(ts) FROM calls WHERE status = 200 AND {column} = ?",
        (entity_id,),
    )
    if not count:
        return None
    attributes: dict[str, Any] = {}
    for (body,) in store.query(
        f"SELECT body FROM calls WHERE status = 200 AND method = ? AND {column} = ? ORDER BY id",
        (kind, entity_id),
    ):
        parsed = load_stored(body)
        values = parsed.get("attributes") if isinstance(parsed, dict) else None
        if isinstance(values, dict):
            attributes.update(values)
    return Profile(entity_id, attributes, int(count), first, last)


def names(store: Store, kind: str, ids: list[str]) -> dict[str, str]:
    """The latest ``name`` attribute of each of these companies or users that has one."""
    column = "company_id" if kind == "company" else "user_id"
    found: dict[str, str] = {}
    for start in range(0, len(ids), 500):  # SQLite limits the parameters of one statement
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for entity, name in store.query(
            f"SELECT {column}, json_extract(body, '$.attributes.name') FROM calls"
            f" WHERE status = 200 AND method = ? AND {column} IN ({marks}) AND json_valid(body)"
            " AND json_type(body, '$.attributes.name') IN ('text', 'integer', 'real')"
            " ORDER BY id",
            (kind, *chunk),
        ):
            found[entity] = str(name)
    return found


def members(store: Store, company_id: str) -> list[Member]:
    """The company's users (named by its company calls), most recently seen first."""
    ids = [
        user
        for (user,) in store.query(
            f"SELECT DISTINCT user_id FROM calls WHERE {_ACCEPTED_COMPANY}"
            " AND company_id = ? AND user_id IS NOT NULL",
            (company_id,),
        )
    ]
    features: dict[str, dict[str, int]] = defaultdict(dict)
    for user, event, count in store.query(
        "SELECT user_id, event, COUNT(*) FROM calls WHERE status = 200 AND method = 'event'"
        f" AND user_id IN (SELECT user_id FROM calls WHERE {_ACCEPTED_COMPANY}"
        " AND company_id = ?) GROUP BY user_id, event",
        (company_id,),
    ):
        features[user][event] = int(count)
    seen: dict[str, str] = dict(
        store.query(
            "SELECT user_id, MAX(ts) FROM calls WHERE status = 200 AND user_id IN"
            f" (SELECT user_id FROM calls WHERE {_ACCEPTED_COMPANY} AND company_id = ?)"
            " GROUP BY user_id",
            (company_id,),
        )
    )
    known = names(store, "user", ids)
    result = [
        Member(user, known.get(user), dict(sorted(features[user].items())), seen.get(user))
        for user in ids
    ]
    result.sort(key=lambda m: (m.last_seen or "", m.id), reverse=True)
    return result


def user_companies(store: Store, user_id: str) -> list[str]:
    """Ids of the companies whose company calls named this user."""
    return [
        company
        for (company,) in store.query(
            f"SELECT DISTINCT company_id FROM calls WHERE {_ACCEPTED_COMPANY} AND user_id = ?"
            " ORDER BY company_id",
            (user_id,),
        )
    ]


def user_features(store: Store, user_id: str) -> list[UserFeature]:
    """Every feature this user used, most events first."""
    rows = store.query(
        "SELECT event, COUNT(*), COUNT(DISTINCT substr(ts, 1, 10)), MIN(ts), MAX(ts) FROM calls"
        " WHERE status = 200 AND method = 'event' AND user_id = ? GROUP BY event"
        " ORDER BY COUNT(*) DESC, event",
        (user_id,),
    )
    return [
        UserFeature(name, int(n), int(days), first, last) for name, n, days, first, last in rows
    ]
