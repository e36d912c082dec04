"""The trends page: how adoption moves, week by week, every feature on one common scale.

``/trends?weeks=4|12|26``: per feature, its active users and active companies per ISO week.
All user charts share one scale and all company charts another, so a feature used 10 times a
week looks ten times shorter than one used 100 times, and features can be compared at a glance.
"""

from __future__ import annotations

from datetime import datetime

from otel_bucket.devserver._chart import weekly_chart
from otel_bucket.devserver._html import Query, e, href, layout, number, table
from otel_bucket.devserver._page import weeks_choice
from otel_bucket.devserver._store import Store
from otel_bucket.devserver._trends import Series, weekly, weeks_to, window

__all__ = ["render_trends"]


def _change(now: int, before: int) -> str:
    if not before:
        return '<span class="muted">new</span>' if now else '<span class="muted">&ndash;</span>'
    change = (now - before) / before
    if not change:
        return '<span class="muted">0%</span>'
    return f'<span class="{"ok" if change > 0 else "bad"}">{change:+.0%}</span>'


def render_trends(store: Store, now: datetime, query: Query, refresh: int | None) -> str:
    """The whole trends page."""
    weeks = window(query.number("weeks", 0, 0, 52))
    mondays = weeks_to(now, weeks)
    users, companies = weekly(store, mondays[0])
    features = [name for (name,) in store.query("SELECT DISTINCT event FROM uses ORDER BY 1")]
    series = {
        name: (Series.of(users.get(name), mondays), Series.of(companies.get(name), mondays))
        for name in features
    }
    user_peak = max((u.peak for u, _ in series.values()), default=0)
    company_peak = max((c.peak for _, c in series.values()), default=0)
    # The last complete week is the one before the current (running) week: most active first.
    features.sort(key=lambda f: -series[f][0].values[-2])
    rows = []
    for name in features:
        active, active_companies = series[name]
        last, before = active.values[-2], active.values[-3]
        users_chart = weekly_chart(active, user_peak, "active users", width=260, height=40)
        companies_chart = weekly_chart(
            active_companies, company_peak, "active companies", width=260, height=40
        )
        rows.append(
            f'<tr><th><a href="{href("/feature", {"name": name, "weeks": weeks})}">{e(name)}</a>'
            f'</th><td class="n">{number(last)}</td><td class="n">{_change(last, before)}</td>'
            f'<td class="n muted">{number(active.values[-1])}</td><td>{users_chart}</td>'
            f'<td class="n">{number(active_companies.values[-2])}</td><td>{companies_chart}</td>'
            "</tr>"
        )
    headers = [
        "<th>feature</th>",
        '<th class="n">last week</th>',
        '<th class="n">change</th>',
        '<th class="n">this week</th>',
        "<th>per week</th>",
        '<th class="n">last week</th>',
        "<th>per week</th>",
    ]
    group = '<th></th><th colspan="4">active users</th><th colspan="2">active companies</th>'
    body = (
        "<h1>Trends</h1>"
        "<p>Active users and companies per ISO week (Monday to Sunday, UTC), oldest left; the "
        "current week is still running and drawn lighter. A user is active in a week when "
        "they have an event of the feature that week; a company is active when one of its "
        "users is. <b>Every feature is drawn to the same scale</b>, so that their heights "
        f"compare: full height is {number(user_peak)} active users and "
        f"{number(company_peak)} active companies. Change: last week against the week before. "
        "Hover a bar for its week and count.</p>"
        f"{weeks_choice('/trends', {}, weeks)}"
        + table(headers, rows, "No event calls yet.", name="trends", group=group)
    )
    return layout("Trends", body, active="/trends", refresh=refresh)
