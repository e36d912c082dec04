"""The devserver: a faithful local Tracking API on 127.0.0.1, its storage, page and JSON."""

from __future__ import annotations

import http.client
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from otel_bucket.devserver import DevServer, DevServerError, format_line
from tests._browser import parse
from tests._running import Running, python

JSON = "application/json"
TS = "2026-11-27T14:03:05.123Z"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "dev.sqlite3"


@pytest.fixture
def dev(db: Path) -> Iterator[DevServer]:
    server = DevServer(port=0, db_path=db).start()
    yield server
    server.stop()


def post(
    server: DevServer,
    method: str,
    body: Any,
    *,
    key: str = "trk",
    content_type: str | None = JSON,
) -> tuple[int, Any]:
    """POST one call; ``body`` is sent as JSON unless it is bytes."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    reply = requests.post(f"{server.url}/{key}/{method}", data=data, headers=headers, timeout=5)
    return reply.status_code, reply.json()


def api(server: DevServer, query: str = "") -> Any:
    return requests.get(f"{server.url}/api/calls{query}", timeout=5).json()


def untimed(cell: str) -> str:
    """A matrix cell without its last use ("3 days ago"), which follows the wall clock."""
    return re.sub(r" (just now|in a moment|\d+ \w+ ago|in \d+ \w+)$", "", cell)


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("user", {"userId": "u1"}),
        ("user", {"userId": "u1", "attributes": {"name": "Ada", "admin": True, "n": 1.5}}),
        ("user", {"userId": "u1", "attributes": {}, "timestamp": TS}),
        ("user", {"userId": "ユーザー", "attributes": {"nested": {"a": [1, None, "x"]}}}),
        ("company", {"companyId": "c1"}),
        ("company", {"companyId": "c1", "userId": "u1", "attributes": {"plan": "team"}}),
        ("company", {"companyId": "c1", "timestamp": "2026-11-27T14:03:05+02:00"}),
        ("event", {"event": "Sent message", "userId": "u1"}),
        ("event", {"event": "Sent message", "userId": "u1", "attributes": {"v": 3}}),
        ("event", {"event": "e", "userId": "u1", "timestamp": "2026-11-27T14:03:05Z"}),
        ("event", {"event": "e", "userId": "u1", "timestamp": "2026-11-27T14:03:05.123456789Z"}),
        ("event", {"event": "e", "userId": "u1", "timestamp": "2026-11-27T14:03"}),
        ("event", {"event": "e", "userId": "u1", "timestamp": "2026-11-27 14:03:05.1-0530"}),
        ("events", {"event": "Sent message", "userId": "u1"}),
    ],
)
def test_accepts_every_valid_call_shape(dev: DevServer, method: str, body: Any) -> None:
    """Each call shape of the API document's tables is answered 200 {"success": true}."""
    assert post(dev, method, body) == (200, {"success": True})
    [call] = api(dev)["calls"]
    assert call["method"] == ("event" if method == "events" else method)
    assert call["body"] == body
    assert call["accepted"] is True


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_accepts_json_content_type_variants(dev: DevServer, content_type: str) -> None:
    """Parameters and case of the media type do not matter."""
    assert post(dev, "user", {"userId": "u1"}, content_type=content_type)[0] == 200


