"""The questions a product manager asks the devserver's pages (issue 22).

Who tried a feature once and dropped it, how many distinct users there are, how adoption moves
week by week, who uses one feature, and whether the numbers stay right when calls arrive out
of order or the database was written by an older version. Checked on the server's HTML and
JSON with an injected clock; the same pages in a real browser are in test_devpage_browser.py.
"""

from __future__ import annotations

import random
import re
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path
from typing import Any

import pytest
import requests

from otel_bucket.devserver import DevServer
from otel_bucket.devserver._dataset import sample_calls
from otel_bucket.devserver._store import Store
from tests.test_devserver_pages import page, post

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)  # a Friday; its week began 11-23
EXPORT = "Export"
CHAT = "Chat"

# company -> (name, users); "s1" is in acme and beta both; "gamma" never uses anything.
COMPANIES = {
    "acme": ("Acme", ["a1", "a2", "a3", "s1"]),
    "beta": ("Beta", ["b1", "b2", "s1"]),
    "gamma": ("Gamma", ["g1"]),
    "delta": ("Delta", ["d1"]),
}
USER_NAMES = {"a1": "Ann", "a2": "Abe", "a3": "Ada", "b1": "Bob", "b2": "Bea", "s1": "Sam"}
EVENTS = [
    # Acme: three users, each one event on one day: each only tried it.
    ("a1", EXPORT, "2026-11-05T10:00:00.000Z"),
    ("a2", EXPORT, "2026-11-15T10:00:00.000Z"),
    ("a3", EXPORT, "2026-11-26T10:00:00.000Z"),
    # Beta: b1 adopted it and stopped 25 days ago; b2 adopted it on 11-26 and used it again.
    ("b1", EXPORT, "2026-11-01T08:00:00.000Z"),
    ("b1", EXPORT, "2026-11-02T08:00:00.000Z"),
    ("b2", EXPORT, "2026-11-20T08:00:00.000Z"),
    ("b2", EXPORT, "2026-11-26T08:00:00.000Z"),
    ("b2", EXPORT, "2026-11-26T09:00:00.000Z"),
    # Delta: adopted, then nothing for 19 days.
    ("d1", EXPORT, "2026-11-05T09:00:00.000Z"),
    ("d1", EXPORT, "2026-11-08T09:00:00.000Z"),
    # Sam, in Acme and Beta, adopted Chat on 11-26 and has not used it since.
    ("s1", CHAT, "2026-11-25T10:00:00.000Z"),
    ("s1", CHAT, "2026-11-26T10:00:00.000Z"),
    ("lonely", EXPORT, "2026-11-27T11:00:00.000Z"),  # in no company
]


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """A devserver at a fixed "now" holding the companies and events above."""
    db = tmp_path_factory.mktemp("questions") / "dev.sqlite3"
    with DevServer(port=0, db_path=db, clock=lambda: NOW) as server:
        for user, name in USER_NAMES.items():
            post(server, "user", {"userId": user, "attributes": {"name": name}})
        for company, (name, users) in COMPANIES.items():
            post(server, "company", {"companyId": company, "attributes": {"name": name}})
            for user in users:
                post(server, "company", {"companyId": company, "userId": user})
        for user, feature, stamp in EVENTS:
            post(server, "event", {"event": feature, "userId": user, "timestamp": stamp})
        yield server


def api(server: DevServer, query: str = "") -> Any:
    return requests.get(f"{server.url}/api/calls{query}", timeout=5).json()


def feature_json(server: DevServer, name: str, query: str = "") -> dict[str, Any]:
    return next(f for f in api(server, query)["features"] if f["feature"] == name)


def rows_by_first_word(rows: list[list[str]]) -> dict[str, list[str]]:
    return {row[0].split(" ")[0]: row for row in rows}


def bar_heights(svg_html: str) -> list[int]:
    """The heights of a chart's bars (one per week), from its SVG."""
    bars = re.findall(r'<rect x="\d+" y="-?\d+" width="\d+" height="(\d+)"', svg_html)
    return [int(height) for height in bars]


