"""The adoption matrix: one row per company, one column per feature, every company shown.

Companies are rows so that 50 or 500 of them stay readable (paginated, filterable, sortable by
any column through the query string); features are columns, and a company that never used a
feature shows a red "not used" cell: who does *not* use a feature is the signal that matters.
Long names wrap (two lines, the whole name on hover), so the company column stays narrow; a
column sorted on moves to the front, marked, so the order is always explained on screen.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from otel_bucket.devserver._analytics import NO_COMPANY, Cell, Company, Feature, Overview
from otel_bucket.devserver._html import (
    Query,
    count,
    e,
    href,
    named,
    number,
    pager,
    percent,
    table,
    when,
)
from otel_bucket.devserver._stages import DEFINITIONS, IDLE_DAYS, MARKS
from otel_bucket.devserver._store import utc_iso

__all__ = ["STAGE_MARKS", "definitions", "idle_since", "render_matrix", "stage_mark"]

PER_PAGE: Final = 25
STAGE_MARKS: Final = MARKS
_COLUMNS: Final = {"name": "company", "users": "users", "events": "events", "seen": "last seen"}
_FEATURE: Final = "f:"  # sort=f:<feature name>


def definitions() -> str:
    """The stage definitions, as the code counts them (`_stages.DEFINITIONS`)."""
    items = "".join(
        f"<dt>{MARKS.get(name, '')} {e(name.capitalize())}</dt><dd>{e(text)}</dd>"
        for name, text in DEFINITIONS
    )
    return (
        '<dl class="defs" id="definitions"><p>Stages are per user; the funnel counts companies, '
        "as Bucket does. A user belongs to the companies whose company calls named their userId;"
        " events of users in no company count under (no company), which is not in the company "
        f"funnel.</p>{items}</dl>"
    )


def stage_mark(stage: str, dropped: bool = False) -> str:
    """A stage with its mark ("● retained"), and "· dropped" for a user who dropped it."""
    mark = f'<span class="stage-{e(stage)}">{MARKS.get(stage, "")} {e(stage)}</span>'
    return mark + (' <span class="stage-dropped">· dropped</span>' if dropped else "")


def idle_since(now: datetime, days: int = IDLE_DAYS) -> str:
    """The time before which a last use counts as idle."""
    return utc_iso(now - timedelta(days=days))


def _sort_key(overview: Overview, sort: str) -> Callable[[Company], Any]:
    if sort.startswith(_FEATURE):
        feature = next((f for f in overview.features if f.name == sort[len(_FEATURE) :]), None)
        cells = feature.cells if feature else {}

        def by_feature(company: Company) -> Any:
            cell = cells.get(company.id)
            return (cell.share or 0.0, cell.events) if cell else (-1.0, 0)

        return by_feature
    if sort == "users":
        return lambda company: company.users
    if sort == "events":
        return lambda company: company.events
    if sort == "seen":
        return lambda company: company.last_seen or ""
    return lambda company: (overview.label(company.id).casefold(), company.id)


def _sort_link(sort: str, current: str, direction: str, base: dict[str, Any]) -> tuple[str, str]:
    """The URL that sorts by ``sort`` (flipping the direction when it is current), and arrow."""
    default = "asc" if sort == "name" else "desc"
    if sort == current:
        flip = "asc" if direction == "desc" else "desc"
        arrow = " ▲" if direction == "asc" else " ▼"
    else:
        flip, arrow = default, ""
    return href("/", {**base, "sort": sort, "dir": flip, "page": None}) + "#companies", arrow


def _header(text: str, sort: str, current: str, direction: str, base: dict[str, Any]) -> str:
    url, arrow = _sort_link(sort, current, direction, base)
    classes = ("sticky" if sort == "name" else "n") + (" sorted" if sort == current else "")
    title = f"sort by {text}"
    return f'<th class="{classes}"><a href="{url}" title="{e(title)}">{e(text)}</a>{arrow}</th>'


def _feature_header(feature: str, current: str, direction: str, base: dict[str, Any]) -> str:
    sort = _FEATURE + feature
    url, arrow = _sort_link(sort, current, direction, base)
    page = href("/feature", {"name": feature})
    classes = "f sorted" if sort == current else "f"
    return (
        f'<th class="{classes}" title="{e(feature)}"><a class="clamp" href="{page}">'
        f'{e(feature)}</a><a href="{url}" title="sort companies by {e(feature)}">'
        f"{arrow.strip() or '⇅'}</a></th>"
    )


def _cell(
    company: Company, label: str, feature: str, cell: Cell | None, now: datetime, marked: bool
) -> str:
    known = company.users
    outline = " sorted" if marked else ""
    if cell is None:
        title = f"{label}: {feature} not used by any of its {known} users"
        return (
            f'<td class="zero{outline}" title="{e(title)}">0/{number(known)}<br>'
            '<span class="ev">not used</span></td>'
        )
    share = percent(cell.share)
    tried, adopted, retained = cell.at_stage
    resting = cell.last_seen < idle_since(now)
    title = (
        f"{label}: {feature} used by {cell.users} of {known} users ({share}), "
        f"{cell.events} events, last {cell.last_seen}; stage {cell.stage} "
        f"(users: {retained} retained, {adopted} adopted, {tried} tried only)"
        + (f"; not used in the last {IDLE_DAYS} days" if resting else "")
    )
    strength = cell.share if cell.share is not None else 0.0
    shade = f"hsl(140 55% {97 - round(strength * 30)}%)"
    mark = f'<span class="stage-{cell.stage}">{MARKS[cell.stage]}</span>'
    users = href("/feature", {"name": feature, "company": company.id}) + "#users"
    return (
        f'<td class="cell{" idle" if resting else ""}{outline}" style="background:{shade}"'
        f' title="{e(title)}">{mark} <a href="{users}"><b>{number(cell.users)}</b>/'
        f'{number(known)}</a> <span class="pct">{share}</span><br>'
        f'<span class="ev">{count(cell.events, "event")}</span><br>'
        f"{when(cell.last_seen, now)}</td>"
    )


def _head(company: Company, label: str) -> str:
    if company.id == NO_COMPANY:
        return f'<th class="sticky muted" title="users in no company">{e(label)}</th>'
    return f'<th class="sticky">{named("/company", company.id, company.name)}</th>'


def _caption(sort: str, direction: str, features: list[Feature]) -> str:
    if sort.startswith(_FEATURE):
        name = sort[len(_FEATURE) :]
        what = f"the share of their users who used <b>{e(name)}</b>"
        where = " Its column is shown first, outlined."
        if not any(f.name == name for f in features):
            where = " No feature has this name: every company is at the end."
    else:
        what, where = f"<b>{e(_COLUMNS[sort])}</b>", " Its column is outlined."
    order = "highest first" if direction == "desc" else "lowest first"
    if sort == "name":
        order = "Z to A" if direction == "desc" else "A to Z"
    return f'<p class="caption" id="sorted-by">Companies sorted by {what}, {order}.{where}</p>'


def render_matrix(overview: Overview, query: Query) -> str:
    """The filter form, the matrix page asked for by ``query``, and its pager."""
    sort = query.text("sort") or "users"
    if sort not in _COLUMNS and not sort.startswith(_FEATURE):
        sort = "users"
    direction = query.text("dir") or ("asc" if sort == "name" else "desc")
    direction = direction if direction in ("asc", "desc") else "desc"
    per_page = query.number("per_page", PER_PAGE, 5, 500)
    search = query.text("q")
    base: dict[str, Any] = {"q": search, "per_page": None if per_page == PER_PAGE else per_page}
    companies = [c for c in overview.companies.values() if c.id != NO_COMPANY]
    if search:
        needle = search.casefold()
        companies = [
            c for c in companies if needle in c.id.casefold() or needle in (c.name or "").casefold()
        ]
    # By name first, so that ties in the chosen column stay in name order either way.
    companies.sort(key=_sort_key(overview, "name"))
    if sort != "name" or direction == "desc":
        companies.sort(key=_sort_key(overview, sort), reverse=direction == "desc")
    unassigned = overview.companies.get(NO_COMPANY)
    if unassigned and not search:
        companies.append(unassigned)  # always last: not a company
    total = len(companies)
    page = min(query.number("page", 1, 1, 1_000_000), max(1, -(-total // per_page)))
    shown = companies[(page - 1) * per_page : page * per_page]
    state = {**base, "sort": sort, "dir": direction}
    # The feature sorted on comes first, so that the order is explained without scrolling.
    features = sorted(overview.features, key=lambda f: _FEATURE + f.name != sort)
    marked = bool(features) and _FEATURE + features[0].name == sort
    headers = [_header(text, key, sort, direction, base) for key, text in _COLUMNS.items()]
    headers += [_feature_header(f.name, sort, direction, base) for f in features]
    rows = []
    for company in shown:
        label = overview.label(company.id)
        cells = [
            _head(company, label),
            f'<td class="n">{number(company.users)}</td>',
            f'<td class="n">{number(company.events)}</td>',
            f"<td>{when(company.last_seen, overview.now)}</td>",
        ]
        cells += [
            _cell(company, label, f.name, f.cells.get(company.id), overview.now, n == 0 and marked)
            for n, f in enumerate(features)
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    empty = f"No company matches {search!r}." if search else "No company calls yet."
    form = (
        '<form class="filters" method="get" action="/#companies">'
        f'<label>company name or id<input name="q" value="{e(search or "")}"></label>'
        f'<input type="hidden" name="sort" value="{e(sort)}">'
        f'<input type="hidden" name="dir" value="{e(direction)}">'
        '<button type="submit">filter</button></form>'
    )
    legend = (
        '<p class="muted">Each cell: the company\'s stage (the furthest of its users: '
        f"{MARKS['tried']} tried, {MARKS['adopted']} adopted, {MARKS['retained']} retained), "
        "its users who used the feature of its known users (a link to them), the share, the "
        f"events and the last use; striped grey when not used in the last {IDLE_DAYS} days, "
        "red when never used. A feature's name opens its page; ⇅ sorts by it.</p>"
    )
    return (
        legend
        + form
        + _caption(sort, direction, overview.features)
        + table(headers, rows, empty, name="matrix")
        + pager("/", state, page, per_page, total, "companies")
    )
