"""The devserver's pages in a real headless Chromium: the demo's data, 50 x 2,000, 100 x 20
with long and non-Latin names, and markup.

Each page is loaded by one Chromium per module (started by the module, ended by its process
group): no console message at all (the pages run no script, so any message is an error, a
blocked load or a policy violation), the DOM holds the expected rows, the layout is measured
where it matters, and a screenshot is saved under the test's temporary directory.

``python -m tests.test_devpage_browser docs/images`` makes the screenshots of docs/devserver.md.
"""

from __future__ import annotations

import sys
import tempfile
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
from otel_bucket.devserver._dataset import FEATURES, MORE_FEATURES, fill, sample_calls
from otel_bucket.devserver._demo import play
from tests._browser import Browser, Parsed, Tab, find_chromium, parse
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


@pytest.fixture(scope="module")
def browser(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One Chromium for the module's pages, closed (or its process group ended) after them."""
    with Browser(chromium, tmp_path_factory.mktemp("chromium")) as running:
        yield running


def open_page(
    browser: Browser, server: DevServer, path: str, shots: Path, name: str
) -> tuple[Tab, Parsed]:
    """Load one page; it must log nothing to the console and leave a real screenshot."""
    tab = browser.open(server.url + path, size=(1400, 900))
    assert tab.console == [], tab.console
    image = tab.screenshot(shots / f"{name}.png").read_bytes()
    assert image.startswith(PNG) and len(image) > 10_000, name
    parsed = parse(tab.dom())
    assert parsed.title.endswith("· otel-bucket devserver"), parsed.title
    return tab, parsed


def visit(browser: Browser, server: DevServer, path: str, shots: Path, name: str) -> Parsed:
    tab, parsed = open_page(browser, server, path, shots, name)
    tab.close()
    return parsed


# -- the console check itself ------------------------------------------------------------------


class _Broken(BaseHTTPRequestHandler):
    pages: ClassVar[dict[str, bytes]] = {
        "/error": b"<!DOCTYPE html><title>t</title><p>x</p><script>undefinedThing();</script>",
        "/clean": b"<!DOCTYPE html><title>t</title><link rel=icon href='data:,'><p>clean</p>",
        "/blocked": b"<!DOCTYPE html><title>t</title><link rel=icon href='data:,'>"
        b"<script>1</script>",
    }

    def do_GET(self) -> None:
        body = self.pages[self.path]
        self.send_response(200)
        if self.path == "/blocked":  # the devserver's policy: no script at all
            self.send_header("Content-Security-Policy", "default-src 'none'")
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


def test_the_console_check_sees_a_script_error(browser: Browser, broken: str) -> None:
    """A deliberate JavaScript error and a policy violation show up in `console`; a clean page
    shows nothing."""
    console = browser.open(broken + "/error").console
    assert any("ReferenceError" in line and "undefinedThing" in line for line in console)
    console = browser.open(broken + "/blocked").console
    assert any("Content Security Policy" in line for line in console), console
    assert browser.open(broken + "/clean").console == []


# -- the demo's data -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """A devserver filled by the demo's sample app through install(), identify and @feature."""
    db = tmp_path_factory.mktemp("demo") / "dev.sqlite3"
    with DevServer(port=0, db_path=db) as server:
        stats = play(server.url)
        assert stats.delivered == 18
        yield server


def test_demo_overview_in_a_browser(browser: Browser, demo: DevServer, shots: Path) -> None:
    """Features with their funnel, and every company: Initech, which uses nothing, too."""
    parsed = visit(browser, demo, "/", shots, "demo-overview")
    features = [row[0] for row in parsed.tables["feature-table"]]
    assert features == ["Sent message", "export_csv", "Created report"]
    rows = {row[0]: row for row in parsed.tables["matrix"]}
    assert set(rows) == {"Acme Corp acme", "Globex globex", "Initech initech"}
    assert rows["Initech initech"][1:3] == ["1", "0"]
    assert rows["Initech initech"][4:] == ["0/1 not used"] * 3
    assert rows["Acme Corp acme"][4].startswith("○ 2/2 100% 3 events ")  # then its last use
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
    browser: Browser,
    demo: DevServer,
    shots: Path,
    path: str,
    name: str,
    table: str,
    expected: list[list[str]],
) -> None:
    """The company pages list their users, the user page its features."""
    parsed = visit(browser, demo, path, shots, name)
    assert sorted(row[:1] for row in parsed.tables[table]) == expected


