"""The devserver's pages answer "who uses this feature": funnel, matrix, company, user, calls.

Checked on the server's HTML (parsed into tables) with an injected clock; the same pages in a
real browser are in test_devpage_browser.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from otel_bucket.devserver import DevServer
from otel_bucket.devserver._dataset import sample_calls
from otel_bucket.devserver._schema import validate_call
from tests._browser import Parsed, parse
from tests._markup import CLOSE, COMPANY, EVENT, EVERY, IMG, SCRIPT, SVG, USER, post_markup
from tests._running import child_env, python, run

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
F = "Exported CSV"
G = "Sent message"

# company -> (name, users); users are "<company>1", "<company>2", ...
COMPANIES = {
    "a": ("Alpha", 1),
    "b": ("Beta", 1),
    "c": ("Gamma", 2),
    "d": ("Delta", 2),
    "g": ("Gimel", 1),
    "e": ("Epsilon", 3),
}
# (user, feature, timestamp)
EVENTS = [
    ("a1", F, "2026-11-20T08:00:00.000Z"),  # one day: tried
    ("b1", F, "2026-11-01T08:00:00.000Z"),
    ("b1", F, "2026-11-10T08:00:00.000Z"),  # two days, nothing in the last 7: adopted
    ("c1", F, "2026-11-25T10:00:00.000Z"),
    ("c2", F, "2026-11-26T09:00:00.000Z"),  # adopted at this event, nothing after: adopted
    ("d1", F, "2026-11-01T08:00:00.000Z"),
    ("d1", F, "2026-11-02T08:00:00.000Z"),  # adopted here
    ("d2", F, "2026-11-26T08:00:00.000Z"),  # after adopting, in the last 7 days: retained
    ("d2", F, "2026-11-26T09:00:00.000Z"),
    ("g1", F, "2026-11-24T08:00:00.000Z"),
    ("g1", F, "2026-11-25T08:00:00.000Z"),  # adopted here
    ("g1", F, "2026-11-25T09:00:00.000Z"),  # the same day, later: retained
    ("d1", G, "2026-11-27T11:00:00.000Z"),
    ("lonely", F, "2026-11-27T11:30:00.000Z"),  # in no company
]


def post(server: DevServer, method: str, body: dict[str, Any]) -> None:
    reply = requests.post(f"{server.url}/trk/{method}", json=body, timeout=5)
    assert reply.status_code == 200, reply.text


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """A devserver at a fixed "now" holding the companies and events above."""
    db = tmp_path_factory.mktemp("pages") / "dev.sqlite3"
    with DevServer(port=0, db_path=db, clock=lambda: NOW) as server:
        for company, (name, users) in COMPANIES.items():
            post(server, "company", {"companyId": company, "attributes": {"name": name[:2]}})
            post(server, "company", {"companyId": company, "attributes": {"name": name}})
            for n in range(1, users + 1):
                post(server, "user", {"userId": f"{company}{n}", "attributes": {"name": f"U{n}"}})
                post(server, "company", {"companyId": company, "userId": f"{company}{n}"})
        for user, feature, stamp in EVENTS:
            post(server, "event", {"event": feature, "userId": user, "timestamp": stamp})
        rejected = requests.post(f"{server.url}/trk/user", json={"userId": 7}, timeout=5)
        assert rejected.status_code == 400
        yield server


def page(server: DevServer, path: str, status: int = 200) -> tuple[str, Parsed]:
    reply = requests.get(server.url + path, timeout=10)
    assert reply.status_code == status, reply.text[:500]
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src" not in reply.headers["Content-Security-Policy"]  # no script may run
    return reply.text, parse(reply.text)


def matrix_rows(parsed: Parsed) -> dict[str, list[str]]:
    """Matrix rows by the company's first line (its name)."""
    return {row[0].split(" ")[0]: row for row in parsed.tables["matrix"]}


def test_funnel_follows_the_stated_definitions(dev: DevServer) -> None:
    """Per user: tried (1 event), adopted (2 days), retained (after adopting, last 7 days);
    a company is at its furthest user's stage."""
    data = requests.get(dev.url + "/api/calls", timeout=5).json()
    feature = next(f for f in data["features"] if f["feature"] == F)
    assert feature["funnel"] == {"tried": 5, "adopted": 3, "retained": 1}
    assert feature["users_funnel"] == {"tried": 8, "adopted": 3, "retained": 1}
    stages = {company: cell["stage"] for company, cell in feature["by_company"].items()}
    assert stages == {
        "a": "tried",
        "b": "adopted",
        "c": "tried",  # c1 and c2 each used it on one day: neither adopted it
        "d": "adopted",  # d1 adopted it, then stopped; d2 used it on one day
        "g": "retained",
        "": "tried",  # "lonely", in no company: listed, never counted in the company funnel
    }
    assert "e" not in feature["by_company"]
    assert set(data["definitions"]) == {"tried", "adopted", "retained", "company", "dropped"}
    _, parsed = page(dev, "/")
    [row] = [r for r in parsed.tables["feature-table"] if r[0] == F]
    # events; companies tried, adopted, retained, (funnel); users tried, adopted, retained, dropped
    assert row[1:5] == ["13", "5", "3", "1"]
    assert row[6:10] == ["8", "3", "1", "7"]
    text, _ = page(dev, "/")
    assert "events of the feature fall on at least 2 distinct days (UTC)" in text


