"""Delivery against an endpoint that behaves like a hosted API over the internet (issue 19): a
server in its own process that answers after a real latency, fails some calls only, or has a
capacity; the exporter runs the way users run it (``install()`` on a real provider, a real
process stopped by SIGTERM)."""

from __future__ import annotations

import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_bucket import BucketSpanProcessor, feature, identify, install, set_event_attributes
from otel_bucket.spool._spool_info import read_spool
from tests._remote import RemoteCall, RemoteServer, Rule, copies, id_of
from tests._running import Running, child_env, python

KEY = "trREMOTE-key"


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    """A real provider, shut down (drained) after the test."""
    provider = TracerProvider(shutdown_on_exit=False)
    yield provider
    provider.shutdown()


def setup(provider: TracerProvider, remote: RemoteServer, **options: Any) -> BucketSpanProcessor:
    options.setdefault("spool_dir", False)
    return install(provider, handle_signals=False, tracking_key=KEY, endpoint=remote.url, **options)


def _use(seq: int) -> None:
    set_event_attributes({"seq": seq})


def events(provider: TracerProvider, users: range, first_seq: int = 0) -> int:
    """One event for each of ``users`` (each in one of 10 companies); return the next seq."""
    tracer = provider.get_tracer("app")
    use = feature("Used a feature", tracer_provider=provider)(_use)
    seq = first_seq
    for user in users:
        with (
            tracer.start_as_current_span("request"),
            identify(user_id=f"u{user}", company_id=f"c{user % 10}"),
        ):
            use(seq)
        seq += 1
    return seq


def delivered_events(calls: list[RemoteCall]) -> list[int]:
    return sorted(seq for seq, n in copies(calls, "seq").items() for _ in range(n))


@pytest.mark.slow
def test_a_user_endpoint_that_fails_for_ever_does_not_hold_events_back(
    provider: TracerProvider,
) -> None:
    """Only ``/user`` answers 503, for ever: companies go at once, and every event still
    arrives, once: events wait for their user call only until ``/user`` is found failing."""
    with RemoteServer(latency=0.05, rules=[Rule(503, method="user")]) as remote:
        processor = setup(provider, remote)
        events(provider, range(40))
        remote.wait_for(delivered=40, method="event", timeout=60)
        calls = remote.calls()
        assert delivered_events(calls) == list(range(40))
        assert remote.stats().delivered["company"] == 40
        assert processor.exporter.stats.delivered == 80


@pytest.mark.slow
def test_fresh_events_pass_users_that_fail_for_ever(provider: TracerProvider) -> None:
    """300 users whose calls are answered 503 for ever, then fresh users with events in waves:
    every fresh user call and every fresh event arrives, once, while the old ones still fail."""
    rules = [Rule(503, method="user", id_prefix="old")]
    with RemoteServer(latency=0.05, rules=rules) as remote:
        processor = setup(provider, remote)
        tracer = provider.get_tracer("app")
        for user in range(300):
            with tracer.start_as_current_span("login"), identify(user_id=f"old{user}"):
                pass
        seq = 0
        for wave in range(3):
            seq = events(provider, range(1000 + 20 * wave, 1020 + 20 * wave), seq)
            remote.wait_for(delivered=20 * (wave + 1), method="event", timeout=30)
        remote.wait_for(delivered=60, method="user", timeout=60)
        calls = remote.calls()
        assert delivered_events(calls) == list(range(60))
        fresh_users = {id_of("user", c.json) for c in calls if c.method == "user" and c.ok}
        assert fresh_users == {f"u{user}" for user in range(1000, 1060)}
        assert processor.exporter.stats.pending > 0  # the 300 still wait (or are given up)


@pytest.mark.slow
def test_half_the_calls_failing_delivers_every_event_once(provider: TracerProvider) -> None:
    """Every other call answered 503 at random, under a steady load: every user, company and
    event call arrives, each event exactly once (503s also slow the pace down: they say the
    endpoint is overloaded)."""
    with RemoteServer(latency=0.02, rules=[Rule(503, probability=0.5)], seed=7) as remote:
        processor = setup(provider, remote)
        seq = 0
        for wave in range(3):
            seq = events(provider, range(20 * wave, 20 * wave + 20), seq)
            time.sleep(0.25)  # a steady load, not one burst
        remote.wait_for(delivered=180, timeout=120)  # users, companies and events
        assert processor.force_flush(30_000)
        calls = remote.calls()
        assert delivered_events(calls) == list(range(60))
        stats = processor.exporter.stats
        assert (stats.delivered, stats.undelivered, stats.pending) == (60 + 60 + 60, 0, 0)


@pytest.mark.slow
def test_a_slow_endpoint_is_slow_not_down(provider: TracerProvider) -> None:
    """An endpoint that takes 3.5 s per call (timeout 10 s) gets every call once: none is cut,
    none is sent twice, the endpoint is never taken as down."""
    with RemoteServer(latency=3.5) as remote:
        processor = setup(provider, remote, timeout=10)
        events(provider, range(30))
        remote.wait_for(delivered=30, method="event", timeout=60)
        calls = remote.calls()
        assert delivered_events(calls) == list(range(30))
        assert not any(c.client_left for c in calls)
        assert len(calls) == 30 + 30 + 30
        assert processor.exporter.stats.retried == 0


