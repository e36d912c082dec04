"""``before_send``: rewrite or drop calls before they leave, against a capture server (issue 13)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_bucket import BucketCall, BucketSpanExporter, feature, identify, install
from otel_bucket.devserver._schema import validate_call
from tests._capture import CaptureServer, Reply
from tests._spans import FakeClock, balanced, make_spans

KEY = "trBEFORE-send-key"
SPAN = {
    "enduser.id": "u1",
    "bucket.user.email": "ada@example.com",
    "bucket.user.plan": "pro",
    "bucket.company.id": "c1",
    "bucket.company.name": "Acme",
    "bucket.event": "Export",
    "bucket.attributes.rows": 3,
}

Hook = Callable[[BucketCall], Any]


@pytest.fixture
def clock() -> FakeClock:
    """A fake monotonic clock: backoffs and the warning's minute pass without sleeping."""
    return FakeClock()


@pytest.fixture
def make(server: CaptureServer, clock: FakeClock) -> Iterator[Callable[..., BucketSpanExporter]]:
    """Build exporters on the capture server; shut them all down afterwards."""
    made: list[BucketSpanExporter] = []

    def build(**options: Any) -> BucketSpanExporter:
        options.setdefault("endpoint", server.url)
        options.setdefault("clock", clock)
        exporter = BucketSpanExporter(KEY, **options)
        made.append(exporter)
        return exporter

    yield build
    for exporter in made:
        exporter.shutdown()


def sent(server: CaptureServer) -> list[tuple[str, dict[str, Any]]]:
    return [(r.api_method, r.json) for r in server.requests]


# -- the two recipes of docs/before-send.md ---------------------------------------------------


EMAIL_KEY = b"a secret of the application's own"


def hash_email(call: BucketCall) -> BucketCall:
    """Recipe 1 of the docs: hash an email attribute (keyed, so it cannot be guessed back)."""
    email = call.attributes.get("email")
    if not isinstance(email, str):
        return call
    digest = hmac.new(EMAIL_KEY, email.strip().lower().encode(), hashlib.sha256).hexdigest()
    return call.replace(attributes={**call.attributes, "email": digest})


INTERNAL_COMPANIES = frozenset({"c-internal", "c-staff"})


def skip_internal(call: BucketCall) -> BucketCall | None:
    """Recipe 2 of the docs: never track internal companies (their company calls and events)."""
    if call.company_id in INTERNAL_COMPANIES:
        return None
    return call


def test_recipe_hash_an_email_attribute(server: CaptureServer, make: Any) -> None:
    """The email leaves the process only as its keyed hash; everything else is sent unchanged."""
    exporter = make(before_send=hash_email)
    exporter.export(make_spans(SPAN))
    digest = hmac.new(EMAIL_KEY, b"ada@example.com", hashlib.sha256).hexdigest()
    calls = sent(server)
    assert sorted(method for method, _ in calls) == ["company", "event", "user"]
    body = dict(calls)
    assert body["user"]["attributes"] == {"email": digest, "plan": "pro"}
    assert body["company"]["attributes"] == {"name": "Acme"}
    assert body["event"]["attributes"] == {"rows": 3}
    assert all(b"ada@example.com" not in r.raw for r in server.requests)
    assert all(validate_call(method, body) == [] for method, body in calls)
    assert exporter.stats.delivered == 3 and exporter.stats.filtered == 0


def test_recipe_never_track_internal_companies(server: CaptureServer, make: Any) -> None:
    """The internal company's call and the events made in it are dropped, counted as filtered;
    a customer's go out. The event's company is never sent (the Event API has none)."""
    exporter = make(before_send=skip_internal)
    exporter.export(
        make_spans(
            {"enduser.id": "staff", "bucket.company.id": "c-internal", "bucket.event": "Export"},
            {"enduser.id": "ada", "bucket.company.id": "c-customer", "bucket.event": "Export"},
        )
    )
    calls = sent(server)
    assert sorted((m, body.get("companyId", ""), body["userId"]) for m, body in calls) == [
        ("company", "c-customer", "ada"),
        ("event", "", "ada"),
        ("user", "", "ada"),
        ("user", "", "staff"),
    ]
    assert exporter.stats.filtered == 2
    assert exporter.stats.delivered == 4
    assert balanced(exporter.stats)


# -- rewrite, drop, raise, wrong return ---------------------------------------------------------


