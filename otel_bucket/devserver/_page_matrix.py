"""The adoption matrix: one row per company, one column per feature, every company shown.

Companies are rows so that 50 or 500 of them stay readable (paginated, filterable, sortable by
any column through the query string); features are columns, and a company that never used a
feature shows a red "not used" cell: who does *not* use a feature is the signal that matters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from otel_bucket.devserver._analytics import NO_COMPANY, Cell, Company, Overview
from otel_bucket.devserver._html import Query, count, e, href, number, pager, percent, table, when

__all__ = ["STAGE_MARKS", "render_matrix"]

PER_PAGE: Final = 25
STAGE_MARKS: Final = {"tried": "○", "adopted": "◐", "retained": "●"}
_COLUMNS: Final = {"name": "company", "users": "users", "events": "events", "seen": "last seen"}
_FEATURE: Final = "f:"  # sort=f:<feature name>


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


def _header(text: str, sort: str, current: str, direction: str, base: dict[str, Any]) -> str:
    default = "asc" if sort == "name" else "desc"
    if sort == current:
        flip = "asc" if direction == "desc" else "desc"
        arrow = " ▲" if direction == "asc" else " ▼"
    else:
        flip, arrow = default, ""
    url = href("/", {**base, "sort": sort, "dir": flip, "page": None})
    numeric = "" if sort == "name" else ' class="n f"'
    sticky = ' class="sticky"' if sort == "name" else numeric
    title = f"sort by {text}"
    return f'<th{sticky}><a href="{url}#companies" title="{e(title)}">{e(text)}</a>{arrow}</th>'


def _cell(company: Company, label: str, feature: str, cell: Cell | None, known: int) -> str:
    if cell is None:
        title = f"{label}: {feature} not used by any of its {known} users"
        return (
            f'<td class="zero" title="{e(title)}">0/{number(known)}<br>'
            '<span class="ev">not used</span></td>'
        )
    share = percent(cell.share)
    title = (
        f"{label}: {feature} used by {cell.users} of {known} users ({share}), "
        f"{cell.events} events on {cell.days} days, last {cell.last_seen}; {cell.stage}"
    )
    strength = cell.share if cell.share is not None else 0.0
    shade = f"hsl(140 55% {97 - round(strength * 30)}%)"
    mark = f'<span class="stage-{cell.stage}">{STAGE_MARKS[cell.stage]}</span>'
    return (
        f'<td class="cell" style="background:{shade}" title="{e(title)}">'
        f"{mark} <b>{number(cell.users)}</b>/{number(known)} "
        f'<span class="pct">{share}</span><br>'
        f'<span class="ev">{count(cell.events, "event")}</span></td>'
    )


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
    headers = [_header(text, key, sort, direction, base) for key, text in _COLUMNS.items()]
    headers += [
        _header(f.name, _FEATURE + f.name, sort, direction, base) for f in overview.features
    ]
    rows = []
    for company in shown:
        label = overview.label(company.id)
        if company.id == NO_COMPANY:
            head = f'<th class="sticky muted" title="users in no company">{e(label)}</th>'
        else:
            second = f"<br><small>{e(company.id)}</small>" if company.name else ""
            url = href("/company", {"id": company.id})
            head = (
                f'<th class="sticky"><a href="{url}" title="company id {e(company.id)}">'
                f"{e(label)}</a>{second}</th>"
            )
        cells = [
            head,
            f'<td class="n">{number(company.users)}</td>',
            f'<td class="n">{number(company.events)}</td>',
            f"<td>{when(company.last_seen, overview.now)}</td>",
        ]
        cells += [
            _cell(company, label, f.name, f.cells.get(company.id), company.users)
            for f in overview.features
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
    return (
        form
        + table(headers, rows, empty, name="matrix")
        + pager("/", state, page, per_page, total, "companies")
    )
