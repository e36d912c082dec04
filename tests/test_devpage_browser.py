"""The devserver's pages in a real headless Chromium: the demo's data, 50 x 2,000, and markup.

Each page is loaded by Chromium (started by the test, ended by its process group): no console
message at all (the pages run no script, so any message is an error, a blocked load or a
policy violation), the DOM holds the expected rows, and a screenshot is saved under the test's
temporary directory.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import pytest

from otel_bucket.devserver import DevServer
from otel_bucket.devserver._dataset import FEATURES, fill, sample_calls
from otel_bucket.devserver._demo import play
from tests._browser import Loaded, Parsed, find_chromium, load, parse
from tests._markup import COMPANY, EVENT, EVERY, IMG, SCRIPT, SVG, USER, post_markup

pytestmark = pytest.mark.slow

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        pytest.skip("no chromium binary: install Debian's chromium package (.ci/run does)")
    return found


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go (the test's temporary directory)."""
    return tmp_path_factory.mktemp("screenshots")


def visit(chromium: str, server: DevServer, path: str, shots: Path, name: str) -> Parsed:
    """Load one page; it must log nothing to the console and leave a real screenshot."""
    loaded: Loaded = load(chromium, server.url + path, shots, name)
    assert loaded.console == [], loaded.console
    image = loaded.screenshot.read_bytes()
    assert image.startswith(PNG) and len(image) > 10_000, loaded.screenshot
    parsed = parse(loaded.dom)
    assert parsed.title.endswith("· otel-bucket devserver"), parsed.title
    return parsed


# -- the console check itself ------------------------------------------------------------------


class _Broken(BaseHTTPRequestHandler):
    pages: ClassVar[dict[str, bytes]] = {
        "/error": b"<!DOCTYPE html><title>t</title><p>x</p><script>undefinedThing();</script>",
        "/clean": b"<!DOCTYPE html><title>t</title><link rel=icon href='data:,'><p>clean</p>",
    }

    def do_GET(self) -> None:
        body = self.pages[self.path]
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def broken() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Broken)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_the_console_check_sees_a_script_error(chromium: str, broken: str, shots: Path) -> None:
    """A page with a deliberate JavaScript error shows up in `console`; a clean one does not."""
    loaded = load(chromium, broken + "/error", shots, "deliberate-error")
    assert any("ReferenceError" in line and "undefinedThing" in line for line in loaded.console)
    assert load(chromium, broken + "/clean", shots, "clean").console == []


# -- the demo's data -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """A devserver filled by the demo's sample app through install(), identify and @feature."""
    db = tmp_path_factory.mktemp("demo") / "dev.sqlite3"
    with DevServer(port=0, db_path=db) as server:
        stats = play(server.url)
        assert stats.delivered == 18
        yield server


def test_demo_overview_in_a_browser(chromium: str, demo: DevServer, shots: Path) -> None:
    """Features with their funnel, and every company: Initech, which uses nothing, too."""
    parsed = visit(chromium, demo, "/", shots, "demo-overview")
    features = [row[0].replace(" companies by use", "") for row in parsed.tables["feature-table"]]
    assert features == ["Sent message", "export_csv", "Created report"]
    rows = {row[0]: row for row in parsed.tables["matrix"]}
    assert set(rows) == {"Acme Corp acme", "Globex globex", "Initech initech"}
    assert rows["Initech initech"][1:3] == ["1", "0"]
    assert rows["Initech initech"][4:] == ["0/1 not used"] * 3
    assert rows["Acme Corp acme"][4] == "○ 2/2 100% 3 events"
    assert "/company?id=initech" in parsed.links


@pytest.mark.parametrize(
    ("path", "name", "table", "expected"),
    [
        ("/company?id=initech", "demo-initech", "users", [["Margaret Hamilton margaret"]]),
        ("/company?id=acme", "demo-acme", "users", [["Ada Lovelace ada"], ["Alan Turing alan"]]),
        ("/user?id=ada", "demo-ada", "features", [["Sent message"], ["export_csv"]]),
    ],
)
def test_demo_company_and_user_pages_in_a_browser(
    chromium: str,
    demo: DevServer,
    shots: Path,
    path: str,
    name: str,
    table: str,
    expected: list[list[str]],
) -> None:
    """The company pages list their users, the user page its features."""
    parsed = visit(chromium, demo, path, shots, name)
    assert sorted(row[:1] for row in parsed.tables[table]) == expected


def test_demo_calls_in_a_browser(chromium: str, demo: DevServer, shots: Path) -> None:
    """All 18 calls on one page, each with its status; no rejection."""
    parsed = visit(chromium, demo, "/calls", shots, "demo-calls")
    assert len(parsed.tables["calls"]) == 18
    assert {row[1] for row in parsed.tables["calls"]} == {"200"}
    parsed = visit(chromium, demo, "/calls?status=rejected", shots, "demo-rejections")
    assert "calls" not in parsed.tables
    assert "No call matches these filters." in parsed.text


