"""The feature page: who uses one feature, at which stage, since when, and week by week.

``/feature?name=...``: its funnels (companies and users), its weekly active users and
companies, every company (those that never used it last, in red) with its stage and weekly
trend, its users with their stage (filtered by stage or company), and who tried and dropped it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from otel_bucket.devserver._analytics import NO_COMPANY, Cell, cells, known_users
from otel_bucket.devserver._chart import weekly_chart
from otel_bucket.devserver._entities import Use, companies_of, feature_uses, names
from otel_bucket.devserver._html import (
    Query,
    choices,
    count,
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
from otel_bucket.devserver._page_matrix import definitions, idle_since, stage_mark
from otel_bucket.devserver._stages import (
    IDLE_CHOICES,
    MARKS,
    STAGE_SQL,
    STAGES,
    idle_days,
    stage_params,
)
from otel_bucket.devserver._store import Store
from otel_bucket.devserver._trends import Series, weekly, weekly_by, weeks_to, window

__all__ = ["render_feature"]

PER_PAGE: Final = 50
_STAGE_TABS: Final = (("", "all"), *((s, f"{MARKS[s]} {s}") for s in STAGES))


def _companies(
    store: Store, now: datetime, feature: str, mondays: tuple[str, ...], query: Query, base: Any
) -> str:
    found = {company: cell for (_, company), cell in cells(store, now, feature=feature).items()}
    known = known_users(store)
    ids = sorted(set(known) | set(found))
    labels = names(store, "company", ids)
    trend = weekly_by(store, feature, mondays[0])

    def order(company: str) -> Any:
        cell = found.get(company)
        stage = cell.at_stage if cell else (0, 0, 0)
        share = (cell.share or 0.0) if cell else -1.0
        return (company == NO_COMPANY, -stage[2], -stage[1], -share, labels.get(company, company))

    ids.sort(key=order)
    page = min(query.number("cpage", 1, 1, 1_000_000), max(1, -(-len(ids) // PER_PAGE)))
    rows = [
        _company_row(feature, c, labels, found.get(c), known.get(c, 0), now, trend, mondays)
        for c in ids[(page - 1) * PER_PAGE : page * PER_PAGE]
    ]
    headers = [
        "<th>company</th>",
        '<th class="n">users</th>',
        "<th>stage</th>",
        *(f'<th class="n">users {MARKS[s]} {s}</th>' for s in reversed(STAGES)),
        '<th class="n">events</th>',
        "<th>first use</th>",
        "<th>last use</th>",
        '<th title="full height: all its users are active">active users per week</th>',
    ]
    return table(headers, rows, "No company yet.", name="feature-companies") + pager(
        "/feature", base, page, PER_PAGE, len(ids), "companies", key="cpage"
    )


def _company_row(
    feature: str,
    company: str,
    labels: dict[str, str],
    cell: Cell | None,
    known: int,
    now: datetime,
    trend: dict[str, dict[str, int]],
    mondays: tuple[str, ...],
) -> str:
    head = (
        named("/company", company, labels.get(company))
        if company
        else '<span class="muted">(no company)</span>'
    )
    if cell is None:
        return (
            f'<tr><th>{head}</th><td class="zero" colspan="9">not used by any of its '
            f"{count(known, 'user')}</td></tr>"
        )
    tried, adopted, retained = cell.at_stage
    users = href("/feature", {"name": feature, "company": company}) + "#users"
    resting = cell.last_seen < idle_since(now)
    # Each company to the scale of its own users: a share, comparable from row to row.
    chart = weekly_chart(Series.of(trend.get(company), mondays), known, "active users")
    return (
        f'<tr><th>{head}</th><td class="n"><a href="{users}" title="its users">'
        f"{number(cell.users)}/{number(known)}</a> ({percent(cell.share)})</td>"
        f"<td>{stage_mark(cell.stage)}</td>"
        + "".join(f'<td class="n">{number(n)}</td>' for n in (retained, adopted, tried))
        + f'<td class="n">{number(cell.events)}</td><td>{when(cell.first_seen, now)}</td>'
        f"<td{' class=idle-note' if resting else ''}>{when(cell.last_seen, now)}</td>"
        f"<td>{chart}</td></tr>"
    )


def _people(store: Store, found: list[Use]) -> tuple[dict[str, str], dict[str, str], Any]:
    """Names of these users, of their companies, and user -> company ids."""
    users = {use.user for use in found}
    of_user = companies_of(store, users)
    companies = {c for ids in of_user.values() for c in ids}
    return names(store, "user", users), names(store, "company", companies), of_user


def _user_cells(use: Use, people: tuple[dict[str, str], dict[str, str], Any]) -> str:
    user_names, company_names, of_user = people
    who = named("/user", use.user, user_names.get(use.user))
    where = ", ".join(
        link(company_names.get(c, c), "/company", {"id": c}, title=f"company id {c}")
        for c in of_user.get(use.user, [])
    )
    return f"<th>{who}</th><td class=names>{where or '<span class=muted>(no company)</span>'}</td>"


def _users(
    store: Store, now: datetime, feature: str, mondays: tuple[str, ...], query: Query, base: Any
) -> str:
    stage = query.text("stage")
    stage = stage if stage in STAGES else None
    company = query.raw("company") or ("" if query.has("company") else None)
    page = query.number("page", 1, 1, 1_000_000)
    total, found = feature_uses(
        store, now, feature, stage=stage, company=company, offset=(page - 1) * PER_PAGE
    )
    people = _people(store, found)
    active = weekly_by(store, feature, mondays[0], users=[use.user for use in found])
    rows = []
    for use in found:
        weeks = Series.of(active.get(use.user), mondays)
        busy = sum(1 for value in weeks.values if value)
        rows.append(
            f"<tr>{_user_cells(use, people)}<td>{stage_mark(use.stage)}</td>"
            f'<td class="n">{number(use.events)}</td><td class="n">{use.days}</td>'
            f"<td>{when(use.first_seen, now)}</td><td>{when(use.last_seen, now)}</td>"
            f"<td>{weekly_chart(weeks, 1, 'active', width=78, height=14)} "
            f"<small>{busy} of {len(mondays)}</small></td></tr>"
        )
    headers = [
        "<th>user</th>",
        "<th>companies</th>",
        "<th>stage</th>",
        '<th class="n">events</th>',
        '<th class="n">days</th>',
        "<th>first use</th>",
        "<th>last use</th>",
        "<th>weeks active</th>",
    ]
    filters = {**base, "company": company}
    tabs = choices("/feature", filters, "stage", _STAGE_TABS, stage or "")
    scope = ""
    if company is not None:
        label = names(store, "company", [company]).get(company) or company or "(no company)"
        scope = (
            f" Only the users of <b>{e(label)}</b> "
            f'(<a href="{href("/feature", {**base, "stage": stage})}#users">all users</a>).'
        )
    empty = "No user of this feature matches." if stage or company is not None else "No user."
    return (
        f"<p>Stage: {tabs}{scope}</p>"
        + table(headers, rows, empty, name="feature-users")
        + pager("/feature", {**filters, "stage": stage}, page, PER_PAGE, total, "users")
    )


def _dropped(store: Store, now: datetime, feature: str, query: Query, base: Any) -> str:
    idle = idle_days(query.number("idle", 0, 0, 365))
    page = query.number("dpage", 1, 1, 1_000_000)
    total, found = feature_uses(
        store, now, feature, stage="dropped", idle=idle, offset=(page - 1) * PER_PAGE
    )
    people = _people(store, found)
    rows = [
        f"<tr>{_user_cells(use, people)}"
        f'<td class="stage-dropped">'
        f"{'used on one day only' if use.days == 1 else f'no use in the last {idle} days'}</td>"
        f"<td>{stage_mark(use.stage)}</td>"
        f'<td class="n">{number(use.events)}</td><td class="n">{use.days}</td>'
        f"<td>{when(use.first_seen, now)}</td><td>{when(use.last_seen, now)}</td></tr>"
        for use in found
    ]
    headers = ["<th>user</th>", "<th>companies</th>", "<th>why</th>", "<th>stage</th>"]
    headers += ['<th class="n">events</th>', '<th class="n">days</th>']
    headers += ["<th>first use</th>", "<th>last use</th>"]
    options = [(n, f"{n} days") for n in IDLE_CHOICES]
    idle_links = choices("/feature", base, "idle", options, idle)
    return (
        f"<p>{count(total, 'user')} used it on one day only, or not in the last N days "
        f"(N: {idle_links}).</p>"
        + table(headers, rows, "Nobody dropped it.", name="dropped")
        + pager("/feature", {**base, "idle": idle}, page, PER_PAGE, total, "dropped", key="dpage")
    )


def render_feature(
    store: Store, now: datetime, feature: str, query: Query, refresh: int | None
) -> str | None:
    """The feature page, or None when no event of the feature was accepted."""
    [(users, events, first, last)] = store.query(
        "SELECT COUNT(*), SUM(events), MIN(first_ts), MAX(last_ts) FROM uses WHERE event = ?",
        (feature,),
    )
    if not users:
        return None
    weeks = window(query.number("weeks", 0, 0, 52))
    mondays = weeks_to(now, weeks)
    base: dict[str, Any] = {"name": feature, "weeks": weeks}
    [(adopted, retained)] = store.query(
        "SELECT SUM(stage >= 2), SUM(stage = 3) FROM (SELECT"
        f" {STAGE_SQL} AS stage FROM uses WHERE event = :feature)",
        {**stage_params(now), "feature": feature},
    )
    companies = _companies(store, now, feature, mondays, query, base)
    body = (
        f"<h1>{e(feature)} <small>feature</small></h1>"
        f"<p>{count(users, 'user')}, {count(events, 'event')}; first used "
        f"{when(first, now)}, last used {when(last, now)}. Users: {number(users)} tried, "
        f"{number(adopted)} adopted, {number(retained)} retained. "
        f"{link('Its calls', '/calls', {'event': feature})}.</p>"
        f'<h2 id="trend">Week by week</h2>{weeks_choice("/feature", base, weeks)}'
        f"{_trend(store, feature, mondays)}"
        f'<h2 id="companies">Companies</h2>{companies}'
        f'<h2 id="users">Users</h2>{_users(store, now, feature, mondays, query, base)}'
        '<h2 id="tried-and-dropped">Tried and dropped</h2>'
        f"{_dropped(store, now, feature, query, base)}"
        f"<h2>Stages</h2>{definitions()}"
    )
    return layout(feature, body, active="", refresh=refresh)


def _trend(store: Store, feature: str, mondays: tuple[str, ...]) -> str:
    """Active users and active companies per week, side by side."""
    active_users, active_companies = weekly(store, mondays[0], feature=feature)
    charts = []
    for what, counts in (("users", active_users), ("companies", active_companies)):
        series = Series.of(counts.get(feature), mondays)
        chart = weekly_chart(series, series.peak, f"active {what}", width=312, height=60)
        charts.append(
            f"<figure><figcaption>active {what} per week (at most {number(series.peak)})"
            f"</figcaption>{chart}</figure>"
        )
    return f'<div class="tabs" id="feature-trend">{"".join(charts)}</div>'