# -- 1. tried once and dropped -----------------------------------------------------------------


def test_users_who_each_used_a_feature_once_never_make_their_company_retained(
    dev: DevServer,
) -> None:
    """Acme's three users each used Export on one day: Acme tried it, it did not retain it."""
    export = feature_json(dev, EXPORT)
    stages = {company: cell["stage"] for company, cell in export["by_company"].items()}
    assert stages == {"acme": "tried", "beta": "retained", "delta": "adopted", "": "tried"}
    assert export["by_company"]["acme"]["users_at_stage"] == {
        "tried": 3,
        "adopted": 0,
        "retained": 0,
    }
    assert export["funnel"] == {"tried": 3, "adopted": 2, "retained": 1}
    assert export["users_funnel"] == {"tried": 7, "adopted": 3, "retained": 1}
    _, parsed = page(dev, "/?sort=name&dir=asc")
    acme = rows_by_first_word(parsed.tables["matrix"])["Acme"]
    assert acme[4].startswith("○ 3/4 75%")  # tried, not "● retained"


def test_a_one_event_user_is_shown_as_tried_and_dropped_on_their_page(dev: DevServer) -> None:
    """The user page has a stage column: a user with one event tried it; they are not retained."""
    _, parsed = page(dev, "/user?id=a3")
    [row] = parsed.tables["features"]
    assert row[0] == EXPORT
    assert row[1] == "○ tried · dropped"
    _, parsed = page(dev, "/user?id=b2")
    assert parsed.tables["features"][0][1] == "● retained"


def test_feature_page_lists_who_tried_and_dropped(dev: DevServer) -> None:
    """Used on one day only, or not in the last N days (N = 14 by default, or 7 or 30)."""
    text, parsed = page(dev, f"/feature?name={EXPORT}")
    dropped = {row[0].split(" ")[-1]: row for row in parsed.tables["dropped"]}
    assert set(dropped) == {"a1", "a2", "a3", "b1", "d1", "lonely"}
    assert dropped["a1"][2] == "used on one day only"
    assert dropped["b1"][2] == "no use in the last 14 days"
    assert dropped["b1"][3] == "◐ adopted"
    assert "6 users used it on one day only, or not in the last N days" in text
    _, parsed = page(dev, f"/feature?name={EXPORT}&idle=30")
    assert {row[0].split(" ")[-1] for row in parsed.tables["dropped"]} == {
        "a1",
        "a2",
        "a3",
        "lonely",
    }
    assert feature_json(dev, EXPORT)["dropped_users"] == 6


def test_stage_definitions_on_the_pages_are_the_ones_the_code_counts(dev: DevServer) -> None:
    """The overview, the feature page and /api/calls show `_stages.DEFINITIONS`, every one."""
    from otel_bucket.devserver._stages import DEFINITIONS  # the code's own

    for path in ("/", f"/feature?name={EXPORT}"):
        html, _ = page(dev, path)
        for name, text in DEFINITIONS:
            assert f"{name.capitalize()}</dt><dd>{escape(text)}</dd>" in html, (path, name)
    assert api(dev)["definitions"] == dict(DEFINITIONS)


# -- 2. distinct users -------------------------------------------------------------------------


def test_the_headline_counts_a_user_in_two_companies_once(dev: DevServer) -> None:
    """Sam is in Acme and Beta: 9 users, not the 10 company memberships."""
    text, _ = page(dev, "/")
    assert "4 companies, 9 users, 13 events of\n2 features" in text
    assert api(dev)["users"] == 9
    assert feature_json(dev, CHAT)["users"] == 1  # Sam, once, though in two companies


# -- 3. change over time -------------------------------------------------------------------------


