"""The devserver under hostile input: bad Unicode, deep JSON, many connections, secret keys."""

from __future__ import annotations

import http.client
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from otel_bucket.devserver import DevServer
from otel_bucket.devserver._schema import SchemaError, parse_body, validate_call

JSON = "application/json"
SECRET = "trSECRETdevserverKEY1"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "dev.sqlite3"


@pytest.fixture
def dev(db: Path) -> Iterator[DevServer]:
    server = DevServer(port=0, db_path=db).start()
    yield server
    server.stop()


def post_raw(server: DevServer, path: str, raw: bytes) -> tuple[int, Any]:
    reply = requests.post(server.url + path, data=raw, headers={"Content-Type": JSON}, timeout=10)
    return reply.status_code, reply.json()


def get_everything(server: DevServer) -> dict[str, Any]:
    """GET /api/calls and the page; both must answer 200 (a dropped connection raises)."""
    api = requests.get(server.url + "/api/calls", timeout=10)
    page = requests.get(server.url + "/", timeout=10)
    assert (api.status_code, page.status_code) == (200, 200), (api.text[:300], page.text[:300])
    data: dict[str, Any] = api.json()
    return data


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# -- lone surrogates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        rb'{"userId": "\ud800"}',
        rb'{"userId": "u", "attributes": {"name": "Ada \udfff"}}',
        rb'{"userId": "u", "attributes": {"\ud83d": 1}}',
        rb'{"userId": "u", "attributes": {"a": [{"b": "x\udc00y"}]}}',
    ],
)
def test_a_lone_surrogate_is_a_400_that_is_stored(dev: DevServer, raw: bytes) -> None:
    """A string holding half a surrogate pair is not Unicode: 400 naming it, stored, shown."""
    status, answer = post_raw(dev, "/trk/user", raw)
    assert status == 400
    assert any("lone surrogate" in error for error in answer["errors"]), answer
    data = get_everything(dev)
    [rejection] = data["rejections"]
    assert rejection["status"] == 400
    assert rejection["reasons"] == answer["errors"]
    assert data["counts"]["rejected"] == 1


def test_a_lone_surrogate_in_an_unknown_field_is_kept_readable(dev: DevServer) -> None:
    """Rejected for another reason, a body with a lone surrogate is stored and read back."""
    status, answer = post_raw(dev, "/trk/event", rb'{"event": "e", "userId": "u", "x": "\ud800"}')
    assert status == 400
    assert answer["errors"] == ["unknown field 'x'"]
    [rejection] = get_everything(dev)["rejections"]
    assert isinstance(rejection["body"], str)
    assert "\\ud800" in rejection["body"]


def test_validate_call_names_lone_surrogates() -> None:
    """The shared validator reports a lone surrogate in an id or an attribute."""
    assert validate_call("user", {"userId": "\ud800"}) == [
        "field 'userId' holds a lone surrogate '\\ud800', which is not valid Unicode"
    ]
    problems = validate_call("event", {"event": "e", "userId": "u", "attributes": {"k": "\udfff"}})
    assert problems == [
        "field 'attributes' holds a lone surrogate '\\udfff', which is not valid Unicode"
    ]
    assert validate_call("user", {"userId": "\U0001f600 ok"}) == []  # a whole pair is fine


# -- deep nesting --------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [33, 300, 450, 700, 990, 5000, 100_000])
def test_deeply_nested_attributes_are_a_400_that_is_stored(dev: DevServer, depth: int) -> None:
    """JSON nested hundreds of levels deep gets 400 with a reason, never a 500."""
    raw = b'{"userId": "u", "attributes": {"a": ' + nested(depth) + b"}}"
    status, answer = post_raw(dev, "/trk/user", raw)
    assert status == 400
    assert any("nested" in error for error in answer["errors"]), answer
    data = get_everything(dev)
    [rejection] = data["rejections"]
    assert rejection["reasons"] == answer["errors"]


@pytest.mark.parametrize("depth", [700, 970])
def test_a_deep_unknown_field_never_breaks_the_api(dev: DevServer, depth: int) -> None:
    """A deep body rejected for another reason is stored; /api/calls and the page still answer."""
    raw = b'{"userId": "u", "extra": ' + nested(depth) + b"}"
    status, answer = post_raw(dev, "/trk/user", raw)
    assert status == 400
    assert answer["errors"] == ["unknown field 'extra'"]
    [rejection] = get_everything(dev)["rejections"]
    assert isinstance(rejection["body"], str)  # kept as text: too deep to echo as JSON