def test_daily_counts_cover_the_last_30_days(dev: DevServer) -> None:
    """Events per UTC day, oldest first, the last being today; older events are left out."""
    data = requests.get(dev.url + "/api/calls", timeout=5).json()
    feature = next(f for f in data["features"] if f["feature"] == F)
    days = data["days"]
    assert (len(days), days[-1], days[0]) == (30, "2026-11-27", "2026-10-29")
    per_day = dict(zip(days, feature["daily"], strict=True))
    assert per_day["2026-11-25"] == 3
    assert per_day["2026-11-26"] == 3
    assert per_day["2026-11-27"] == 1
    assert sum(feature["daily"]) == 13
    _, parsed = page(dev, "/")
    [row] = [r for r in parsed.tables["feature-table"] if r[0] == F]
    assert "week of 2026-11-23 (so far): 5 active users" in row[-1]
    assert "week of 2026-11-16: 1 active users" in row[-1]


def test_matrix_shows_every_company_by_name_with_share_events_and_zeros(dev: DevServer) -> None:
    """Names (the latest sent) with the id below; users/known, share, events; zeros visible."""
    _, parsed = page(dev, "/")
    rows = matrix_rows(parsed)
    assert set(rows) == {"Alpha", "Beta", "Gamma", "Delta", "Gimel", "Epsilon", "(no"}
    assert rows["Delta"][:3] == ["Delta d", "2", "5"]
    columns = ["company", "users", "events", "last seen", F, G]
    assert len(rows["Delta"]) == len(columns)
    assert rows["Delta"][4] == "◐ 2/2 100% 4 events 1 day ago"
    assert rows["Delta"][5] == "○ 1/2 50% 1 event 1 h ago"
    assert rows["Gamma"][4] == "○ 2/2 100% 2 events 1 day ago"
    assert rows["Gimel"][4] == "● 1/1 100% 3 events 2 days ago"
    assert rows["Epsilon"][4:] == ["0/3 not used", "0/3 not used"]
    assert rows["Alpha"][5] == "0/1 not used"
    assert parsed.tables["matrix"][-1][0] == "(no company)"  # last, whatever the sort


@pytest.mark.parametrize(
    ("query", "order"),
    [
        ("sort=name&dir=asc", ["Alpha", "Beta", "Delta", "Epsilon", "Gamma", "Gimel"]),
        ("sort=name&dir=desc", ["Gimel", "Gamma", "Epsilon", "Delta", "Beta", "Alpha"]),
        ("sort=users&dir=desc", ["Epsilon", "Delta", "Gamma", "Alpha", "Beta", "Gimel"]),
        ("sort=events&dir=desc", ["Delta", "Gimel", "Beta", "Gamma", "Alpha", "Epsilon"]),
        (f"sort=f:{G}&dir=desc", ["Delta", "Alpha", "Beta", "Epsilon", "Gamma", "Gimel"]),
        ("sort=nonsense&dir=sideways", ["Epsilon", "Delta", "Gamma", "Alpha", "Beta", "Gimel"]),
    ],
)
def test_matrix_sorts_by_any_column(dev: DevServer, query: str, order: list[str]) -> None:
    """?sort= and ?dir= order the companies; ties keep the name order; bad values fall back."""
    _, parsed = page(dev, "/?" + query)
    names = [row[0].split(" ")[0] for row in parsed.tables["matrix"]][:-1]
    assert names == order


def test_matrix_header_links_sort_and_flip_direction(dev: DevServer) -> None:
    """Each header links to sorting by it; the current column's link flips the direction."""
    _, parsed = page(dev, "/?sort=events&dir=desc")
    sorts = {
        (q.get("sort", [""])[0], q.get("dir", [""])[0])
        for q in (parse_qs(urlsplit(link).query) for link in parsed.links)
    }
    assert ("events", "asc") in sorts
    assert ("name", "asc") in sorts
    assert (f"f:{F}", "desc") in sorts