def test_weekly_active_users_and_companies_per_feature(dev: DevServer) -> None:
    """ISO weeks, the current one last; a user in two companies makes both active."""
    export = feature_json(dev, EXPORT, "?weeks=4")
    assert export["weekly"] == {
        "weeks": ["2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23"],
        "users": [3, 1, 1, 3],
        "companies": [3, 1, 1, 2],
    }
    chat = feature_json(dev, CHAT, "?weeks=4")["weekly"]
    assert (chat["users"], chat["companies"]) == ([0, 0, 0, 1], [0, 0, 0, 2])
    assert len(feature_json(dev, EXPORT, "?weeks=26")["weekly"]["weeks"]) == 26
    assert len(feature_json(dev, EXPORT, "?weeks=5")["weekly"]["weeks"]) == 12  # not a choice


def test_trends_page_draws_every_feature_to_one_scale(dev: DevServer) -> None:
    """3 active users of Export in a week is three times as tall as Chat's 1."""
    html, parsed = page(dev, "/trends?weeks=4")
    rows = rows_by_first_word(parsed.tables["trends"])
    assert rows[EXPORT][1:4] == ["1", "0%", "3"]  # last week, change, this week
    assert rows[CHAT][1:4] == ["0", "\N{EN DASH}", "1"]  # nothing last week nor the week before
    charts = re.findall(r'<svg class="chart".*?</svg>', html)
    export_users, export_companies, chat_users, chat_companies = charts
    # Full height is the largest week of any feature: 3 users, 3 companies (Export, 11-02).
    assert re.findall(r'data-peak="(\d+)"', "".join(charts)) == ["3", "3", "3", "3"]
    this_week = bar_heights(export_users)[-1], bar_heights(chat_users)[-1]
    assert this_week[0] > this_week[1] > 0
    assert abs(this_week[0] - 3 * this_week[1]) <= 2  # 3 users against 1
    assert bar_heights(chat_companies)[-1] == bar_heights(export_companies)[-1]  # 2 and 2
    for weeks in (4, 12, 26):
        _, parsed = page(dev, f"/trends?weeks={weeks}")
        chosen = [a["href"] for tag, a in parsed.elements if tag == "a" and a.get("class") == "on"]
        assert chosen == ["/trends", f"/trends?weeks={weeks}"]  # the menu, and the window
        assert len(parsed.tables["trends"][0][4].split("week of")) == weeks + 1


def test_overview_charts_share_one_scale(dev: DevServer) -> None:
    """The overview's weekly charts: Chat's single active user is a third of Export's three."""
    html, _ = page(dev, "/?weeks=4")
    table = html.split('id="feature-table"', 1)[1].split("</table>", 1)[0]
    charts = re.findall(r'<svg class="chart".*?</svg>', table)
    export, chat = (bar_heights(chart) for chart in charts)
    assert max(export) > max(chat) > 0
    assert abs(max(export) - 3 * max(chat)) <= 2


def test_matrix_cells_show_when_a_company_last_used_a_feature(dev: DevServer) -> None:
    """Delta last used Export 19 days ago: the cell says so and is marked idle."""
    html, parsed = page(dev, "/?sort=name&dir=asc")
    delta = rows_by_first_word(parsed.tables["matrix"])["Delta"]
    assert delta[4] == "◐ 1/1 100% 2 events 19 days ago"
    idle = re.findall(r'<td class="cell idle"[^>]*title="Delta: Export[^"]*"', html)
    assert len(idle) == 1
    assert "not used in the last 14 days" in idle[0]
    beta = rows_by_first_word(parsed.tables["matrix"])["Beta"]
    assert beta[4].endswith("1 day ago")


def test_feature_page_shows_each_companys_weekly_trend(dev: DevServer) -> None:
    """Per company: its active users per week, drawn to the scale of its own users."""
    _, parsed = page(dev, f"/feature?name={EXPORT}&weeks=4")
    companies = rows_by_first_word(parsed.tables["feature-companies"])
    assert "week of 2026-11-23 (so far): 1 active users" in companies["Acme"][-1]
    assert "week of 2026-11-02: 1 active users" in companies["Acme"][-1]
    assert "week of 2026-11-09: 1 active users" in companies["Acme"][-1]
    assert "week of 2026-11-16: 0 active users" in companies["Acme"][-1]