def test_the_validator_and_parser_never_raise_on_deep_input() -> None:
    """parse_body raises SchemaError (not RecursionError); validate_call returns problems."""
    with pytest.raises(SchemaError, match="nested too deeply"):
        parse_body(nested(100_000))
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    problems = validate_call("user", {"userId": "u", "attributes": {"a": deep}})
    assert problems == ["field 'attributes' is nested more than 32 levels deep"]
    assert validate_call("user", {"userId": "u", "attributes": {"a": nested_list(31)}}) == []


def nested_list(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_bodies_stored_by_an_older_version_never_break_the_api(db: Path) -> None:
    """Rows an older devserver stored (deep JSON, a lone surrogate escape) read back as text."""
    with DevServer(port=0, db_path=db) as dev:  # creates the schema
        pass
    deep = '{"userId": "u", "extra": ' + "[" * 900 + "]" * 900 + "}"
    surrogate = '{"userId": "u", "x": "\\ud800"}'
    huge = "[" * 100_000 + "]" * 100_000
    with sqlite3.connect(db) as conn:
        for body in (deep, surrogate, huge):
            conn.execute(
                "INSERT INTO calls (received_at, tracking_key, method, status, user_id,"
                " company_id, event, ts, body, reasons) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    "2026-11-27T14:03:05.123Z",
                    "trk",
                    "user",
                    400,
                    "u",
                    None,
                    None,
                    "2026-11-27T14:03:05.123Z",
                    body,
                    json.dumps(["unknown field 'extra'"]),
                ),
            )
    for _ in range(2):  # and again after a restart
        with DevServer(port=0, db_path=db) as dev:
            rejections = get_everything(dev)["rejections"]
            assert len(rejections) == 3
            assert all(isinstance(r["body"], str) for r in rejections)


# -- many connections ----------------------------------------------------------------------------


def test_a_thousand_connections_from_a_hundred_clients_are_all_answered(dev: DevServer) -> None:
    """100 clients opening 10 connections each at once: every one is answered, none reset."""
    port = int(dev.url.rsplit(":", 1)[1])
    start = threading.Barrier(100)
    outcomes: list[str] = []
    lock = threading.Lock()
    body = json.dumps({"event": "e", "userId": "u"})

    def client() -> None:
        start.wait(30)
        for _ in range(10):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request("POST", "/trk/event", body, {"Content-Type": JSON})
                reply = conn.getresponse()
                reply.read()
                outcome = str(reply.status)
            except OSError as exc:  # reset, refused, timed out
                outcome = type(exc).__name__
            finally:
                conn.close()
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=client) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    failures = [o for o in outcomes if o != "200"]
    assert len(outcomes) == 1000
    assert failures == [], f"{len(failures)} of 1000 failed: {sorted(set(failures))}"


# -- tracking keys are masked everywhere ---------------------------------------------------------


def test_api_calls_masks_the_tracking_key(dev: DevServer) -> None:
    """/api/calls shows the start of a key, as the terminal does, never the whole key."""
    post_raw(dev, f"/{SECRET}/user", b'{"userId": "u"}')
    post_raw(dev, f"/{SECRET}/user", b'{"userId": 1}')
    reply = requests.get(dev.url + "/api/calls", timeout=5)
    assert SECRET not in reply.text
    data = reply.json()
    assert data["calls"][0]["tracking_key"] == "trSE..."
    assert data["rejections"][0]["tracking_key"] == "trSE..."
    page = requests.get(dev.url + "/", timeout=5).text
    assert SECRET not in page


def test_the_404_reason_masks_the_tracking_key(dev: DevServer) -> None:
    """A wrong path echoes itself with the key masked, in the answer and in storage views."""
    status, answer = post_raw(dev, f"/{SECRET}/user/extra", b'{"userId": "u"}')
    assert status == 404
    assert SECRET not in json.dumps(answer)
    assert "'/trSE.../user/extra'" in answer["errors"][0]
    assert SECRET not in requests.get(dev.url + "/api/calls", timeout=5).text


def test_debug_lines_mask_the_tracking_key(
    dev: DevServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The request lines logged at DEBUG carry the masked key only."""
    with caplog.at_level(logging.DEBUG, logger="otel_bucket.devserver"):
        post_raw(dev, f"/{SECRET}/user", b'{"userId": "u"}')
        post_raw(dev, f"/{SECRET}", b'{"userId": "u"}')
        requests.get(f"{dev.url}/{SECRET}/user", timeout=5)
    lines = [record.getMessage() for record in caplog.records]
    assert any("POST /trSE.../user" in line for line in lines), lines
    assert not [line for line in lines if SECRET in line]
