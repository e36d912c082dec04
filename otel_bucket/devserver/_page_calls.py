"""The calls page: every answered call, newest first, paginated and filterable.

Filters are query parameters (``method``, ``user``, ``company``, ``event``, ``status``), so a
filtered view is a link: the company and user pages link here. Users and companies are shown by
name beside their id; a user or event call, which names no company, shows its user's companies.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

from otel_bucket.devserver._entities import companies_of, names
from otel_bucket.devserver._html import (
    Query,
    count,
    e,
    href,
    layout,
    link,
    named,
    pager,
    table,
    when,
)
from otel_bucket.devserver._store import Call, CallFilter, Store

__all__ = ["call_filter", "call_rows", "calls_table", "render_calls"]

PER_PAGE: Final = 50
_PREVIEW: Final = 90
_STATUSES: Final = (
    ("", "any"),
    ("accepted", "accepted (200)"),
    ("rejected", "rejected or failed"),
    ("400", "400"),
    ("404", "404"),
    ("500", "500"),
)
_METHODS: Final = ("", "user", "company", "event")
_HEADERS: Final = ("received", "status", "method", "user", "company", "event", "reasons", "body")


def call_filter(query: Query) -> CallFilter:
    """The `CallFilter` a query string asks for (unknown values match nothing, never fail)."""
    return CallFilter(
        method=query.text("method"),
        user_id=query.raw("user"),
        company_id=query.raw("company"),
        event=query.raw("event"),
        status=query.text("status"),
    )


def _body(call: Call) -> str:
    text = call.body if isinstance(call.body, str) else json.dumps(call.body, ensure_ascii=False)
    preview = text if len(text) <= _PREVIEW else text[:_PREVIEW] + "…"
    pretty = text
    if not isinstance(call.body, str):
        pretty = json.dumps(call.body, ensure_ascii=False, indent=2)
    return f"<details><summary>{e(preview)}</summary><pre>{e(pretty)}</pre></details>"


def _apart(first: str, second: str) -> bool:
    """Whether two of our ISO times are more than a minute apart (worth showing both)."""
    try:
        a, b = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (first, second))
    except ValueError:
        return first != second
    return abs((a - b).total_seconds()) > 60


def call_rows(store: Store, calls: list[Call], now: datetime) -> list[str]:
    """One table row per call; every id links to its page, by name when it has one."""
    users = {c.user_id for c in calls if c.user_id}
    of_user = companies_of(store, {c.user_id for c in calls if c.user_id and not c.company_id})
    companies = {c.company_id for c in calls if c.company_id}
    companies.update(company for found in of_user.values() for company in found)
    user_names, company_names = names(store, "user", users), names(store, "company", companies)
    rows = []
    for call in calls:
        status = "ok" if call.accepted else "bad"
        event = link(call.event, "/feature", {"name": call.event}) if call.event else ""
        reasons = "<br>".join(e(reason) for reason in call.reasons)
        stamp = ""
        if _apart(call.timestamp, call.received_at):
            stamp = f"<br><small>timestamp: {when(call.timestamp, now)}</small>"
        user = named("/user", call.user_id, user_names.get(call.user_id)) if call.user_id else ""
        if call.company_id:
            company = named("/company", call.company_id, company_names.get(call.company_id))
        else:
            # Events name only their user: show the companies the user belongs to, marked so.
            company = " ".join(
                named("/company", c, company_names.get(c), "muted")
                for c in of_user.get(call.user_id or "", [])
            )
        rows.append(
            "<tr>"
            f"<td>{when(call.received_at, now)}{stamp}</td>"
            f'<td class="{status}">{call.status}</td><td>{e(call.method)}</td>'
            f"<td>{user}</td><td>{company}</td>"
            f'<td>{event}</td><td class="bad">{reasons}</td><td>{_body(call)}</td>'
            "</tr>"
        )
    return rows


def calls_table(
    store: Store, calls: list[Call], now: datetime, empty: str, name: str = "calls"
) -> str:
    headers = [f"<th>{e(h)}</th>" for h in _HEADERS]
    headers[4] = (
        '<th title="an event names only its user: grey companies are the user\'s">company</th>'
    )
    return table(headers, call_rows(store, calls, now), empty, name=name)


def _select(name: str, current: str | None, options: tuple[tuple[str, str], ...]) -> str:
    items = "".join(
        f'<option value="{e(value)}"{" selected" if value == (current or "") else ""}>'
        f"{e(text)}</option>"
        for value, text in options
    )
    return f'<label>{e(name)}<select name="{e(name)}">{items}</select></label>'


def _form(where: CallFilter) -> str:
    methods = tuple((m, m or "any") for m in _METHODS)
    fields = [
        _select("method", where.method, methods),
        *(
            f'<label>{name}<input name="{name}" value="{e(value or "")}" size="14"></label>'
            for name, value in (
                ("user", where.user_id),
                ("company", where.company_id),
                ("event", where.event),
            )
        ),
        _select("status", where.status, _STATUSES),
        '<button type="submit">filter</button>',
        f'<a href="{href("/calls")}">clear</a>',
    ]
    return f'<form class="filters" method="get" action="/calls">{"".join(fields)}</form>'


def render_calls(store: Store, query: Query, now: datetime, refresh: int | None) -> str:
    """The whole calls page for ``query``."""
    where = call_filter(query)
    per_page = query.number("per_page", PER_PAGE, 5, 500)
    total = store.count(where=where)
    pages = max(1, -(-total // per_page))
    page = min(query.number("page", 1, 1, 1_000_000), pages)
    calls = store.calls(accepted=None, limit=per_page, offset=(page - 1) * per_page, where=where)
    params: dict[str, Any] = {
        "method": where.method,
        "user": where.user_id,
        "company": where.company_id,
        "event": where.event,
        "status": where.status,
        "per_page": None if per_page == PER_PAGE else per_page,
    }
    filtered = any(v for k, v in params.items() if k != "per_page")
    others = any(v for k, v in params.items() if k not in ("per_page", "status"))
    title = "Rejections" if where.status == "rejected" and not others else "Calls"
    summary = count(total, "call")
    if filtered:
        summary += " matches these filters" if total == 1 else " match these filters"
    empty = "No call matches these filters." if filtered else "No calls yet."
    active = "/calls?status=rejected" if where.status == "rejected" else "/calls"
    body = (
        f"<h1>{e(title)}</h1>"
        "<p>Every call the devserver answered, newest first. Times are relative; hover for the "
        "exact time. Click a body to open it.</p>"
        f"{_form(where)}<p>{summary}.</p>"
        f"{pager('/calls', params, page, per_page, total)}"
        f"{calls_table(store, calls, now, empty)}"
        f"{pager('/calls', params, page, per_page, total)}"
    )
    return layout(title, body, active=active, refresh=refresh)