def test_demo_calls_in_a_browser(browser: Browser, demo: DevServer, shots: Path) -> None:
    """All 18 calls on one page, each with its status; no rejection."""
    parsed = visit(browser, demo, "/calls", shots, "demo-calls")
    assert len(parsed.tables["calls"]) == 18
    assert {row[1] for row in parsed.tables["calls"]} == {"200"}
    parsed = visit(browser, demo, "/calls?status=rejected", shots, "demo-rejections")
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
    return [row[0] for row in parsed.tables["feature-table"]]


@pytest.mark.parametrize("page", [1, 2])
def test_big_matrix_pages_hold_the_right_numbers(
    browser: Browser, big: DevServer, shots: Path, page: int
) -> None:
    """25 companies a page; each cell's users/known matches the generated calls."""
    parsed = visit(browser, big, f"/?sort=name&dir=asc&page={page}", shots, f"big-matrix-{page}")
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


def test_big_last_page_and_feature_sort(browser: Browser, big: DevServer, shots: Path) -> None:
    """Page 3 holds the users in no company; sorting by a feature puts its users first."""
    parsed = visit(browser, big, "/?page=3", shots, "big-matrix-3")
    assert [row[0] for row in parsed.tables["matrix"]] == ["(no company)"]
    feature = FEATURES[-1][0]
    parsed = visit(browser, big, f"/?sort=f:{quote(feature)}&dir=desc", shots, "big-sorted")
    cells = [row[4] for row in parsed.tables["matrix"]]  # the column sorted on comes first
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
    browser: Browser, big: DevServer, shots: Path, path: str, name: str, tables: dict[str, int]
) -> None:
    """The company, user and calls pages render their (paginated) rows."""
    parsed = visit(browser, big, path, shots, name)
    assert {t: len(parsed.tables[t]) for t in tables} == tables


# -- 100 companies x 20 features, long and non-Latin names -----------------------------------------

LAST_FEATURE = MORE_FEATURES[-1][0]  # the matrix's last column, far off screen


def wide_data(server: DevServer) -> int:
    """100 companies (some with long or non-Latin names), 20 features, 8 weeks, shared users."""
    options = {"companies": 100, "users": 1200, "days": 56, "features": 20, "shared": 30}
    return fill(server.app.store, NOW, long_names=True, **options)


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    db = tmp_path_factory.mktemp("wide") / "dev.sqlite3"
    with DevServer(port=0, db_path=db, clock=lambda: NOW) as server:
        wide_data(server)
        yield server


# The matrix's geometry, measured by Chromium on the page as shown: CSS pixels.
MEASURE = """(() => {
  const box = (el) => el.getBoundingClientRect();
  const wrap = box(document.getElementById("matrix").parentElement);
  const sticky = [...document.querySelectorAll("#matrix .sticky")].map((el) => box(el).width);
  const features = [...document.querySelectorAll("#matrix thead th.f")];
  const names = [...document.querySelectorAll("#matrix tbody th.sticky a")];
  const caption = document.getElementById("sorted-by");
  return {
    page: document.documentElement.scrollWidth,
    wrap: [wrap.left, wrap.right],
    sticky: Math.max(...sticky),
    visible: features.filter((th) => box(th).right <= wrap.right).length,
    features: features.length,
    sorted: [...document.querySelectorAll("#matrix thead th.sorted")].map((th) => {
      const r = box(th); return [r.left, r.right, r.top, r.bottom, th.title]; }),
    caption: caption ? box(caption).bottom : null,
    tallest: Math.max(...[...document.querySelectorAll("#matrix tbody tr")].map(
      (tr) => box(tr).height)),
    nameLines: Math.max(...names.map(
      (a) => box(a).height / parseFloat(getComputedStyle(a).lineHeight))),
    longest: Math.max(...names.map((a) => a.title.length)),
  };
})()"""


def test_wide_matrix_stays_readable(browser: Browser, wide: DevServer, shots: Path) -> None:
    """At 1,400 px: the company column stays narrow whatever the name, names take two lines at
    most (the whole name on hover), at least 7 of the 20 feature columns are in view, and only
    the matrix scrolls sideways, not the page."""
    path = "/?sort=name&dir=asc#companies"
    tab, parsed = open_page(browser, wide, path, shots, "wide-matrix")
    layout = tab.evaluate(MEASURE)
    tab.close()
    assert layout["sticky"] <= 220, layout  # 14em at 14px, padding included
    assert layout["visible"] >= 7, layout
    assert layout["features"] == 20
    assert layout["page"] <= 1400
    assert layout["nameLines"] <= 2.05, layout
    assert layout["tallest"] <= 90, layout
    assert layout["longest"] >= 60  # the long names are on this page, whole, in the title
    assert len(parsed.tables["matrix"]) == 25


