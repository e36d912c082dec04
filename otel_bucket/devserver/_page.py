"""The devserver's overview page: which features are used, by which companies, and how much.

Server-rendered HTML with inline CSS and SVG: no script, nothing fetched, works offline.
"""

from __future__ import annotations

from typing import Final

from otel_bucket.devserver._analytics import CHART_DAYS, RETAINED_DAYS, Feature, Overview
from otel_bucket.devserver._chart import daily_chart, funnel_chart
from otel_bucket.devserver._html import Query, e, href, layout, link, number, table, when
from otel_bucket.devserver._page_calls import calls_table
from otel_bucket.devserver._page_matrix import STAGE_MARKS, render_matrix
from otel_bucket.devserver._store import Store

__all__ = ["DEFINITIONS", "render_page"]

_RECENT: Final = 10

DEFINITIONS: Final = (
    ("tried", "the company has at least one event of the feature."),
    (
        "adopted",
        "its events of the feature fall on at least 2 distinct days (UTC); it adopted the "
        "feature at its first event of the second such day.",
    ),
    (
        "retained",
        f"it adopted the feature and has an event of it in the last {RETAINED_DAYS} days "
        "(7 times 24 hours before now) that came after the moment it adopted.",
    ),
)


def _feature_row(feature: Feature, overview: Overview, companies: int) -> str:
    now = overview.now
    calls = href("/calls", {"event": feature.name})
    matrix = href("/", {"sort": f"f:{feature.name}", "dir": "desc"})
    return (
        f'<tr><th><a href="{calls}" title="calls of this feature">{e(feature.name)}</a>'
        f'<br><small><a href="{matrix}#companies">companies by use</a></small></th>'
        f'<td class="n">{number(feature.users)}</td><td class="n">{number(feature.events)}</td>'
        f'<td class="n">{feature.tried}</td><td class="n">{feature.adopted}</td>'
        f'<td class="n">{feature.retained}</td>'
        f"<td>{funnel_chart(feature.tried, feature.adopted, feature.retained, companies)}</td>"
        f"<td>{when(feature.first_seen, now)}</td><td>{when(feature.last_seen, now)}</td>"
        f"<td>{daily_chart(feature.daily, overview.days, feature.name)}</td></tr>"
    )


def _features(overview: Overview) -> str:
    companies = sum(1 for c in overview.companies if c)
    headers = [
        "<th>feature</th>",
        '<th class="n">users</th>',
        '<th class="n">events</th>',
        f'<th class="n" title="{e(DEFINITIONS[0][1])}">tried</th>',
        f'<th class="n" title="{e(DEFINITIONS[1][1])}">adopted</th>',
        f'<th class="n" title="{e(DEFINITIONS[2][1])}">retained</th>',
        f"<th>funnel <small>(of {number(companies)} companies)</small></th>",
        "<th>first seen</th>",
        "<th>last seen</th>",
        f"<th>events per day, last {CHART_DAYS} days <small>(UTC, today right)</small></th>",
    ]
    rows = [_feature_row(feature, overview, companies) for feature in overview.features]
    definitions = "".join(
        f"<dt>{STAGE_MARKS[name]} {e(name.capitalize())}</dt><dd>{e(text)}</dd>"
        for name, text in DEFINITIONS
    )
    return (
        table(
            headers,
            rows,
            "No event calls yet: a feature appears here once it is used.",
            name="feature-table",
        )
        + '<dl class="defs"><p>The funnel counts companies, as Bucket does. A user belongs to '
        "the companies whose company calls named their userId; events of users in no company "
        "count under (no company), which is not in the funnel.</p>"
        f"{definitions}</dl>"
    )


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
    users = sum(c.users for c in overview.companies.values())
    events = sum(f.events for f in overview.features)
    rejected = link(
        f"{number(counts['rejected'])} rejected or failed", "/calls", {"status": "rejected"}
    )
    now = overview.now
    body = f"""<h1>Who uses which feature</h1>
<p>{number(companies)} companies, {number(users)} users, {number(events)} events of
{len(overview.features)} features. Accepted calls: {number(counts["user"])} user,
{number(counts["company"])} company, {number(counts["event"])} event; {rejected}.</p>
<p class="muted">Point an app here with
<code>BUCKET_ENDPOINT={e(url)} BUCKET_TRACKING_KEY={e(tracking_key or "dev")}</code>.
<a href="/">Reload</a> · <a href="/?refresh=2">reload every 2 s</a> ·
as of <time datetime="{e(now.isoformat())}">{e(now.strftime("%Y-%m-%d %H:%M:%S UTC"))}</time></p>
<h2 id="features">Features</h2>
{_features(overview)}
<h2 id="companies">Adoption by company</h2>
<p class="muted">Each cell: users of the company who used the feature, of its known users, the
share, and the feature's events. {STAGE_MARKS["tried"]} tried, {STAGE_MARKS["adopted"]} adopted,
{STAGE_MARKS["retained"]} retained; a red cell: not used at all. Click a column to sort.</p>
{render_matrix(overview, query)}
<h2>Latest calls</h2>
{calls_table(store.calls(accepted=None, limit=_RECENT), now, "No calls yet.", "latest-calls")}
<p>{link("All calls →", "/calls")}</p>
<h2>Latest rejections</h2>
{calls_table(store.calls(accepted=False, limit=5), now, "No rejections.", "latest-rejections")}
<p>{link("All rejections →", "/calls", {"status": "rejected"})}</p>"""
    return layout("Overview", body, active="/", refresh=refresh)
