"""What each GET path of the devserver answers: the pages and ``/api/calls``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from otel_bucket.devserver._app import TrackingApp
from otel_bucket.devserver._html import Query
from otel_bucket.devserver._masking import mask_path
from otel_bucket.devserver._page import render_page
from otel_bucket.devserver._page_calls import call_filter, render_calls
from otel_bucket.devserver._page_entity import render_company, render_missing, render_user
from otel_bucket.devserver._page_feature import render_feature
from otel_bucket.devserver._page_trends import render_trends
from otel_bucket.devserver._stages import DEFINITIONS
from otel_bucket.devserver._trends import window

__all__ = ["PAGES", "Reply", "answer_get"]

HTML: Final = "text/html; charset=utf-8"
JSON: Final = "application/json"
PAGES: Final = frozenset({"/", "/calls", "/company", "/user", "/feature", "/trends", "/api/calls"})


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes


def _json(status: int, data: Any) -> Reply:
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    # Stored data is clean already; never let a stray surrogate cut the answer short.
    return Reply(status, JSON, text.encode("utf-8", "backslashreplace"))


def _html(status: int, page: str) -> Reply:
    return Reply(status, HTML, page.encode("utf-8", "backslashreplace"))


def _api(app: TrackingApp, query: Query) -> Reply:
    limit = query.number("limit", 50, 1, 1000)
    offset = query.number("offset", 0, 0, 10**9)
    where = call_filter(query)
    overview = app.overview(window(query.number("weeks", 0, 0, 52)))
    data = app.snapshot(limit, offset=offset, where=where, overview=overview).to_json()
    data.update(overview.to_json())
    data["days"], daily = overview.daily(app.store)
    for feature in data["features"]:
        feature["daily"] = daily[feature["feature"]]
    data["offset"] = offset
    data["totals"] = {
        "calls": app.store.count(accepted=True, where=where),
        "rejections": app.store.count(accepted=False, where=where),
    }
    data["definitions"] = dict(DEFINITIONS)
    return _json(200, data)


def answer_get(app: TrackingApp, path: str, query_string: str, url: str) -> Reply:
    """The reply to ``GET path?query_string``; ``url`` is the server's own base URL."""
    query = Query(query_string)
    refresh = query.number("refresh", 0, 0, 3600) or None
    if path == "/api/calls":
        return _api(app, query)
    if path == "/":
        page = render_page(
            app.store,
            app.overview(window(query.number("weeks", 0, 0, 52))),
            query,
            url=url,
            tracking_key=app.tracking_key,
            refresh=refresh,
        )
        return _html(200, page)
    if path == "/calls":
        return _html(200, render_calls(app.store, query, app.now(), refresh))
    if path == "/trends":
        return _html(200, render_trends(app.store, app.now(), query, refresh))
    if path in ("/company", "/user", "/feature"):
        kind = path[1:]
        entity = query.raw("name" if kind == "feature" else "id")
        found = None
        if entity is not None:
            if kind == "company":
                found = render_company(app.store, app.now(), entity, query, refresh)
            elif kind == "feature":
                found = render_feature(app.store, app.now(), entity, query, refresh)
            else:
                found = render_user(app.store, app.now(), entity, refresh)
        return _html(200, found) if found else _html(404, render_missing(kind, entity))
    reason = f"no such page {mask_path(path)!r}: try / or /api/calls"
    return _json(404, {"success": False, "errors": [reason]})