def test_sorting_by_an_off_screen_feature_shows_it(
    browser: Browser, wide: DevServer, shots: Path
) -> None:
    """Sorting by the last feature: its column is in view, outlined, and a caption says so."""
    path = f"/?sort=f:{quote(LAST_FEATURE)}&dir=desc#companies"
    tab, parsed = open_page(browser, wide, path, shots, "wide-matrix-sorted")
    layout = tab.evaluate(MEASURE)
    tab.close()
    [(left, right, top, bottom, title)] = layout["sorted"]
    assert title == LAST_FEATURE
    assert layout["wrap"][0] < left and right <= min(layout["wrap"][1], 1400), layout
    assert top >= 0 and bottom <= 900, layout  # on screen, below the caption
    assert layout["caption"] is not None and 0 < layout["caption"] <= top
    assert f"Companies sorted by the share of their users who used {LAST_FEATURE}" in parsed.text
    shares = [row[4] for row in parsed.tables["matrix"]]
    assert not shares[0].endswith("not used")


def test_feature_page_in_a_browser(browser: Browser, wide: DevServer, shots: Path) -> None:
    """Its trend, its companies (50 a page, all 100 and (no company)), its users, its dropped."""
    feature = FEATURES[1][0]
    tab, parsed = open_page(browser, wide, f"/feature?name={quote(feature)}", shots, "feature")
    charts = tab.evaluate("document.querySelectorAll('#feature-trend svg').length")
    overflow = tab.evaluate("document.documentElement.scrollWidth")
    tab.close()
    assert charts == 2
    assert overflow <= 1400
    assert len(parsed.tables["feature-companies"]) == 50
    assert "1\N{EN DASH}50 of 101" in parsed.text
    assert len(parsed.tables["feature-users"]) == 50
    assert {row[2].split()[-1] for row in parsed.tables["feature-users"]} <= {
        "tried",
        "adopted",
        "retained",
    }
    assert parsed.tables["dropped"]
    assert parsed.title.startswith(feature)


def test_trends_page_in_a_browser(browser: Browser, wide: DevServer, shots: Path) -> None:
    """Every feature, each with weekly users and companies charts on one common scale."""
    tab, parsed = open_page(browser, wide, "/trends?weeks=12", shots, "trends")
    peaks = tab.evaluate(
        "[...document.querySelectorAll('#trends svg')].map((svg) => svg.dataset.peak)"
    )
    tab.close()
    assert len(parsed.tables["trends"]) == 20
    users, companies = set(peaks[::2]), set(peaks[1::2])
    assert len(users) == 1 and len(companies) == 1  # one scale for every feature
    assert int(users.pop()) > int(companies.pop()) > 0


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
    browser: Browser, marked: DevServer, shots: Path, name: str, path: str, shown: tuple[str, ...]
) -> None:
    """Markup sent in calls is displayed as text: no script ran, no element was injected."""
    parsed = visit(browser, marked, path, shots, f"markup-{name}")
    assert parsed.title != "pwned"  # what the injected scripts would have set
    for text in shown:
        assert text in parsed.text
    tags = {tag for tag, _ in parsed.elements}
    assert not tags & {"script", "img", "u"}
    assert not [attrs for _, attrs in parsed.elements if any(k.startswith("on") for k in attrs)]
    assert all(raw not in parsed.links for raw in EVERY)


# -- the screenshots of docs/devserver.md --------------------------------------------------------

README_SHOTS = (
    # name, path, the element the picture starts at, its height
    ("devpage-overview", "/?weeks=12", "h1", 900),
    ("devpage-matrix", f"/?sort=f:{quote(LAST_FEATURE)}&dir=desc#companies", "#companies", 900),
    ("devpage-feature", f"/feature?name={quote(FEATURES[1][0])}&weeks=12", "h1", 1100),
    ("devpage-trends", "/trends?weeks=12", "h1", 900),
)


def readme_screenshots(folder: Path) -> list[Path]:
    """The pictures of the pages in docs/devserver.md, from the 100 x 20 data set, at 1,400 px."""
    chromium = find_chromium()
    assert chromium, "no chromium binary"
    made = []
    with (
        tempfile.TemporaryDirectory() as scratch,
        DevServer(port=0, db_path=":memory:", clock=lambda: NOW) as server,
        Browser(chromium, Path(scratch)) as chrome,
    ):
        wide_data(server)
        for name, path, top, height in README_SHOTS:
            tab = chrome.open(server.url + path, size=(1400, 900))
            assert tab.console == [], tab.console
            made.append(tab.screenshot(folder / f"{name}.png", top=top, height=height))
            tab.close()
    return made


if __name__ == "__main__":
    for made in readme_screenshots(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images")):
        print(made)
