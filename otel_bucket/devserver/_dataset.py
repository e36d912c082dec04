"""A generated, realistic data set for the devserver: companies, users, features over 30 days.

For the page's tests and benchmark (``50`` companies and ``2,000`` users by default): company
sizes follow a long tail, features differ in reach and frequency, some companies never touch
some features, some stopped using a feature a while ago, a few users are in no company. The same
seed gives the same calls.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any, Final

from otel_bucket._mapping import utc_iso
from otel_bucket.devserver._store import Store

__all__ = ["FEATURES", "fill", "sample_calls"]

# name, share of companies that ever try it, chance an active user uses it on an active day
FEATURES: Final = (
    ("Viewed dashboard", 0.96, 0.8),
    ("Sent message", 0.8, 0.45),
    ("Exported CSV", 0.62, 0.2),
    ("Created report", 0.45, 0.15),
    ("Invited teammate", 0.35, 0.04),
    ("Connected Slack", 0.18, 0.03),
    ("Used AI summary", 0.1, 0.25),
)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_BRANDS: Final = _words(
    "Acme Globex Initech Umbrella Hooli Stark Wayne Wonka Cyberdyne Soylent Tyrell Vandelay "
    "Monarch Gringotts Oscorp Aperture Massive Dynamic Pied Piper Nakatomi Virtucon Weyland "
    "Zorg Prestige Duff Krusty Sirius Bluth Dunder"
)
_SUFFIXES: Final = _words("Corp Labs GmbH Inc Ltd AS SA Group Systems")
_FIRST: Final = _words(
    "Ada Alan Grace Linus Margaret Barbara Dennis Ken Edsger Donald Frances Katherine Tim "
    "Radia Hedy Guido Bjarne Yukihiro Sophie Vint Leslie John Anita Shafi Joan Niklaus"
)
_LAST: Final = _words(
    "Lovelace Turing Hopper Torvalds Hamilton Liskov Ritchie Thompson Dijkstra Knuth Allen "
    "Johnson Berners-Lee Perlman Lamarr Rossum Stroustrup Matsumoto Wilson Cerf Lamport"
)
_PLANS: Final = ("enterprise", "business", "team", "trial")


def _names(rng: random.Random, count: int) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        name = f"{rng.choice(_BRANDS)} {rng.choice(_SUFFIXES)}"
        if name not in names:
            names.append(name)
    return names


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def _sizes(rng: random.Random, companies: int, users: int) -> list[int]:
    weights = [1 / (rank + 1) ** 0.8 * rng.uniform(0.7, 1.3) for rank in range(companies)]
    scale = users / sum(weights)
    sizes = [max(1, int(w * scale)) for w in weights]
    sizes[0] += users - sum(sizes)  # rounding: the largest company takes the rest
    return sizes


def sample_calls(
    now: datetime,
    *,
    companies: int = 50,
    users: int = 2000,
    days: int = 30,
    unassociated: int = 20,
    seed: int = 7,
) -> list[tuple[str, dict[str, Any]]]:
    """``(method, payload)`` pairs: user and company calls, then events over ``days`` to ``now``.

    Args:
        now: the end of the period (aware); no event is later.
        companies: how many companies; every one has a ``name`` attribute.
        users: how many users in companies (each in one company).
        days: how far back events go.
        unassociated: users with events but no company call.
        seed: the same seed gives the same calls.
    """
    rng = random.Random(seed)
    start = now - timedelta(days=days)
    calls: list[tuple[str, dict[str, Any]]] = []
    user_number = 0
    for index, (name, size) in enumerate(
        zip(_names(rng, companies), _sizes(rng, companies, users), strict=True)
    ):
        company = f"c{index + 1:03d}"
        joined = start + timedelta(hours=rng.uniform(0, 24 * 3))
        attributes = {"name": name, "plan": rng.choice(_PLANS), "seats": size}
        stamp = utc_iso(joined)
        calls.append(
            ("company", {"companyId": company, "attributes": attributes, "timestamp": stamp})
        )
        engagement = rng.choice((0.0, 0.4, 0.7, 1.0, 1.0, 1.2)) if index else 1.0
        # Lists, not sets: iteration order must not depend on string hashing, or the same seed
        # would give other calls in another process.
        tried = [f for f, reach, _ in FEATURES if rng.random() < reach * min(1.0, engagement + 0.2)]
        # Some others were tried once, by one user, and never again.
        once = [f for f, _, _ in FEATURES if f not in tried and engagement and rng.random() < 0.12]
        # Some companies stopped using a feature some days ago: adopted, not retained.
        stopped = {f: now - timedelta(days=rng.uniform(8, 20)) for f in tried if rng.random() < 0.2}
        for _ in range(size):
            user_number += 1
            user = f"u{user_number:05d}"
            person = {"name": _person(rng)}
            calls.append(("user", {"userId": user, "attributes": person, "timestamp": stamp}))
            calls.append(("company", {"companyId": company, "userId": user, "timestamp": stamp}))
            active = min(0.9, rng.betavariate(1.2, 4.0) * engagement)
            calls += _events(rng, user, tried, stopped, active, now, days)
            if once:
                moment = utc_iso(now - timedelta(days=rng.uniform(0, days)))
                calls.append(("event", {"event": once.pop(), "userId": user, "timestamp": moment}))
    for n in range(unassociated):
        user = f"solo-{n + 1:02d}"
        person = {"name": _person(rng)}
        calls.append(("user", {"userId": user, "attributes": person, "timestamp": utc_iso(start)}))
        calls += _events(rng, user, [FEATURES[0][0]], {}, 0.3, now, days)
    calls.sort(key=lambda call: call[1]["timestamp"])  # as they would arrive
    return calls


def _events(
    rng: random.Random,
    user: str,
    tried: list[str],
    stopped: dict[str, datetime],
    active: float,
    now: datetime,
    days: int,
) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    frequency = {name: chance for name, _, chance in FEATURES if name in tried}
    for back in range(days):
        if rng.random() >= active:
            continue
        day = now - timedelta(days=back)
        for feature, chance in frequency.items():
            if rng.random() >= chance:
                continue
            for _ in range(1 + int(rng.expovariate(0.8))):
                moment = day - timedelta(seconds=rng.uniform(0, 86400))
                if feature in stopped and moment > stopped[feature]:
                    continue
                payload = {"event": feature, "userId": user, "timestamp": utc_iso(moment)}
                events.append(("event", payload))
    return events


def fill(store: Store, now: datetime, **options: Any) -> int:
    """Store `sample_calls` (one transaction); returns how many calls were stored."""
    return store.add_accepted("dev", sample_calls(now, **options))