@pytest.mark.slow
def test_calls_in_flight_grow_with_the_latency(provider: TracerProvider) -> None:
    """At 50 ms a call, 600 events in one second need about 30 calls in flight (Little's law):
    more than the 8 of the old fixed pool are used, and every event arrives once."""
    with RemoteServer(latency=0.05) as remote:
        processor = setup(provider, remote)
        start = time.monotonic()
        seq = 0
        for tick in range(10):
            seq = events(provider, range(60 * tick, 60 * tick + 60), seq)
            time.sleep(max(start + 0.1 * (tick + 1) - time.monotonic(), 0))
        remote.wait_for(delivered=600, method="event", timeout=60)
        assert delivered_events(remote.calls()) == list(range(600))
        assert remote.stats().max_in_flight > 8
        assert processor.exporter.stats.undelivered == 0


@pytest.mark.slow
def test_an_endpoint_at_capacity_is_not_flooded(provider: TracerProvider) -> None:
    """An endpoint that answers 503 whenever more than 10 calls are in flight: the exporter
    backs off to about its capacity (few 503s), and every event arrives once."""
    with RemoteServer(latency=0.05, rules=[Rule(503, above=10)]) as remote:
        processor = setup(provider, remote)
        events(provider, range(400))
        remote.wait_for(delivered=400, method="event", timeout=90)
        calls = remote.calls()
        assert delivered_events(calls) == list(range(400))
        refused = sum(c.status == 503 for c in calls)
        accepted = sum(c.ok for c in calls)
        assert refused < accepted / 2, (refused, accepted)
        assert processor.exporter.stats.undelivered == 0


RACE = 0.1  # seconds in which a call sent before the 429 was read may still arrive


def test_retry_after_holds_every_call(provider: TracerProvider) -> None:
    """After a ``429`` with ``Retry-After: 2`` no call at all reaches the endpoint for 2 s
    (but those sent before the answer could be read: up to ``RACE`` after it)."""
    with RemoteServer(latency=0.01, rules=[Rule(429, first=1, retry_after="2")]) as remote:
        setup(provider, remote)
        events(provider, range(5))
        remote.wait_for(delivered=5, method="event", timeout=30)
        calls = sorted(remote.calls(), key=lambda c: c.received)
        refused = next(c for c in calls if c.status == 429)
        after = [c for c in calls if c.received > refused.answered + RACE]
        assert after and min(c.received for c in after) - refused.answered >= 1.9


SIGTERM_APP = textwrap.dedent(
    """
    import sys, time
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from otel_bucket import feature, identify, install, set_event_attributes

    trace.set_tracer_provider(TracerProvider())
    install(tracking_key="trREMOTE-key", endpoint=sys.argv[1])
    tracer = trace.get_tracer("app")

    @feature("Used a feature")
    def use(seq):
        set_event_attributes({"seq": seq})

    for seq in range(200):
        with tracer.start_as_current_span("request"), identify(
            user_id=f"u{seq}", company_id=f"c{seq % 20}"
        ):
            use(seq)
    print("made", flush=True)
    while True:
        time.sleep(1)
    """
)


@pytest.mark.slow
def test_sigterm_delivers_every_event_once_to_a_distant_endpoint(tmp_path: Path) -> None:
    """``python app.py`` stopped by SIGTERM with 200 events (of 200 users) queued for an
    endpoint 0.2 s away: all 200 arrive within ``BUCKET_TIMEOUT``, once each, nothing is left in
    the spool, and the process still ends "killed by SIGTERM"."""
    script = tmp_path / "app.py"
    script.write_text(SIGTERM_APP)
    with RemoteServer(latency=0.2) as remote:
        env = child_env(BUCKET_SPOOL_DIR=str(tmp_path / "spool"))
        app = Running(python(str(script), remote.url), env=env)
        try:
            app.expect("made", timeout=60)
            app.proc.send_signal(signal.SIGTERM)
            status = app.proc.wait(timeout=30)
        finally:
            app.kill()
        calls = remote.calls()
    assert status == -signal.SIGTERM
    assert delivered_events(calls) == list(range(200))
    assert not any(c.client_left for c in calls)
    assert all(read_spool(path).total == 0 for path in (tmp_path / "spool").glob("spool-*.db"))


@pytest.mark.slow
def test_a_restarted_bridge_sends_its_spool_while_idle(tmp_path: Path) -> None:
    """A bridge started on a spool that holds calls (left by an earlier process) sends them
    all, once, with no traffic at all: spooled calls are waiting calls."""
    from otel_bucket.ground._call import Call
    from otel_bucket.spool._spool import Spool
    from otel_bucket.spool._spool_paths import spool_path
    from tests._bridge import KEY as BRIDGE_KEY
    from tests._bridge import bridge_process

    with RemoteServer(latency=0.05) as remote:
        spool = Spool(spool_path(tmp_path, remote.url, BRIDGE_KEY), endpoint=remote.url)
        calls = [
            Call("event", {"event": "Left over", "userId": "u", "attributes": {"seq": seq}})
            for seq in range(2_000)
        ]
        assert spool.put(calls) == 2_000
        spool.close()
        with bridge_process(BUCKET_ENDPOINT=remote.url, BUCKET_SPOOL_DIR=str(tmp_path)):
            remote.wait_for(delivered=2_000, method="event", timeout=60)
        assert delivered_events(remote.calls()) == list(range(2_000))
    assert read_spool(spool_path(tmp_path, remote.url, BRIDGE_KEY)).total == 0