def test_matrix_paginates_and_filters(dev: DevServer) -> None:
    """?per_page= and ?page= page through companies; ?q= filters by name or id."""
    text, parsed = page(dev, "/?sort=name&dir=asc&per_page=5")
    assert [r[0].split(" ")[0] for r in parsed.tables["matrix"]] == [
        "Alpha",
        "Beta",
        "Delta",
        "Epsilon",
        "Gamma",
    ]
    assert "1&ndash;5 of 7" in text
    _, parsed = page(dev, "/?sort=name&dir=asc&per_page=5&page=2")
    assert [r[0] for r in parsed.tables["matrix"]] == ["Gimel g", "(no company)"]
    _, parsed = page(dev, "/?q=GAM")
    assert [r[0] for r in parsed.tables["matrix"]] == ["Gamma c"]
    _, parsed = page(dev, "/?q=d")
    assert [r[0] for r in parsed.tables["matrix"]] == ["Delta d"]
    text, _ = page(dev, "/?q=nobody")
    assert "No company matches &#x27;nobody&#x27;." in text


def test_company_page_shows_users_features_attributes(dev: DevServer) -> None:
    """A company: its attributes, each feature with share and stage, its users and theirs."""
    text, parsed = page(dev, "/company?id=d")
    assert "<h1>Delta <small>d</small></h1>" in text
    assert parsed.tables["attributes"] == [["name", '"Delta"']]
    features = {row[0]: row for row in parsed.tables["features"]}
    # users, stage, its users retained / adopted / tried only, events
    assert features[F][1:7] == ["2 of 2 (100%)", "◐ adopted", "0", "1", "1", "4"]
    assert features[G][2] == "○ tried"
    users = {row[0]: row for row in parsed.tables["users"]}
    assert users["U1 d1"][1:3] == [f"◐ {F} (2), ○ {G} (1)", "3"]
    assert users["U2 d2"][1:3] == [f"○ {F} (2)", "2"]
    assert "/user?id=d1" in parsed.links
    assert "/calls?company=d" in parsed.links
    _, parsed = page(dev, "/company?id=e")
    assert {row[0]: row[1] for row in parsed.tables["features"]}[
        F
    ] == "not used by any of its 3 users"


def test_user_page_shows_companies_features_and_calls(dev: DevServer) -> None:
    """A user: attributes, companies (linked by name), features with days, latest calls."""
    text, parsed = page(dev, "/user?id=d1")
    assert "<h1>U1 <small>d1</small></h1>" in text
    assert "/company?id=d" in parsed.links
    features = {row[0]: row for row in parsed.tables["features"]}
    assert features[F][1:4] == ["◐ adopted · dropped", "2", "2"]  # stage, events, days
    assert len(parsed.tables["calls"]) == 5  # its user call, company call and 3 events
    _, parsed = page(dev, "/user?id=lonely")
    text, _ = page(dev, "/user?id=lonely")
    assert "In no company" in text


@pytest.mark.parametrize("path", ["/company?id=nope", "/user?id=nope", "/company", "/user?id="])
def test_unknown_company_or_user_is_a_404_page(dev: DevServer, path: str) -> None:
    """An id no call names gets a 404 HTML page that says so."""
    text, _ = page(dev, path, status=404)
    assert "Unknown" in text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", 47),
        ("method=event", 14),
        ("method=company&company=d", 4),
        ("company=d", 4 + 2 + 5),  # its company calls, its users' user calls and events
        ("user=g1", 1 + 1 + 3),
        (f"event={F}", 13),
        ("status=rejected", 1),
        ("status=400", 1),
        ("status=accepted&method=user", 10),
        ("status=500", 0),
    ],
)
def test_calls_page_filters(dev: DevServer, query: str, expected: int) -> None:
    """Calls filter by method, user, company (and its users), event and status."""
    text, parsed = page(dev, "/calls?per_page=500&" + query)
    rows = parsed.tables.get("calls", [])
    assert len(rows) == expected
    assert f"{expected} call" in text


def test_calls_page_paginates_with_relative_times_and_closed_bodies(dev: DevServer) -> None:
    """50 a page by default, newest first; times relative with ISO on hover; bodies closed."""
    text, parsed = page(dev, "/calls?per_page=10&page=2")
    assert len(parsed.tables["calls"]) == 10
    assert "11&ndash;20 of 47" in text
    assert "page 2 of 5" in text
    times = [attrs for tag, attrs in parsed.elements if tag == "time"]
    assert times and all(a["title"] == a["datetime"] for a in times)
    assert all(a["title"].endswith("Z") for a in times)
    details = [attrs for tag, attrs in parsed.elements if tag == "details"]
    assert len(details) == 10 and not any("open" in attrs for attrs in details)
    rejected = page(dev, "/calls?status=rejected")[1].tables["calls"]
    assert rejected[0][1] == "400"
    assert "field 'userId' must be a string, got int" in rejected[0][6]


