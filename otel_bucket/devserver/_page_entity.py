"""The company page and the user page: attributes, who, which features, when."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

from otel_bucket.devserver._analytics import Overview
from otel_bucket.devserver._entities import (
    Profile,
    members,
    names,
    profile,
    user_companies,
    user_features,
)
from otel_bucket.devserver._html import (
    Query,
    e,
    href,
    layout,
    link,
    number,
    pager,
    percent,
    table,
    when,
)
from otel_bucket.devserver._page_calls import calls_table
from otel_bucket.devserver._page_matrix import STAGE_MARKS
from otel_bucket.devserver._store import CallFilter, Store

__all__ = ["render_company", "render_missing", "render_user"]

USERS_PER_PAGE: Final = 50


def _attributes(found: Profile) -> str:
    rows = [
        f"<tr><th>{e(key)}</th><td><code>{e(json.dumps(v, ensure_ascii=False))}</code></td></tr>"
        for key, v in sorted(found.attributes.items())
    ]
    return table(
        ["<th>attribute</th>", "<th>value</th>"], rows, "No attributes sent.", name="attributes"
    )


def _seen(found: Profile, now: datetime, what: str) -> str:
    return (
        f"<p>{number(found.calls)} accepted calls name this {what}: first "
        f"{when(found.first_seen, now)}, last {when(found.last_seen, now)}.</p>"
    )


def render_missing(kind: str, entity_id: str | None) -> str:
    """The page for an id no call named (answered with 404)."""
    text = f"No accepted call names the {kind} {entity_id!r} yet." if entity_id else ""
    body = (
        f"<h1>Unknown {e(kind)}</h1><p>{e(text or f'Give the {kind} id as ?id=...')}</p>"
        f'<p><a href="/">Back to the overview</a></p>'
    )
    return layout(f"Unknown {kind}", body, active="")


def render_company(
    store: Store, overview: Overview, company_id: str, query: Query, refresh: int | None
) -> str | None:
    """The company page, or None when no call names this company."""
    found = profile(store, "company", company_id)
    if found is None:
        return None
    now = overview.now
    label = overview.label(company_id)
    company = overview.companies.get(company_id)
    known = company.users if company else 0
    feature_rows = []
    for feature in overview.features:
        cell = feature.cells.get(company_id)
        name = link(feature.name, "/calls", {"event": feature.name, "company": company_id})
        if cell is None:
            feature_rows.append(
                f'<tr><th>{name}</th><td class="zero" colspan="6">not used by any of its '
                f"{number(known)} users</td></tr>"
            )
            continue
        feature_rows.append(
            f"<tr><th>{name}</th>"
            f'<td class="n">{number(cell.users)} of {number(known)} ({percent(cell.share)})</td>'
            f'<td class="n">{number(cell.events)}</td><td class="n">{cell.days}</td>'
            f"<td>{when(cell.first_seen, now)}</td><td>{when(cell.last_seen, now)}</td>"
            f'<td class="stage-{cell.stage}">{STAGE_MARKS[cell.stage]} {cell.stage}</td></tr>'
        )
    feature_headers = [
        f"<th{' class=n' if h in ('users', 'events', 'days') else ''}>{h}</th>"
        for h in ("feature", "users", "events", "days", "first seen", "last seen", "stage")
    ]
    people = members(store, company_id)
    page = query.number("page", 1, 1, max(1, -(-len(people) // USERS_PER_PAGE)))
    shown = people[(page - 1) * USERS_PER_PAGE : page * USERS_PER_PAGE]
    user_rows = []
    for member in shown:
        used = ", ".join(f"{e(f)} ({number(n)})" for f, n in member.features.items())
        second = f"<br><small>{e(member.id)}</small>" if member.name else ""
        user_rows.append(
            f"<tr><th>{link(member.name or member.id, '/user', {'id': member.id})}{second}</th>"
            f"<td>{used or '<span class=muted>no events</span>'}</td>"
            f'<td class="n">{number(member.events)}</td><td>{when(member.last_seen, now)}</td></tr>'
        )
    user_headers = ["<th>user</th>", "<th>features (events)</th>", "<th class=n>events</th>"]
    user_headers.append("<th>last seen</th>")
    features = table(feature_headers, feature_rows, "No event calls yet.", name="features")
    users = table(user_headers, user_rows, "No user is associated yet.", name="users")
    second = f" <small>{e(company_id)}</small>" if label != company_id else ""
    calls = href("/calls", {"company": company_id})
    body = (
        f"<h1>{e(label)}{second}</h1>"
        f"{_seen(found, now, 'company')}"
        f'<p>{number(known)} known users. <a href="{calls}">Calls of this company and its '
        "users</a>.</p>"
        f"<h2>Attributes</h2>{_attributes(found)}"
        f"<h2>Features</h2>{features}<h2>Users</h2>{users}"
        f"{pager('/company', {'id': company_id}, page, USERS_PER_PAGE, len(people))}"
    )
    return layout(label, body, active="", refresh=refresh)


def render_user(store: Store, now: datetime, user_id: str, refresh: int | None) -> str | None:
    """The user page, or None when no call names this user."""
    found = profile(store, "user", user_id)
    if found is None:
        return None
    name = found.attributes.get("name")
    label = str(name) if isinstance(name, str | int | float) and str(name) else user_id
    companies = user_companies(store, user_id)
    labels = names(store, "company", companies)
    company_links = ", ".join(
        link(labels.get(c, c), "/company", {"id": c}, title=f"company id {c}") for c in companies
    )
    rows = [
        f"<tr><th>{link(f.name, '/calls', {'event': f.name, 'user': user_id})}</th>"
        f'<td class="n">{number(f.events)}</td><td class="n">{f.days}</td>'
        f"<td>{when(f.first_seen, now)}</td><td>{when(f.last_seen, now)}</td></tr>"
        for f in user_features(store, user_id)
    ]
    headers: list[Any] = ["<th>feature</th>", "<th class=n>events</th>", "<th class=n>days</th>"]
    headers += ["<th>first seen</th>", "<th>last seen</th>"]
    recent = store.calls(accepted=None, limit=10, where=CallFilter(user_id=user_id))
    second = f" <small>{e(user_id)}</small>" if label != user_id else ""
    in_companies = (
        f"<p>Member of {company_links}.</p>"
        if companies
        else '<p class="bad">In no company: no company call named this user, so Bucket would '
        "leave their events out of most results.</p>"
    )
    all_calls = href("/calls", {"user": user_id})
    features = table(headers, rows, "No event calls from this user yet.", name="features")
    body = (
        f"<h1>{e(label)}{second}</h1>{_seen(found, now, 'user')}{in_companies}"
        f"<h2>Attributes</h2>{_attributes(found)}"
        f"<h2>Features</h2>{features}"
        f'<h2>Latest calls</h2><p><a href="{all_calls}">All calls of this user</a></p>'
        f"{calls_table(recent, now, 'No calls.')}"
    )
    return layout(label, body, active="", refresh=refresh)