def test_a_hook_sees_each_call_as_a_typed_immutable_value(server: CaptureServer, make: Any) -> None:
    """The hook gets one BucketCall per call (after merging), with typed fields; the event
    carries its span's company; the attributes cannot be changed in place."""
    seen: list[BucketCall] = []

    def look(call: BucketCall) -> BucketCall:
        seen.append(call)
        with pytest.raises(TypeError):
            call.attributes["x"] = 1  # type: ignore[index]
        with pytest.raises(dataclasses.FrozenInstanceError):
            call.user_id = "other"  # type: ignore[misc]
        return call

    when = datetime(2026, 11, 27, 14, 3, 5, 123000, tzinfo=timezone.utc)
    start = int(when.replace(microsecond=0).timestamp()) * 10**9 + 123_000_000
    make(before_send=look).export(make_spans(SPAN, start=start))
    assert seen == [
        BucketCall(
            method="user",
            user_id="u1",
            attributes={"email": "ada@example.com", "plan": "pro"},
            timestamp=when,
        ),
        BucketCall(
            method="company",
            user_id="u1",
            company_id="c1",
            attributes={"name": "Acme"},
            timestamp=when,
        ),
        BucketCall(
            method="event",
            user_id="u1",
            company_id="c1",
            event="Export",
            attributes={"rows": 3},
            timestamp=when,
        ),
    ]
    # Returned unchanged: the calls go out exactly as without a hook.
    assert sent(server)[2][1] == {
        "event": "Export",
        "userId": "u1",
        "attributes": {"rows": 3},
        "timestamp": "2026-11-27T14:03:05.123Z",
    }


def test_a_rewrite_changes_ids_attributes_and_timestamp(server: CaptureServer, make: Any) -> None:
    """What replace() changes is what is sent; an event's company stays unsent."""

    plus_two = timezone(timedelta(hours=2))

    def rewrite(call: BucketCall) -> BucketCall:
        if call.method == "event":
            return call.replace(
                event="Export CSV",
                company_id="ignored",
                attributes={},
                timestamp=datetime(2026, 1, 2, 3, 4, 5, 678999, tzinfo=plus_two),
            )
        if call.method == "user":
            return call.replace(user_id="hashed-u1", timestamp=None)
        return call.replace(user_id=None)  # the company call without its user

    exporter = make(before_send=rewrite)
    exporter.export(make_spans(SPAN))
    calls = dict(sent(server))
    assert calls["user"] == {
        "userId": "hashed-u1",
        "attributes": {"email": "ada@example.com", "plan": "pro"},
    }
    assert "userId" not in calls["company"] and calls["company"]["companyId"] == "c1"
    assert calls["event"] == {
        "event": "Export CSV",
        "userId": "u1",
        "timestamp": "2026-01-02T01:04:05.678Z",
    }
    assert all(validate_call(method, body) == [] for method, body in calls.items())
    assert exporter.stats.delivered == 3


def test_returning_none_drops_only_that_call(server: CaptureServer, make: Any) -> None:
    """None drops the call, counted in stats.filtered; the other calls are delivered."""
    exporter = make(before_send=lambda call: None if call.method == "company" else call)
    exporter.export(make_spans(SPAN, {"enduser.id": "u2", "bucket.company.id": "c2"}))
    assert sorted(method for method, _ in sent(server)) == ["event", "user", "user"]
    assert exporter.stats.filtered == 2
    assert exporter.stats.delivered == 3
    assert exporter.stats.dropped == 0
    assert balanced(exporter.stats)


class Boom(Exception):
    """Raised by a hook, with the call's content in its message."""


def _raise_for_u2(call: BucketCall) -> BucketCall:
    if call.user_id == "u2":
        raise Boom(f"cannot handle {call.attributes}")
    return call


def _replace_badly(call: BucketCall) -> BucketCall:
    return call.replace(user_id="  ") if call.user_id == "u2" else call


def _wrong_type(call: BucketCall) -> Any:
    return {"userId": "u2"} if call.user_id == "u2" else call


def _other_method(call: BucketCall) -> BucketCall:
    if call.user_id == "u2":
        return BucketCall(method="event", user_id="u2", event="Turned into an event")
    return call