# -- 50 companies x 2,000 users --------------------------------------------------------------------


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """The generated data set (50 companies, 2,000 users, 30 days) at a fixed "now"."""
    db = tmp_path_factory.mktemp("big") / "dev.sqlite3"
    with DevServer(port=0, db_path=db, clock=lambda: NOW) as server:
        fill(server.app.store, NOW)
        yield server


def expected_cells() -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    """From the generated calls themselves: users per company; per feature, "used/known"."""
    members: dict[str, set[str]] = defaultdict(set)
    used: dict[tuple[str, str], set[str]] = defaultdict(set)
    calls = sample_calls(NOW)
    for method, body in calls:
        if method == "company" and "userId" in body:
            members[body["companyId"]].add(body["userId"])
    company_of = {user: company for company, users in members.items() for user in users}
    for method, body in calls:
        if method == "event" and body["userId"] in company_of:
            used[(company_of[body["userId"]], body["event"])].add(body["userId"])
    known = {company: len(users) for company, users in members.items()}
    cells = {
        company: {f: f"{len(used[(company, f)])}/{len(users)}" for f, _, _ in FEATURES}
        for company, users in members.items()
    }
    return known, cells


def feature_columns(parsed: Parsed) -> list[str]:
    """The matrix's feature columns, in the order of the feature table."""
    return [row[0].replace(" companies by use", "") for row in parsed.tables["feature-table"]]


@pytest.mark.parametrize("page", [1, 2])
def test_big_matrix_pages_hold_the_right_numbers(
    chromium: str, big: DevServer, shots: Path, page: int
) -> None:
    """25 companies a page; each cell's users/known matches the generated calls."""
    parsed = visit(chromium, big, f"/?sort=name&dir=asc&page={page}", shots, f"big-matrix-{page}")
    known, expected = expected_cells()
    rows = parsed.tables["matrix"]
    assert len(rows) == 25
    for row in rows:
        company = row[0].rsplit(" ", 1)[1]
        assert row[1].replace(",", "") == str(known[company])
        for feature, cell in zip(feature_columns(parsed), row[4:], strict=True):
            fraction = expected[company][feature]
            if fraction.startswith("0/"):
                assert cell == f"{fraction} not used", (company, feature)
            else:
                assert f" {fraction} " in f" {cell.replace(',', '')} ", (company, feature, cell)


def test_big_last_page_and_feature_sort(chromium: str, big: DevServer, shots: Path) -> None:
    """Page 3 holds the users in no company; sorting by a feature puts its users first."""
    parsed = visit(chromium, big, "/?page=3", shots, "big-matrix-3")
    assert [row[0] for row in parsed.tables["matrix"]] == ["(no company)"]
    feature = FEATURES[-1][0]
    parsed = visit(chromium, big, f"/?sort=f:{quote(feature)}&dir=desc", shots, "big-sorted")
    column = 4 + feature_columns(parsed).index(feature)
    cells = [row[column] for row in parsed.tables["matrix"]]
    used = [not cell.endswith("not used") for cell in cells]
    assert used[0] and used == sorted(used, reverse=True)


@pytest.mark.parametrize(
    ("path", "name", "tables"),
    [
        ("/company?id=c001", "big-company", {"features": 7, "users": 50, "attributes": 3}),
        ("/user?id=u00001", "big-user", {"attributes": 1}),
        ("/calls", "big-calls", {"calls": 50}),
        ("/calls?status=accepted&method=company&page=3", "big-calls-3", {"calls": 50}),
    ],
)
def test_big_pages_in_a_browser(
    chromium: str, big: DevServer, shots: Path, path: str, name: str, tables: dict[str, int]
) -> None:
    """The company, user and calls pages render their (paginated) rows."""
    parsed = visit(chromium, big, path, shots, name)
    assert {t: len(parsed.tables[t]) for t in tables} == tables


# -- markup in calls -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def marked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    db = tmp_path_factory.mktemp("marked") / "dev.sqlite3"
    with DevServer(port=0, db_path=db, clock=lambda: NOW) as server:
        post_markup(server.url)
        yield server


@pytest.mark.parametrize(
    ("name", "path", "shown"),
    [
        ("overview", "/", (IMG, SCRIPT, EVENT)),
        ("calls", "/calls", (USER, EVENT, SCRIPT)),
        ("company", f"/company?id={quote(COMPANY)}", (IMG, COMPANY, USER)),
        ("user", f"/user?id={quote(USER)}", (SVG, IMG, SCRIPT, EVENT)),
        ("rejections", f"/calls?user={quote(USER)}&status=rejected", (USER, SCRIPT)),
    ],
)
def test_markup_is_text_in_a_browser(
    chromium: str, marked: DevServer, shots: Path, name: str, path: str, shown: tuple[str, ...]
) -> None:
    """Markup sent in calls is displayed as text: no script ran, no element was injected."""
    parsed = visit(chromium, marked, path, shots, f"markup-{name}")
    assert parsed.title != "pwned"  # what the injected scripts would have set
    for text in shown:
        assert text in parsed.text
    tags = {tag for tag, _ in parsed.elements}
    assert not tags & {"script", "img", "u"}
    assert not [attrs for _, attrs in parsed.elements if any(k.startswith("on") for k in attrs)]
    assert all(raw not in parsed.links for raw in EVERY)