# -- 4. the matrix's sort is visible ---------------------------------------------------------


def test_sorting_by_a_feature_moves_its_column_first_and_says_so(dev: DevServer) -> None:
    """Sorted by Chat: its column comes before Export's, outlined, and a caption names it."""
    html, parsed = page(dev, f"/?sort=f:{CHAT}&dir=desc")
    first = parsed.tables["matrix"][0]
    assert first[0].startswith(("Acme", "Beta"))
    assert first[4].startswith("◐ 1/")  # the Chat cell, first of the feature columns
    assert "Companies sorted by the share of their users who used <b>Chat</b>, highest" in html
    assert re.search(r'<th class="f sorted" title="Chat">', html)


# -- 5. drill-down ---------------------------------------------------------------------------------


def test_feature_page_lists_companies_and_users_with_stage_and_dates(dev: DevServer) -> None:
    """Every company (those that never used it too) and every user, with stage and dates."""
    _, parsed = page(dev, f"/feature?name={EXPORT}")
    companies = rows_by_first_word(parsed.tables["feature-companies"])
    assert set(companies) == {"Acme", "Beta", "Delta", "Gamma", "(no"}
    assert companies["Beta"][1:7] == ["2/3 (67%)", "● retained", "1", "1", "0", "5"]
    assert companies["Acme"][1:3] == ["3/4 (75%)", "○ tried"]
    assert companies["Gamma"][1] == "not used by any of its 1 user"
    assert companies["Delta"][-2] == "19 days ago"
    users = {row[0].split(" ")[-1]: row for row in parsed.tables["feature-users"]}
    assert set(users) == {"a1", "a2", "a3", "b1", "b2", "d1", "lonely"}
    assert users["b2"][:3] == ["Bea b2", "Beta", "● retained"]
    assert users["b2"][3:5] == ["3", "2"]
    assert users["lonely"][1] == "(no company)"
    _, parsed = page(dev, f"/feature?name={EXPORT}&stage=adopted")
    assert {row[0].split(" ")[-1] for row in parsed.tables["feature-users"]} == {"b1", "d1"}
    _, parsed = page(dev, f"/feature?name={EXPORT}&company=acme")
    assert {row[0].split(" ")[-1] for row in parsed.tables["feature-users"]} == {"a1", "a2", "a3"}
    page(dev, "/feature?name=Nothing", status=404)


def test_features_link_to_their_page_from_the_overview_and_the_matrix(dev: DevServer) -> None:
    """Feature names (feature table, matrix headers) and matrix cells open the feature page."""
    _, parsed = page(dev, "/")
    assert f"/feature?name={EXPORT}" in parsed.links
    assert f"/feature?name={CHAT}" in parsed.links
    assert f"/feature?name={EXPORT}&company=acme#users" in parsed.links
    _, parsed = page(dev, "/calls")
    assert f"/feature?name={EXPORT}" in parsed.links


def test_calls_show_names_beside_ids_and_the_company_of_event_rows(dev: DevServer) -> None:
    """User and company names with their ids; an event row shows its user's companies."""
    _, parsed = page(dev, f"/calls?event={EXPORT}&user=a1")
    [row] = parsed.tables["calls"]
    assert row[3] == "Ann a1"
    assert row[4] == "Acme acme"
    _, parsed = page(dev, f"/calls?event={CHAT}&user=s1")
    assert parsed.tables["calls"][0][4] == "Acme acme Beta beta"


# -- aggregates kept as calls arrive --------------------------------------------------------------


def recount(calls: list[tuple[str, dict[str, Any]]]) -> dict[tuple[str, str], tuple[Any, ...]]:
    """(feature, user) -> events, days, first, last, adopted at: counted from the calls."""
    by_day: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for method, body in calls:
        if method == "event":
            stamp = body["timestamp"]
            by_day[(body["event"], body["userId"])][stamp[:10]].append(stamp)
    found = {}
    for key, days in by_day.items():
        ordered = sorted(days)
        stamps = [s for day in ordered for s in days[day]]
        adopted = min(days[ordered[1]]) if len(ordered) > 1 else None
        found[key] = (len(stamps), len(ordered), min(stamps), max(stamps), adopted)
    return found