@pytest.mark.parametrize(
    ("hook", "why"),
    [
        (_raise_for_u2, "it raised Boom"),
        (_replace_badly, "it raised ValueError"),
        (_wrong_type, "it returned dict, not a BucketCall"),
        (_other_method, "it returned a event call"),
    ],
)
def test_a_failing_hook_drops_only_that_call_and_warns_without_content(
    server: CaptureServer,
    make: Any,
    caplog: pytest.LogCaptureFixture,
    hook: Hook,
    why: str,
) -> None:
    """A hook that raises, breaks the call in replace(), returns something other than a
    BucketCall, or changes the method costs that call only (counted as dropped); the warning
    names the method and the failure, never the call's content."""
    exporter = make(before_send=hook)
    spans = make_spans(
        {"enduser.id": "u1", "bucket.user.email": "one@example.com"},
        {"enduser.id": "u2", "bucket.user.email": "two@example.com"},
        {"enduser.id": "u3"},
    )
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        exporter.export(spans)
    assert sorted(body["userId"] for body in server.calls("user")) == ["u1", "u3"]
    assert exporter.stats.dropped == 1 and exporter.stats.delivered == 2
    assert balanced(exporter.stats)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 1
    assert "dropped 1 call(s) that before_send failed on" in lines[0]
    assert "a user call" in lines[0] and why in lines[0]
    assert "two@example.com" not in caplog.text and "u2" not in caplog.text