def test_every_id_links_to_its_page(dev: DevServer) -> None:
    """User and company ids link to their pages wherever they are shown."""
    users = {f"{c}{n}" for c, (_, size) in COMPANIES.items() for n in range(1, size + 1)}
    expected = {
        "/": {f"/company?id={c}" for c in COMPANIES},
        "/calls?per_page=500": {f"/company?id={c}" for c in COMPANIES}
        | {f"/user?id={u}" for u in users | {"lonely"}},
        "/company?id=c": {"/user?id=c1", "/user?id=c2"},
        "/user?id=c1": {"/company?id=c", "/user?id=c1"},
    }
    for path, links in expected.items():
        _, parsed = page(dev, path)
        assert links <= set(parsed.links), (path, links - set(parsed.links))


def test_api_calls_paginates_and_filters(dev: DevServer) -> None:
    """/api/calls keeps its fields and adds offset, filters and totals."""
    data = requests.get(dev.url + "/api/calls?limit=2&offset=2&user=d1", timeout=5).json()
    assert {"counts", "companies", "adoption", "calls", "rejections"} <= set(data)
    assert data["totals"] == {"calls": 5, "rejections": 0}
    assert data["offset"] == 2
    assert [c["user_id"] for c in data["calls"]] == ["d1", "d1"]
    info = data["company_info"]["d"]
    assert (info["name"], info["users"], info["events"]) == ("Delta", 2, 5)


MARKUP_PAGES = {
    "/": (IMG, SCRIPT, EVENT),  # company names, feature names
    "/calls": (USER, EVENT, SCRIPT),
    "/calls?status=rejected": (USER, SCRIPT),
    f"/company?id={quote(COMPANY)}": (IMG, COMPANY, USER, SVG),
    f"/user?id={quote(USER)}": (SVG, IMG, CLOSE, SCRIPT, EVENT),
    f"/?q={quote(SCRIPT)}": (SCRIPT,),
    f"/calls?user={quote(USER)}&event={quote(EVENT)}": (USER, EVENT),
}


@pytest.fixture(scope="module")
def marked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """A devserver holding calls with markup in every id, name, attribute and body."""
    db = tmp_path_factory.mktemp("markup") / "dev.sqlite3"
    with DevServer(port=0, db_path=db, clock=lambda: NOW) as server:
        post_markup(server.url)
        yield server


@pytest.mark.parametrize("path", list(MARKUP_PAGES))
def test_markup_from_calls_is_escaped_everywhere(marked: DevServer, path: str) -> None:
    """Ids, names, attributes, events and bodies with markup are shown as text, never as tags."""
    html, parsed = page(marked, path)
    for raw in EVERY:
        assert raw not in html
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "onload=" not in html.replace("onload=alert(1)&gt;", "")
    assert "<u>bold</u>" not in html
    for text in MARKUP_PAGES[path]:
        assert text in parsed.text or any(
            text in c for t in parsed.tables.values() for r in t for c in r
        ), text
    assert not [attrs for _, attrs in parsed.elements if any(k.startswith("on") for k in attrs)]


def test_generated_data_set_is_valid_and_repeatable() -> None:
    """50 named companies, 2,000 users, 30 days of valid calls; the same whatever the hash seed."""
    calls = sample_calls(NOW)
    assert all(validate_call(method, body) == [] for method, body in calls)
    names = {
        b["companyId"]: b["attributes"]["name"]
        for m, b in calls
        if m == "company" and "attributes" in b
    }
    users = {b["userId"] for m, b in calls if m == "company" and "userId" in b}
    stamps = sorted(b["timestamp"] for m, b in calls if m == "event")
    assert (len(names), len(set(names.values())), len(users)) == (50, 50, 2000)
    assert "2026-10-28" < stamps[0] < "2026-10-30" and stamps[-1] <= "2026-11-27T12:00:00.000Z"
    script = (
        "import hashlib, json, sys; from datetime import datetime, timezone;"
        "from otel_bucket.devserver._dataset import sample_calls;"
        "calls = sample_calls(datetime(2026, 11, 27, 12, tzinfo=timezone.utc));"
        "print(hashlib.sha256(json.dumps(calls).encode()).hexdigest())"
    )
    digests = {
        run(python("-c", script), env=child_env(PYTHONHASHSEED=seed)).stdout for seed in "12"
    }
    assert len(digests) == 1 and len(digests.pop()) == 65