def recount_weeks(calls: list[tuple[str, dict[str, Any]]]) -> dict[tuple[str, str, str], int]:
    """(feature, ISO week's Monday, company) -> its users active that week, from the calls."""
    companies: dict[str, set[str]] = defaultdict(set)
    active: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for method, body in calls:
        if method == "company" and "userId" in body:
            companies[body["userId"]].add(body["companyId"])
    for method, body in calls:
        if method == "event":
            day = datetime.fromisoformat(body["timestamp"][:10]).date()
            monday = (day - timedelta(days=day.weekday())).isoformat()
            for company in companies[body["userId"]]:
                active[(body["event"], monday, company)].add(body["userId"])
    return {key: len(users) for key, users in active.items()}


def test_aggregates_match_a_recount_whatever_the_order_of_arrival(tmp_path: Path) -> None:
    """Calls stored in a shuffled order (users join companies before and after their events),
    then again by an older database being opened."""
    calls = sample_calls(NOW, companies=8, users=150, days=40, shared=10)
    random.Random(3).shuffle(calls)
    db = tmp_path / "dev.sqlite3"
    store = Store(db)
    for start in range(0, len(calls), 500):  # in batches, like a busy devserver
        store.add_accepted("dev", calls[start : start + 500])
    expected = recount(calls)
    columns = "event, user_id, events, days, first_ts, last_ts, adopted_at"
    stored = {(r[0], r[1]): r[2:] for r in store.query(f"SELECT {columns} FROM uses")}
    assert stored == expected
    weeks = {(e, w, c): n for e, w, c, n in store.query("SELECT * FROM company_weeks")}
    assert weeks == recount_weeks(calls)
    daily: dict[tuple[str, str], int] = defaultdict(int)
    for method, body in calls:
        if method == "event":
            daily[(body["event"], body["timestamp"][:10])] += 1
    assert {(e, d): n for e, d, n in store.query("SELECT * FROM feature_days")} == daily
    members = store.query("SELECT company_id, user_id FROM members ORDER BY 1, 2")
    store.close()
    # A database from before the aggregates: the same calls, no aggregate tables.
    with sqlite3.connect(db) as raw:
        for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            raw.execute(f"DROP TRIGGER {name}")
        for (table,) in raw.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
            " AND name != 'calls'"
        ).fetchall():
            raw.execute(f"DROP TABLE {table}")
        raw.execute("PRAGMA user_version = 0")
    raw.close()
    store = Store(db)
    assert {(r[0], r[1]): r[2:] for r in store.query(f"SELECT {columns} FROM uses")} == expected
    assert store.query("SELECT company_id, user_id FROM members ORDER BY 1, 2") == members
    assert {(e, w, c): n for e, w, c, n in store.query("SELECT * FROM company_weeks")} == weeks
    assert store.counts()["event"] == sum(1 for method, _ in calls if method == "event")
    store.close()


def test_an_earlier_event_of_the_second_day_moves_the_adoption(tmp_path: Path) -> None:
    """Adopted at the first event of the second day, even when that event arrives last."""
    store = Store(tmp_path / "dev.sqlite3")
    stamps = ("2026-11-01T10:00:00.000Z", "2026-11-02T15:00:00.000Z", "2026-11-02T09:00:00.000Z")
    for stamp in stamps:
        store.add_accepted("dev", [("event", {"event": "e", "userId": "u", "timestamp": stamp})])
    assert store.query("SELECT days, adopted_at FROM uses") == [(2, "2026-11-02T09:00:00.000Z")]
    store.add_accepted(
        "dev", [("event", {"event": "e", "userId": "u", "timestamp": "2026-10-30T10:00:00.000Z"})]
    )
    assert store.query("SELECT days, adopted_at FROM uses") == [(3, "2026-11-01T10:00:00.000Z")]
    store.close()