def test_a_failing_hook_warns_at_most_once_a_minute_with_the_count(
    server: CaptureServer, make: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Failures within a minute add up into the next line; delivery of the rest goes on."""
    exporter = make(before_send=lambda call: 1 / 0 if call.method == "event" else call)
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        for i in range(3):
            exporter.export(make_spans({"enduser.id": f"u{i}", "bucket.event": "E"}))
        clock.advance(61)
        exporter.export(make_spans({"enduser.id": "u9", "bucket.event": "E"}))
    lines = [r.getMessage() for r in caplog.records if "before_send" in r.getMessage()]
    assert len(lines) == 2
    assert "dropped 1 call(s)" in lines[0] and "ZeroDivisionError" in lines[0]
    assert "dropped 3 call(s)" in lines[1]
    assert len(server.calls("user")) == 4 and server.calls("event") == []
    assert exporter.stats.dropped == 4


def test_the_hook_runs_before_dedupe(server: CaptureServer, make: Any) -> None:
    """Dedupe compares what the hook returned: the same rewritten user call is not sent twice,
    and the hook still sees every call (it is what decides what a duplicate is)."""
    seen: list[str] = []

    def hook(call: BucketCall) -> BucketCall:
        seen.append(call.method)
        return hash_email(call)

    exporter = make(before_send=hook)
    span = {"enduser.id": "u1", "bucket.user.email": "ada@example.com"}
    exporter.export(make_spans(span))
    exporter.export(make_spans(span))
    assert seen == ["user", "user"]
    assert len(server.calls("user")) == 1
    assert exporter.stats.deduplicated == 1


def test_spooled_calls_are_not_filtered_again(
    server: CaptureServer, make: Any, clock: FakeClock, tmp_path: Path
) -> None:
    """A call is filtered once: what the spool holds was filtered before it was written, so the
    next exporter sends it without running its hook; filtered calls never reach the disk."""
    server.default = Reply(503)
    first = make(before_send=skip_internal, spool_dir=tmp_path, timeout=1)
    first.export(
        make_spans(
            {"enduser.id": "ada", "bucket.company.id": "c-staff", "bucket.event": "Export"},
            {"enduser.id": "bob", "bucket.event": "Import"},
        )
    )
    first.shutdown()
    assert first.stats.spooled == 3  # users ada and bob, bob's event
    assert first.stats.filtered == 2
    assert not any(b"c-staff" in p.read_bytes() for p in tmp_path.glob("*.db*"))

    server.default = Reply()
    calls: list[BucketCall] = []
    second = make(before_send=lambda call: calls.append(call) or call, spool_dir=tmp_path)
    assert second.force_flush() is True
    assert calls == []
    delivered = sorted((body.get("event", ""), body["userId"]) for body in server.calls())
    assert delivered == [("", "ada"), ("", "bob"), ("Import", "bob")]
    assert second.stats.unspooled == 3 and second.stats.delivered == 3
    assert balanced(first.stats) and balanced(second.stats)


def test_install_passes_before_send_and_runs_it_off_the_application_thread(
    server: CaptureServer,
) -> None:
    """install(before_send=...) reaches the exporter; the hook runs on otel-bucket's thread,
    never on the thread that ended the span."""
    threads: list[str] = []

    def hook(call: BucketCall) -> BucketCall | None:
        threads.append(threading.current_thread().name)
        return None if call.method == "user" else call

    provider = TracerProvider()
    processor = install(provider, tracking_key=KEY, endpoint=server.url, before_send=hook)
    try:

        @feature("Export", tracer_provider=provider)
        def export() -> None:
            pass

        with identify(user_id="u1", company_id="c1"):
            export()
        assert processor.force_flush()
        assert [r.api_method for r in server.requests] == ["company", "event"]
        assert threads and threading.current_thread().name not in threads
        assert set(threads) == {"OtelBucketSpanProcessor"}
    finally:
        provider.shutdown()


@pytest.mark.parametrize("bad", ["not callable", 3, object()])
def test_before_send_must_be_callable(bad: object) -> None:
    """A before_send that is not callable raises TypeError naming it, from the exporter and
    from install()."""
    with pytest.raises(TypeError, match="before_send"):
        BucketSpanExporter(KEY, before_send=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="before_send"):
        install(TracerProvider(), tracking_key=KEY, before_send=bad)


# -- BucketCall itself ------------------------------------------------------------------------

UTC = timezone.utc


@pytest.mark.parametrize(
    ("fields", "error", "names"),
    [
        ({"method": "page", "user_id": "u"}, ValueError, "method"),
        ({"method": "user"}, ValueError, "user_id"),
        ({"method": "user", "user_id": ""}, ValueError, "user_id"),
        ({"method": "user", "user_id": "  "}, ValueError, "user_id"),
        ({"method": "user", "user_id": 42}, TypeError, "user_id"),
        ({"method": "user", "user_id": "u", "company_id": "c"}, ValueError, "company_id"),
        ({"method": "user", "user_id": "u", "event": "E"}, ValueError, "event"),
        ({"method": "company", "user_id": "u"}, ValueError, "company_id"),
        ({"method": "company", "company_id": 7}, TypeError, "company_id"),
        ({"method": "event", "user_id": "u"}, ValueError, "event"),
        ({"method": "event", "event": "E"}, ValueError, "user_id"),
        ({"method": "event", "user_id": "u", "event": ""}, ValueError, "event"),
        ({"method": "user", "user_id": "u", "attributes": ["a"]}, TypeError, "attributes"),
        ({"method": "user", "user_id": "u", "attributes": {"": 1}}, ValueError, "attributes"),
        ({"method": "user", "user_id": "u", "attributes": {1: 1}}, ValueError, "attributes"),
        ({"method": "user", "user_id": "u", "attributes": {"a": None}}, TypeError, "attributes"),
        ({"method": "user", "user_id": "u", "attributes": {"a": [1]}}, TypeError, "attributes"),
        (
            {"method": "user", "user_id": "u", "attributes": {"a": float("nan")}},
            ValueError,
            "attributes",
        ),
        ({"method": "user", "user_id": "u", "timestamp": "2026-01-01"}, TypeError, "timestamp"),
        (
            {"method": "user", "user_id": "u", "timestamp": datetime(2026, 1, 1)},
            ValueError,
            "timestamp",
        ),
    ],
)
def test_bucket_call_refuses_what_the_api_could_not_take(
    fields: dict[str, Any], error: type[Exception], names: str
) -> None:
    """Each malformed value raises TypeError/ValueError naming the field, at construction and
    through replace()."""
    with pytest.raises(error, match=names):
        BucketCall(**fields)


def test_bucket_call_replace_checks_and_copies() -> None:
    """replace() returns a checked copy; the original and the caller's dict stay as they were."""
    mine = {"plan": "pro"}
    call = BucketCall(method="user", user_id="u", attributes=mine)
    mine["plan"] = "free"
    assert call.attributes == {"plan": "pro"}
    other = call.replace(attributes={"plan": "team"}, timestamp=datetime(2026, 1, 1, tzinfo=UTC))
    assert other.attributes == {"plan": "team"} and call.attributes == {"plan": "pro"}
    assert other.user_id == "u" and other.method == "user"
    assert call.replace() == call and hash(call.replace()) == hash(call)
    ones = [BucketCall(method="user", user_id="u", attributes={"n": n}) for n in (1, 1.0, True)]
    assert len({hash(one) for one in ones}) == 1  # equal calls hash alike
    with pytest.raises(ValueError, match="user_id"):
        call.replace(user_id="")
    with pytest.raises(ValueError, match="company_id"):
        call.replace(company_id="c")
