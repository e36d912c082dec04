"""The devserver's overview page: which features are used, by which companies, and how much.

Server-rendered HTML with inline CSS and SVG: no script, nothing fetched, works offline.
"""

from __future__ import annotations

from typing import Final

from otel_bucket.devserver._analytics import Feature, Overview
from otel_bucket.devserver._chart import funnel_chart, weekly_chart
from otel_bucket.devserver._html import (
    Query,
    choices,
    e,
    href,
    layout,
    link,
    number,
    when,
)
from otel_bucket.devserver._html import table as html_table
from otel_bucket.devserver._page_calls import calls_table
from otel_bucket.devserver._page_matrix import definitions, render_matrix
from otel_bucket.devserver._stages import DEFINITIONS, STAGES
from otel_bucket.devserver._store import Store
from otel_bucket.devserver._trends import WINDOWS

__all__ = ["DEFINITIONS", "render_page", "weeks_choice"]

_RECENT: Final = 10


def weeks_choice(path: str, params: dict[str, object], weeks: int) -> str:
    """The 4 / 12 / 26 weeks links of a page with trends."""
    options = [(n, f"{n} weeks") for n in WINDOWS]
    return f"<p>Window: {choices(path, params, 'weeks', options, weeks)}</p>"


def _feature_row(feature: Feature, overview: Overview, companies: int, peak: int) -> str:
    now = overview.now
    page = href("/feature", {"name": feature.name})
    dropped = href("/feature", {"name": feature.name, "stage": "dropped"})
    funnel, users = feature.funnel, feature.users_funnel
    numbers = (feature.events, funnel.tried, funnel.adopted, funnel.retained)
    cells = "".join(f'<td class="n">{number(n)}</td>' for n in numbers)
    people = "".join(f'<td class="n">{number(n)}</td>' for n in (users.adopted, users.retained))
    chart = weekly_chart(feature.active_users, peak, "active users")
    return (
        f'<tr><th><a href="{page}" title="its companies and users">{e(feature.name)}</a></th>'
        f"{cells}<td>{funnel_chart(funnel.tried, funnel.adopted, funnel.retained, companies)}</td>"
        f'<td class="n">{number(users.tried)}</td>{people}'
        f'<td class="n"><a href="{dropped}#users">{number(feature.dropped)}</a></td>'
        f"<td>{when(feature.last_seen, now)}</td><td>{chart}</td></tr>"
    )


def _features(overview: Overview, weeks: int) -> str:
    companies = sum(1 for c in overview.companies if c)
    peak = max((f.active_users.peak for f in overview.features), default=0)
    titles = {name: text for name, text in DEFINITIONS}
    stage_heads = [f'<th class="n" title="{e(titles[s])}">{s}</th>' for s in STAGES]
    headers = [
        "<th>feature</th>",
        '<th class="n">events</th>',
        *stage_heads,
        "<th>funnel</th>",
        *stage_heads,
        f'<th class="n" title="{e(titles["dropped"])}">dropped</th>',
        "<th>last seen</th>",
        "<th>active users per week</th>",
    ]
    group = (
        '<th colspan="2"></th>'
        f'<th colspan="4" title="{e(titles["company"])}">companies '
        f"<small>(of {number(companies)})</small></th>"
        f'<th colspan="4">users <small>(of {number(overview.users)})</small></th>'
        f'<th colspan="2"><small>last {weeks} weeks, this week (still running) on the right;'
        f" one scale for all: full height = {number(peak)} users</small></th>"
    )
    rows = [_feature_row(f, overview, companies, peak) for f in overview.features]
    empty = "No event calls yet: a feature appears here once it is used."
    return html_table(headers, rows, empty, name="feature-table", group=group) + definitions()


def render_page(
    store: Store,
    overview: Overview,
    query: Query,
    *,
    url: str,
    tracking_key: str | None = None,
    refresh: int | None = None,
) -> str:
    """The overview page; ``refresh`` (seconds) reloads it without JavaScript."""
    counts = store.counts()
    companies = sum(1 for c in overview.companies if c)
    events = sum(f.events for f in overview.features)
    weeks = len(overview.weeks)
    rejected = link(
        f"{number(counts['rejected'])} rejected or failed", "/calls", {"status": "rejected"}
    )
    now = overview.now
    recent = store.calls(accepted=None, limit=_RECENT)
    rejections = store.calls(accepted=False, limit=5)
    body = f"""<h1>Who uses which feature</h1>
<p>{number(companies)} companies, {number(overview.users)} users, {number(events)} events of
{len(overview.features)} features. Accepted calls: {number(counts["user"])} user,
{number(counts["company"])} company, {number(counts["event"])} event; {rejected}.</p>
<p class="muted">Point an app here with
<code>BUCKET_ENDPOINT={e(url)} BUCKET_TRACKING_KEY={e(tracking_key or "dev")}</code>.
<a href="/">Reload</a> · <a href="/?refresh=2">reload every 2 s</a> ·
as of <time datetime="{e(now.isoformat())}">{e(now.strftime("%Y-%m-%d %H:%M:%S UTC"))}</time></p>
<h2 id="features">Features</h2>
{weeks_choice("/", {}, weeks)}
{_features(overview, weeks)}
<p>{link("Trends: active users and companies per week →", "/trends", {"weeks": weeks})}</p>
<h2 id="companies">Adoption by company</h2>
{render_matrix(overview, query)}
<h2>Latest calls</h2>
{calls_table(store, recent, now, "No calls yet.", "latest-calls")}
<p>{link("All calls →", "/calls")}</p>
<h2>Latest rejections</h2>
{calls_table(store, rejections, now, "No rejections.", "latest-rejections")}
<p>{link("All rejections →", "/calls", {"status": "rejected"})}</p>"""
    return layout("Overview", body, active="/", refresh=refresh)
