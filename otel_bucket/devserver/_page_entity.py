"""The company page and the user page: attributes, who, which features, at which stage, when."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

from otel_bucket.devserver._analytics import cells, known_users
from otel_bucket.devserver._chart import weekly_chart
from otel_bucket.devserver._entities import Profile, companies_of, members, names, profile, uses
from otel_bucket.devserver._html import (
    Query,
    e,
    href,
    layout,
    link,
    named,
    number,
    pager,
    percent,
    table,
    when,
)
from otel_bucket.devserver._page import weeks_choice
from otel_bucket.devserver._page_calls import calls_table
from otel_bucket.devserver._page_matrix import idle_since, stage_mark
from otel_bucket.devserver._stages import MARKS, STAGES
from otel_bucket.devserver._store import CallFilter, Store
from otel_bucket.devserver._trends import Series, weekly_by, weekly_in, weeks_to, window

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


def _title(found: Profile) -> tuple[str, str]:
    """The page title (name, else id) and the heading, with the id beside a name."""
    label = found.name or found.id
    second = f" <small>{e(found.id)}</small>" if label != found.id else ""
    return label, f"<h1>{e(label)}{second}</h1>"


def render_missing(kind: str, entity_id: str | None) -> str:
    """The page for an id no call named (answered with 404)."""
    text = f"No accepted call names the {kind} {entity_id!r} yet." if entity_id else ""
    if kind == "feature" and entity_id:
        text = f"No accepted event call names the feature {entity_id!r} yet."
    key = "name" if kind == "feature" else "id"
    body = (
        f"<h1>Unknown {e(kind)}</h1><p>{e(text or f'Give the {kind} as ?{key}=...')}</p>"
        f'<p><a href="/">Back to the overview</a></p>'
    )
    return layout(f"Unknown {kind}", body, active="")


def _features(store: Store, now: datetime, company_id: str, known: int, weeks: int) -> str:
    mondays = weeks_to(now, weeks)
    used = {feature: cell for (feature, _), cell in cells(store, now, company=company_id).items()}
    trend = weekly_in(store, company_id, mondays[0])
    peak = max((Series.of(trend.get(f), mondays).peak for f in used), default=0)
    rows = []
    for (feature,) in store.query("SELECT DISTINCT event FROM uses ORDER BY 1"):
        cell = used.get(feature)
        name = link(feature, "/feature", {"name": feature, "company": company_id})
        if cell is None:
            rows.append(
                f'<tr><th>{name}</th><td class="zero" colspan="8">not used by any of its '
                f"{number(known)} users</td></tr>"
            )
            continue
        resting = cell.last_seen < idle_since(now)
        chart = weekly_chart(Series.of(trend.get(feature), mondays), peak, "active users")
        rows.append(
            f"<tr><th>{name}</th>"
            f'<td class="n">{number(cell.users)} of {number(known)} ({percent(cell.share)})</td>'
            f"<td>{stage_mark(cell.stage)}</td>"
            + "".join(f'<td class="n">{number(n)}</td>' for n in reversed(cell.at_stage))
            + f'<td class="n">{number(cell.events)}</td><td>{when(cell.first_seen, now)}</td>'
            f"<td{' class=idle-note' if resting else ''}>{when(cell.last_seen, now)}</td>"
            f"<td>{chart}</td></tr>"
        )
    headers = ["<th>feature</th>", "<th class=n>users</th>", "<th>stage</th>"]
    headers += [f'<th class="n">users {MARKS[s]} {s}</th>' for s in reversed(STAGES)]
    headers += ["<th class=n>events</th>", "<th>first use</th>", "<th>last use</th>"]
    headers.append(f"<th>active users per week <small>(full height = {number(peak)})</small></th>")
    return table(headers, rows, "No event calls yet.", name="features")


def render_company(
    store: Store, now: datetime, company_id: str, query: Query, refresh: int | None
) -> str | None:
    """The company page, or None when no call names this company."""
    found = profile(store, "company", company_id)
    if found is None:
        return None
    label, heading = _title(found)
    known = known_users(store).get(company_id, 0)
    weeks = window(query.number("weeks", 0, 0, 52))
    people = members(store, company_id, now)
    page = query.number("page", 1, 1, max(1, -(-len(people) // USERS_PER_PAGE)))
    user_rows = []
    for member in people[(page - 1) * USERS_PER_PAGE : page * USERS_PER_PAGE]:
        used = ", ".join(
            f'<span class="stage-{u.stage}" title="{u.stage}">{MARKS[u.stage]}</span> '
            f"{e(u.feature)} ({number(u.events)})"
            for u in member.uses
        )
        user_rows.append(
            f"<tr><th>{named('/user', member.id, member.name)}</th>"
            f"<td>{used or '<span class=muted>no events</span>'}</td>"
            f'<td class="n">{number(member.events)}</td><td>{when(member.last_seen, now)}</td></tr>'
        )
    user_headers = ["<th>user</th>", "<th>features (stage, events)</th>", "<th class=n>events</th>"]
    user_headers.append("<th>last seen</th>")
    users = table(user_headers, user_rows, "No user is associated yet.", name="users")
    calls = href("/calls", {"company": company_id})
    body = (
        f"{heading}{_seen(found, now, 'company')}"
        f'<p>{number(known)} known users. <a href="{calls}">Calls of this company and its '
        "users</a>.</p>"
        f"<h2>Attributes</h2>{_attributes(found)}"
        f"<h2>Features</h2>{weeks_choice('/company', {'id': company_id}, weeks)}"
        f"{_features(store, now, company_id, known, weeks)}<h2>Users</h2>{users}"
        f"{pager('/company', {'id': company_id}, page, USERS_PER_PAGE, len(people))}"
    )
    return layout(label, body, active="", refresh=refresh)


def render_user(store: Store, now: datetime, user_id: str, refresh: int | None) -> str | None:
    """The user page, or None when no call names this user."""
    found = profile(store, "user", user_id)
    if found is None:
        return None
    label, heading = _title(found)
    companies = companies_of(store, [user_id]).get(user_id, [])
    labels = names(store, "company", companies)
    company_links = ", ".join(
        link(labels.get(c, c), "/company", {"id": c}, title=f"company id {c}") for c in companies
    )
    mondays = weeks_to(now, window(None))
    rows: list[str] = []
    for use in uses(store, now, [user_id]):
        active = weekly_by(store, use.feature, mondays[0], users=[user_id]).get(user_id)
        weeks = Series.of(active, mondays)
        busy = sum(1 for value in weeks.values if value)
        rows.append(
            f"<tr><th>{link(use.feature, '/feature', {'name': use.feature})}</th>"
            f"<td>{stage_mark(use.stage, use.dropped)}</td>"
            f'<td class="n">{number(use.events)}</td><td class="n">{use.days}</td>'
            f"<td>{when(use.first_seen, now)}</td><td>{when(use.last_seen, now)}</td>"
            f"<td>{weekly_chart(weeks, 1, 'active', width=78, height=14)} "
            f"<small>{busy} of {len(mondays)}</small></td></tr>"
        )
    headers: list[Any] = ["<th>feature</th>", "<th>stage</th>", "<th class=n>events</th>"]
    headers += ["<th class=n>days</th>", "<th>first use</th>", "<th>last use</th>"]
    headers.append(f"<th>weeks active <small>(last {len(mondays)})</small></th>")
    recent = store.calls(accepted=None, limit=10, where=CallFilter(user_id=user_id))
    in_companies = (
        f"<p>Member of {company_links}.</p>"
        if companies
        else '<p class="bad">In no company: no company call named this user, so Bucket would '
        "leave their events out of most results.</p>"
    )
    all_calls = href("/calls", {"user": user_id})
    features = table(headers, rows, "No event calls from this user yet.", name="features")
    body = (
        f"{heading}{_seen(found, now, 'user')}{in_companies}"
        f"<h2>Attributes</h2>{_attributes(found)}"
        f"<h2>Features</h2>{features}"
        f'<h2>Latest calls</h2><p><a href="{all_calls}">All calls of this user</a></p>'
        f"{calls_table(store, recent, now, 'No calls.')}"
    )
    return layout(label, body, active="", refresh=refresh)
