"""Every call is counted in exactly one place, whatever the endpoint answers (a property test):
``calls + unspooled == delivered + rejected + deduplicated + dropped + filtered + undelivered +
spooled + pending``, and after shutdown nothing is pending."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_bucket import BucketSpanExporter
from tests._capture import CaptureServer, Reply
from tests._spans import FakeClock, balanced, make_spans

REPLIES = st.sampled_from(
    [
        Reply(200),
        Reply(400, body="bad"),
        Reply(404),
        Reply(301, headers={"Location": "https://elsewhere/"}),
        Reply(429, headers={"Retry-After": "2"}),
        Reply(503),
        Reply(500),
        Reply(drop=True),
    ]
)

SPAN = st.fixed_dictionaries(
    {"enduser.id": st.sampled_from(["a", "b", "c"])},
    optional={
        "bucket.event": st.sampled_from(["E1", "E2"]),
        "bucket.company.id": st.sampled_from(["acme", "globex"]),
        "bucket.user.plan": st.sampled_from(["free", "pro"]),
    },
)
NO_USER_EVENT = st.just({"bucket.event": "orphan"})

STEP = st.one_of(
    st.tuples(st.just("export"), st.lists(st.one_of(SPAN, NO_USER_EVENT), max_size=6)),
    st.tuples(st.just("answers"), st.lists(REPLIES, min_size=1, max_size=8)),
    st.tuples(st.just("wait"), st.sampled_from([0.5, 3.0, 61.0])),
    st.tuples(st.just("flush"), st.none()),
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(STEP, min_size=1, max_size=12),
    spool=st.booleans(),
    drop_user_b=st.booleans(),
)
def test_every_call_is_counted_once(
    server: CaptureServer,
    tmp_path: Path,
    steps: list[tuple[str, Any]],
    spool: bool,
    drop_user_b: bool,
) -> None:
    """Random exports, answers, waits and flushes keep the books balanced at every step."""
    server.reset()  # the server fixture lives across examples
    clock = FakeClock()
    exporter = BucketSpanExporter(
        "trACCOUNT",
        endpoint=server.url,
        clock=clock,
        timeout=2,
        spool_dir=tmp_path / f"spool-{id(steps)}" if spool else False,
        before_send=(lambda call: None if call.user_id == "b" else call) if drop_user_b else None,
    )
    try:
        for kind, value in steps:
            if kind == "export":
                exporter.export(make_spans(*value))
            elif kind == "answers":
                server.script(*value)
            elif kind == "wait":
                clock.advance(value)
            else:
                exporter.force_flush()
            assert balanced(exporter.stats), (kind, exporter.stats)
    finally:
        exporter.shutdown()
    stats = exporter.stats
    assert balanced(stats), stats
    assert stats.pending == 0
