"""A generated, realistic data set for the devserver: companies, users, features over 30 days.

For the page's tests and benchmark (``50`` companies and ``2,000`` users by default): company
sizes follow a long tail, features differ in reach and frequency, some companies never touch
some features, some stopped using a feature a while ago, a few users are in no company. The same
seed gives the same calls. Options make it larger: up to 20 features, names that are long or
not in Latin script, users who belong to two companies.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any, Final

from otel_bucket.devserver._store import Store
from otel_bucket.ground._call import utc_iso

__all__ = ["FEATURES", "MORE_FEATURES", "fill", "sample_calls"]

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
# More features for `sample_calls(features=...)`: long names, and names in other scripts.
MORE_FEATURES: Final = (
    ("Scheduled a recurring export of the quarterly revenue report to S3", 0.3, 0.05),
    ("レポートを共有しました", 0.25, 0.1),
    ("Отправил приглашение в рабочее пространство", 0.2, 0.05),
    ("Changed notification settings", 0.5, 0.02),
    ("導入了單一登入", 0.08, 0.02),
    ("Opened billing", 0.4, 0.03),
    ("Filtered by custom field", 0.35, 0.2),
    ("Created dashboard from template", 0.3, 0.05),
    ("تصدير إلى جدول البيانات", 0.15, 0.08),
    ("Archived project", 0.25, 0.02),
    ("Used keyboard shortcuts", 0.2, 0.3),
    ("Connected GitHub", 0.12, 0.02),
    ("Set up two-factor authentication", 0.45, 0.01),
)
_LONG: Final = (
    "Kabushiki-gaisha Ōkami Heavy Industries International Holdings and Logistics Group",
    "株式会社グローバル・テクノロジー・ソリューションズ・ホールディングス",
    "Общество с ограниченной ответственностью «Северная Звезда Технологии»",  # noqa: RUF001
    "Verein zur Förderung der Donaudampfschifffahrtsgesellschaftskapitänswitwen e.V.",
    "شركة الحلول الرقمية المتقدمة للتجارة والاستثمار",
    "AVeryLongCompanyNameWithoutAnySpacesThatCannotBreakAnywhereAtAllInc",
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
    features: int = len(FEATURES),
    long_names: bool = False,
    shared: int = 0,
) -> list[tuple[str, dict[str, Any]]]:
    """``(method, payload)`` pairs: user and company calls, then events over ``days`` to ``now``.

    Args:
        now: the end of the period (aware); no event is later.
        companies: how many companies; every one has a ``name`` attribute.
        users: how many users in companies (each in one company).
        days: how far back events go.
        unassociated: users with events but no company call.
        seed: the same seed gives the same calls.
        features: how many features (7 to 20); beyond 7, from `MORE_FEATURES`.
        long_names: some companies get long names, and names in other scripts.
        shared: how many users are associated with a second company as well.
    """
    rng = random.Random(seed)
    catalog = (FEATURES + MORE_FEATURES)[: max(len(FEATURES), features)]
    start = now - timedelta(days=days)
    calls: list[tuple[str, dict[str, Any]]] = []
    user_number = 0
    company_names = _names(rng, companies)
    if long_names:
        for n, name in enumerate(_LONG):
            company_names[min(companies - 1, 1 + n * 3)] = name
    for index, (name, size) in enumerate(
        zip(company_names, _sizes(rng, companies, users), strict=True)
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
        tried = [f for f, reach, _ in catalog if rng.random() < reach * min(1.0, engagement + 0.2)]
        # Some others were tried once, by one user, and never again.
        once = [f for f, _, _ in catalog if f not in tried and engagement and rng.random() < 0.12]
        # Some companies stopped using a feature some days ago: adopted, not retained.
        stopped = {f: now - timedelta(days=rng.uniform(8, 20)) for f in tried if rng.random() < 0.2}
        for _ in range(size):
            user_number += 1
            user = f"u{user_number:05d}"
            person = {"name": _person(rng)}
            calls.append(("user", {"userId": user, "attributes": person, "timestamp": stamp}))
            calls.append(("company", {"companyId": company, "userId": user, "timestamp": stamp}))
            active = min(0.9, rng.betavariate(1.2, 4.0) * engagement)
            calls += _events(rng, catalog, user, tried, stopped, active, now, days)
            if once:
                moment = utc_iso(now - timedelta(days=rng.uniform(0, days)))
                calls.append(("event", {"event": once.pop(), "userId": user, "timestamp": moment}))
    for n in range(unassociated):
        user = f"solo-{n + 1:02d}"
        person = {"name": _person(rng)}
        calls.append(("user", {"userId": user, "attributes": person, "timestamp": utc_iso(start)}))
        calls += _events(rng, catalog, user, [FEATURES[0][0]], {}, 0.3, now, days)
    # Some users also work for another company (a consultant, an agency).
    for n in range(shared):
        user = f"u{n * 7 % max(1, user_number) + 1:05d}"
        other = f"c{companies - n % companies:03d}"
        stamp = utc_iso(start + timedelta(days=1))
        calls.append(("company", {"companyId": other, "userId": user, "timestamp": stamp}))
    calls.sort(key=lambda call: call[1]["timestamp"])  # as they would arrive
    return calls


def _events(
    rng: random.Random,
    catalog: tuple[tuple[str, float, float], ...],
    user: str,
    tried: list[str],
    stopped: dict[str, datetime],
    active: float,
    now: datetime,
    days: int,
) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    frequency = {name: chance for name, _, chance in catalog if name in tried}
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