@pytest.mark.parametrize(
    ("method", "body", "reason"),
    [
        ("user", b'{"userId": "u1"', "invalid JSON"),
        ("user", b"", "invalid JSON"),
        ("user", b'{"userId": "u1", "attributes": {"x": NaN}}', "NaN is not a JSON value"),
        ("user", b'{"userId": "u1", "attributes": {"x": -Infinity}}', "-Infinity is not a JSON"),
        ("user", b'{"userId": "\xff"}', "invalid JSON"),
        ("user", ["u1"], "body must be a JSON object, got list"),
        ("user", {}, "missing required field 'userId'"),
        ("company", {"userId": "u1"}, "missing required field 'companyId'"),
        ("event", {"userId": "u1"}, "missing required field 'event'"),
        ("event", {"event": "e"}, "missing required field 'userId'"),
        ("events", {"event": "e"}, "missing required field 'userId'"),
        ("user", {"userId": 42}, "field 'userId' must be a string, got int"),
        ("company", {"companyId": "c", "userId": None}, "field 'userId' must be a string"),
        ("event", {"event": True, "userId": "u"}, "field 'event' must be a string, got bool"),
        ("user", {"userId": ""}, "field 'userId' must not be empty"),
        ("company", {"companyId": "  "}, "field 'companyId' must not be empty"),
        ("event", {"event": "", "userId": "u"}, "field 'event' must not be empty"),
        ("user", {"userId": "u", "attributes": ["a"]}, "field 'attributes' must be an object"),
        ("user", {"userId": "u", "timestamp": "yesterday"}, "must be an ISO 8601 date-time"),
        ("user", {"userId": "u", "timestamp": "2026-13-01T00:00:00Z"}, "ISO 8601"),
        ("user", {"userId": "u", "timestamp": "2026-11-27"}, "ISO 8601"),
        ("user", {"userId": "u", "timestamp": 1764252185}, "ISO 8601"),
        ("track", {"userId": "u"}, "unknown method 'track'"),
        ("user", {"userId": "u", "name": "Ada"}, "unknown field 'name'"),
        ("user", {"userId": "u", "companyId": "c"}, "unknown field 'companyId'"),
    ],
)
def test_rejects_each_invalid_call_with_its_reason(
    dev: DevServer, method: str, body: Any, reason: str
) -> None:
    """An invalid call gets 400 and a JSON body naming the problem; it is stored as rejected."""
    status, answer = post(dev, method, body)
    assert status == 400
    assert answer["success"] is False
    assert any(reason in error for error in answer["errors"]), answer
    snapshot = api(dev)
    assert snapshot["calls"] == []
    [rejection] = snapshot["rejections"]
    assert rejection["status"] == 400
    assert rejection["reasons"] == answer["errors"]
    assert snapshot["counts"]["rejected"] == 1


def test_lists_every_problem_of_one_call(dev: DevServer) -> None:
    """All problems of a call are reported at once, not only the first."""
    _, answer = post(dev, "event", {"event": 1, "attributes": [], "extra": 0})
    assert sorted(answer["errors"]) == sorted(
        [
            "missing required field 'userId'",
            "unknown field 'extra'",
            "field 'event' must be a string, got int",
            "field 'attributes' must be an object, got list",
        ]
    )


@pytest.mark.parametrize(
    ("content_type", "reason"),
    [
        (None, "Content-Type must be application/json, none was sent"),
        ("text/plain", "Content-Type must be application/json, got 'text/plain'"),
        ("application/x-www-form-urlencoded", "got 'application/x-www-form-urlencoded'"),
    ],
)
def test_rejects_other_content_types_with_400(
    dev: DevServer, content_type: str | None, reason: str
) -> None:
    """The API only accepts JSON: anything else is a 400 that says so."""
    status, answer = post(dev, "user", {"userId": "u1"}, content_type=content_type)
    assert status == 400
    assert any(reason in error for error in answer["errors"])


@pytest.mark.parametrize("path", ["/", "/trk", "/trk/user/more", "//user"])
def test_unknown_paths_get_404(dev: DevServer, path: str) -> None:
    """A POST that is not /{key}/{method} gets 404 and the expected shape."""
    reply = requests.post(dev.url + path, json={"userId": "u"}, timeout=5)
    assert reply.status_code == 404
    assert "expected POST /{tracking_key}/{user|company|event}" in reply.json()["errors"][0]


def test_key_restricts_to_one_tracking_key(db: Path) -> None:
    """With a key, other keys get 404 and the key itself works as usual."""
    with DevServer(port=0, db_path=db, tracking_key="mine") as dev:
        assert post(dev, "user", {"userId": "u"}, key="mine")[0] == 200
        status, answer = post(dev, "user", {"userId": "u"}, key="someone-elses-key")
        assert status == 404
        assert answer["errors"] == ["unknown tracking key 'some...'"]


def test_fail_rate_one_answers_valid_calls_500_and_invalid_400(db: Path) -> None:
    """--fail-rate 1 fails every valid call with 500; an invalid call still gets its 400."""
    with DevServer(port=0, db_path=db, fail_rate=1.0) as dev:
        status, answer = post(dev, "user", {"userId": "u"})
        assert status == 500
        assert "simulated failure" in answer["errors"][0]
        assert post(dev, "user", {})[0] == 400
        assert api(dev)["counts"] == {"user": 0, "company": 0, "event": 0, "rejected": 2}


