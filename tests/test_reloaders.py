"""``BucketSpanExporter.keep_in_spool``: calls to the spool now, instead of sending them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_bucket import BucketSpanExporter
from otel_bucket._spool_config import list_spools
from otel_bucket._spool_info import read_spool
from tests._capture import CaptureServer
from tests._spans import balanced, make_spans

EVENTS = [{"bucket.event": "Work", "enduser.id": f"u{i}"} for i in range(3)]


@pytest.fixture
def exporter(server: CaptureServer, tmp_path: Path) -> Iterator[BucketSpanExporter]:
    exp = BucketSpanExporter("k", endpoint=server.url, spool_dir=tmp_path, timeout=5)
    yield exp
    exp.shutdown()


def spooled(folder: Path) -> int:
    """Calls the spool in ``folder`` holds now."""
    return sum(read_spool(path).total for path in list_spools(folder))


def test_keep_in_spool_writes_calls_and_sends_nothing(
    exporter: BucketSpanExporter, server: CaptureServer, tmp_path: Path
) -> None:
    """The calls of the spans go to the spool, not to the endpoint; force_flush then sends them
    from there and empties it; every call is counted once."""
    assert exporter.keep_in_spool(make_spans(*EVENTS)) == 6  # a user and an event call each
    assert server.requests == []
    assert spooled(tmp_path) == 6
    assert exporter.force_flush()
    assert len(server.calls("event")) == 3
    assert spooled(tmp_path) == 0
    stats = exporter.stats
    assert (stats.spooled, stats.unspooled, stats.delivered) == (6, 6, 6)
    assert balanced(stats)


def test_keep_in_spool_without_a_spool_keeps_calls_in_the_backlog(server: CaptureServer) -> None:
    """No spool: nothing is written and nothing is lost; the calls wait for the next send."""
    exporter = BucketSpanExporter("k", endpoint=server.url, spool_dir=False)
    try:
        assert exporter.keep_in_spool(make_spans(*EVENTS)) == 0
        assert exporter.pending == 6
        assert exporter.force_flush()
        assert len(server.calls("event")) == 3
        assert balanced(exporter.stats)
    finally:
        exporter.shutdown()


def test_the_last_keep_stops_sending_and_gives_the_calls_back(
    exporter: BucketSpanExporter, server: CaptureServer, tmp_path: Path
) -> None:
    """``last=True``: the spool keeps everything, this exporter sends nothing more, and another
    process may take the calls at once (no lease of this one's left on them)."""
    exporter.keep_in_spool(make_spans(*EVENTS), last=True)
    exporter.force_flush()
    assert server.requests == []
    [path] = list_spools(tmp_path)
    assert (read_spool(path).total, read_spool(path).leased) == (6, 0)
    nxt = BucketSpanExporter("k", endpoint=server.url, spool_dir=tmp_path)
    try:
        assert nxt._drain_spool() == 0  # what `otel-bucket spool flush` does
    finally:
        nxt.shutdown()
    assert len(server.calls("event")) == 3