def test_fail_rate_is_reproducible_with_a_seed(tmp_path: Path) -> None:
    """The same seed fails the same calls; roughly the given share fails."""
    runs = []
    for name in ("a", "b"):
        with DevServer(port=0, db_path=tmp_path / name, fail_rate=0.5, seed=7) as dev:
            runs.append([post(dev, "user", {"userId": str(i)})[0] for i in range(40)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 500}


def test_calls_survive_a_restart(db: Path) -> None:
    """What was stored is still there when a new devserver opens the same file."""
    with DevServer(port=0, db_path=db) as dev:
        post(dev, "user", {"userId": "u1"})
        post(dev, "user", {})
    with DevServer(port=0, db_path=db) as dev:
        post(dev, "event", {"event": "e", "userId": "u1"})
        snapshot = api(dev)
    assert [c["method"] for c in snapshot["calls"]] == ["event", "user"]
    assert len(snapshot["rejections"]) == 1


def test_database_is_in_wal_mode_and_readable_by_others(dev: DevServer, db: Path) -> None:
    """The SQLite file uses WAL, so another reader can look while the devserver writes."""
    post(dev, "user", {"userId": "u1"})
    with sqlite3.connect(db) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert other.execute("SELECT user_id FROM calls").fetchall() == [("u1",)]


def test_default_database_lives_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without db_path the file is .otel-bucket/dev.sqlite3 under the working directory."""
    monkeypatch.chdir(tmp_path)
    with DevServer(port=0) as dev:
        post(dev, "user", {"userId": "u1"})
    assert (tmp_path / ".otel-bucket" / "dev.sqlite3").is_file()


def test_unwritable_database_is_a_one_line_error(tmp_path: Path) -> None:
    """A db path under a regular file cannot be created: DevServerError says so in one line."""
    (tmp_path / "file").write_text("")
    with pytest.raises(DevServerError, match="cannot create folder") as info:
        DevServer(port=0, db_path=tmp_path / "file" / "dev.sqlite3").start()
    assert "\n" not in str(info.value)


def test_port_in_use_is_a_one_line_error(dev: DevServer, tmp_path: Path) -> None:
    """A second server on a taken port raises DevServerError naming the address."""
    port = int(dev.url.rsplit(":", 1)[1])
    with pytest.raises(DevServerError, match=f"cannot listen on 127.0.0.1:{port}"):
        DevServer(port=port, db_path=tmp_path / "other.sqlite3").start()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 70000}, "port must be an integer from 0 to 65535"),
        ({"port": -1}, "port must be an integer from 0 to 65535"),
        ({"fail_rate": 1.5}, "fail_rate must be between 0 and 1"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict[str, Any], message: str) -> None:
    """Arguments out of range are refused when the DevServer is built."""
    with pytest.raises(ValueError, match=message):
        DevServer(db_path=":memory:", **kwargs)


def _seed(dev: DevServer) -> None:
    for user, company in [("ada", "acme"), ("alan", "acme"), ("grace", "globex")]:
        post(dev, "user", {"userId": user})
        post(dev, "company", {"companyId": company, "userId": user})
    for user, event in [("ada", "Export"), ("alan", "Export"), ("grace", "Export")]:
        post(dev, "event", {"event": event, "userId": user, "timestamp": TS})
    post(dev, "event", {"event": "Chat", "userId": "ada"})
    post(dev, "event", {"event": "Chat", "userId": "lonely"})
    post(dev, "event", {"event": "<script>alert(1)</script>", "userId": "ada"})
    post(dev, "company", {"companyId": "acme", "attributes": ["not", "an", "object"]})


def test_api_calls_reports_counts_adoption_calls_and_rejections(dev: DevServer) -> None:
    """/api/calls returns what was sent: counts, features x companies, calls, rejections."""
    _seed(dev)
    data = api(dev)
    assert data["counts"] == {"user": 3, "company": 3, "event": 6, "rejected": 1}
    assert data["companies"] == ["acme", "globex", ""]
    adoption = {row["feature"]: row for row in data["adoption"]}
    assert adoption["Export"]["companies"] == 2
    assert adoption["Export"]["users"] == 3
    assert adoption["Export"]["last_seen"] == TS
    assert adoption["Export"]["by_company"] == {
        "acme": {"users": 2, "last_seen": TS},
        "globex": {"users": 1, "last_seen": TS},
    }
    assert set(adoption["Chat"]["by_company"]) == {"acme", ""}  # "": a user in no company
    assert adoption["Chat"]["companies"] == 1
    assert data["calls"][0]["event"] == "<script>alert(1)</script>"
    assert data["rejections"][0]["reasons"] == ["field 'attributes' must be an object, got list"]
    assert len(api(dev, "?limit=2")["calls"]) == 2


def test_page_shows_adoption_recent_calls_and_rejections(dev: DevServer) -> None:
    """GET / is server-rendered HTML: features, the company matrix, calls and rejections."""
    _seed(dev)
    reply = requests.get(dev.url + "/", timeout=5)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    page = reply.text
    assert "<script" not in page  # the event name is escaped, and the page needs no script
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    parsed = parse(page)
    features = [row[0].split(" companies by use")[0] for row in parsed.tables["feature-table"]]
    assert features == ["Export", "Chat", "<script>alert(1)</script>"]
    companies = [row[0] for row in parsed.tables["matrix"]]
    assert companies == ["acme", "globex", "(no company)"]
    one = "○ 1/2 50% 1 event"
    acme, globex = ([untimed(cell) for cell in row[4:]] for row in parsed.tables["matrix"][:2])
    assert acme == ["○ 2/2 100% 2 events", one, one]
    assert globex == ["○ 1/1 100% 1 event", *["0/1 not used"] * 2]
    assert "Latest rejections" in page
    assert "field &#x27;attributes&#x27; must be an object, got list" in page
    assert "Accepted calls: 3 user,\n3 company, 6 event;" in page


def test_page_can_refresh_itself_without_javascript(dev: DevServer) -> None:
    """?refresh=N adds a meta refresh; the empty page explains what will appear."""
    page = requests.get(dev.url + "/?refresh=2", timeout=5).text
    assert '<meta http-equiv="refresh" content="2">' in page
    assert "No event calls yet" in page


def test_page_shows_every_company_a_page_at_a_time(dev: DevServer) -> None:
    """Many companies: all are shown, 25 a page, none hidden behind /api/calls."""
    for n in range(30):
        post(dev, "company", {"companyId": f"c{n:02}", "userId": f"u{n}"})
        if n % 2:
            post(dev, "event", {"event": "Export", "userId": f"u{n}"})
    first = parse(requests.get(dev.url + "/?sort=name&dir=asc", timeout=5).text)
    second = parse(requests.get(dev.url + "/?sort=name&dir=asc&page=2", timeout=5).text)
    shown = [row[0] for row in first.tables["matrix"] + second.tables["matrix"]]
    assert shown == [f"c{n:02}" for n in range(30)]
    assert first.tables["matrix"][0][4] == "0/1 not used"
    assert untimed(first.tables["matrix"][1][4]) == "○ 1/1 100% 1 event"
    assert len(api(dev)["companies"]) == 15


def test_page_names_the_key_to_use(db: Path) -> None:
    """With --key, the page tells apps to use that key."""
    with DevServer(port=0, db_path=db, tracking_key="mine") as dev:
        page = requests.get(dev.url + "/", timeout=5).text
        assert f"BUCKET_ENDPOINT={dev.url} BUCKET_TRACKING_KEY=mine" in page


def test_other_get_paths_get_404(dev: DevServer) -> None:
    """Unknown pages answer 404 with a hint."""
    reply = requests.get(dev.url + "/favicon.ico", timeout=5)
    assert reply.status_code == 404
    assert "try / or /api/calls" in reply.json()["errors"][0]


def test_keep_alive_connection_is_reused(dev: DevServer) -> None:
    """HTTP/1.1 keep-alive: several calls go over one connection."""
    conn = http.client.HTTPConnection("127.0.0.1", int(dev.url.rsplit(":", 1)[1]), timeout=5)
    conn.connect()
    sock = conn.sock
    for i in range(5):
        body = json.dumps({"userId": str(i)})
        conn.request("POST", "/trk/user", body, {"Content-Type": JSON})
        reply = conn.getresponse()
        assert (reply.status, reply.version) == (200, 11)
        assert json.loads(reply.read()) == {"success": True}
    assert conn.sock is sock
    conn.close()


def test_keep_alive_answers_are_not_delayed_by_nagle(dev: DevServer) -> None:
    """With Nagle on, each keep-alive answer would wait ~40 ms for a delayed ACK."""
    port = int(dev.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    body = json.dumps({"event": "e", "userId": "u"})
    started = time.monotonic()
    for _ in range(20):
        conn.request("POST", "/trk/event", body, {"Content-Type": JSON})
        assert conn.getresponse().read() == b'{"success": true}'
    elapsed = time.monotonic() - started
    conn.close()
    assert elapsed < 0.5, f"20 keep-alive calls took {elapsed:.2f} s"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Length": str(2 * 1024 * 1024)}, 413),
        ({"Content-Length": "-5"}, 413),
        ({"Transfer-Encoding": "chunked"}, 411),
    ],
)
def test_unbounded_bodies_are_refused(dev: DevServer, headers: dict[str, str], status: int) -> None:
    """A body too big, of negative length or chunked is refused and the connection closed."""
    conn = http.client.HTTPConnection("127.0.0.1", int(dev.url.rsplit(":", 1)[1]), timeout=5)
    conn.putrequest("POST", "/trk/user", skip_accept_encoding=True)
    for name, value in {"Content-Type": JSON, **headers}.items():
        conn.putheader(name, value)
    conn.endheaders()
    reply = conn.getresponse()
    assert reply.status == status
    assert reply.getheader("Connection") == "close"
    conn.close()


def test_concurrent_calls_are_all_stored(dev: DevServer) -> None:
    """Calls from many threads at once are all answered 200 and stored."""
    statuses: list[int] = []
    lock = threading.Lock()

    def send(worker: int) -> None:
        with requests.Session() as session:
            for i in range(25):
                body = {"event": "e", "userId": f"{worker}-{i}"}
                reply = session.post(f"{dev.url}/trk/event", json=body, timeout=5)
                with lock:
                    statuses.append(reply.status_code)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 200
    assert api(dev)["counts"]["event"] == 200


def test_stop_ends_keep_alive_connections_and_is_idempotent(db: Path) -> None:
    """After stop() an open keep-alive connection is closed; a second stop() is harmless."""
    dev = DevServer(port=0, db_path=db).start()
    session = requests.Session()
    assert session.post(f"{dev.url}/trk/user", json={"userId": "u"}, timeout=5).ok
    url = dev.url
    dev.stop()
    dev.stop()
    with pytest.raises(requests.ConnectionError):
        session.post(f"{url}/trk/user", json={"userId": "u"}, timeout=5)
    assert dev.wait(0)
    with pytest.raises(RuntimeError, match="not started"):
        _ = dev.url


def test_each_call_reaches_on_call_once(db: Path) -> None:
    """on_call gets every answered call, accepted or not, in order."""
    seen: list[str] = []
    with DevServer(port=0, db_path=db, on_call=lambda call: seen.append(format_line(call))) as dev:
        post(dev, "user", {"userId": "u1", "attributes": {"name": "Ada", "plan": "x"}})
        post(dev, "event", {"event": "Sent message"})
    assert len(seen) == 2
    assert seen[0].endswith("200 accepted user    userId='u1' attributes: name, plan")
    assert "400 rejected event   'Sent message' - missing required field 'userId'" in seen[1]


def test_a_failing_on_call_does_not_fail_the_call(db: Path) -> None:
    """A broken line sink is logged; the call is still answered 200 and stored."""

    def broken(call: Any) -> None:
        raise RuntimeError("terminal gone")

    with DevServer(port=0, db_path=db, on_call=broken) as dev:
        assert post(dev, "user", {"userId": "u1"})[0] == 200
        assert api(dev)["counts"]["user"] == 1


@pytest.mark.parametrize(
    ("method", "body", "expected"),
    [
        ("user", {"userId": "u1"}, "200 accepted user    userId='u1'"),
        ("company", {"companyId": "c", "userId": "u"}, "company companyId='c' userId='u'"),
        ("event", {"event": "Export", "userId": "u"}, "event   'Export' userId='u'"),
        ("user", {"userId": 1}, "400 rejected user    - field 'userId' must be a string, got int"),
    ],
)
def test_terminal_line_names_method_ids_event_and_outcome(
    db: Path, method: str, body: Any, expected: str
) -> None:
    """The line printed per call is readable: method, ids, event, accepted or why rejected."""
    lines: list[str] = []
    with DevServer(port=0, db_path=db, on_call=lambda call: lines.append(format_line(call))) as dev:
        post(dev, method, body)
    [line] = lines
    assert expected in line


def test_terminal_lines_stay_whole_when_calls_arrive_at_once(tmp_path: Path) -> None:
    """`otel-bucket devserver` under 16 clients at once: every call is one whole line."""
    db = tmp_path / "dev.sqlite3"
    proc = Running(python("-m", "otel_bucket", "devserver", "--port", "0", "--db", str(db)))
    try:
        url = proc.expect(r"listening on (http://127\.0\.0\.1:\d+)").group(1)
        proc.expect(r"Press Ctrl-C to stop")

        def send(worker: int) -> None:
            with requests.Session() as session:
                for n in range(40):
                    body = {"event": "e", "userId": f"{worker}-{n}"}
                    session.post(f"{url}/trk/event", json=body, timeout=10).raise_for_status()

        threads = [threading.Thread(target=send, args=(worker,)) for worker in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert proc.interrupt() == 0
    finally:
        proc.kill()
    whole = re.compile(r"\d\d:\d\d:\d\d 200 accepted event   'e' userId='\d+-\d+'")
    calls = [line for line in proc.lines if "accepted" in line]
    broken = [line for line in calls if not whole.fullmatch(line)]
    assert broken == []
    assert len(calls) == 16 * 40
