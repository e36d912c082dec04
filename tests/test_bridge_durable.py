"""Durable acceptance: what the bridge reads of the exporter to decide between accepting a request
into memory, accepting it with the spool as overflow, and refusing it (503)."""

from __future__ import annotations

from pathlib import Path

from otel_bucket import BucketSpanExporter
from tests._running import free_port
from tests._spans import make_spans

KEY = "durable-test-key"


def dead_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_memory_pending_counts_the_backlog_but_not_the_spool(tmp_path: Path) -> None:
    """Calls kept for a retry are in memory; once spooled (at shutdown) they no longer are."""
    exporter = BucketSpanExporter(KEY, endpoint=dead_endpoint(), timeout=1, spool_dir=tmp_path)
    users = [{"enduser.id": f"u{i}", "bucket.event": "E"} for i in range(5)]
    exporter.export(make_spans(*users))
    assert exporter.memory_pending == 10  # 5 users and 5 events, waiting for a retry
    exporter.shutdown()
    assert exporter.stats.spooled == 10
    assert exporter.memory_pending == 0


def test_spool_has_room_until_its_files_reach_the_limit(tmp_path: Path) -> None:
    """No file yet: room. Files as large as spool_max_mb: no room."""
    exporter = BucketSpanExporter(
        KEY, endpoint=dead_endpoint(), timeout=1, spool_dir=tmp_path, spool_max_mb=0.05
    )
    assert exporter.spool_has_room()
    attributes = {f"bucket.attributes.a{i}": "x" * 40 for i in range(10)}
    for batch in range(3):
        events = [
            {"enduser.id": f"u{batch}-{i}", "bucket.event": "E", **attributes} for i in range(50)
        ]
        exporter.defer(make_spans(*events))
    exporter.shutdown()  # 300 calls of about 600 bytes go to a spool of 51 KiB
    assert exporter.stats.spooled == 300
    assert not exporter.spool_has_room()


def test_no_spool_no_room(tmp_path: Path) -> None:
    """With the spool off, or a spool that could not be created, there is no room."""
    off = BucketSpanExporter(KEY, endpoint=dead_endpoint(), spool_dir=False)
    assert not off.spool_has_room()
    off.shutdown()
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    broken = BucketSpanExporter(KEY, endpoint=dead_endpoint(), timeout=1, spool_dir=blocked)
    assert broken.spool_has_room()  # nothing tried yet
    broken.export(make_spans({"enduser.id": "u"}))
    broken.shutdown()  # the spool cannot create its file: it turns itself off
    assert broken.stats.spooled == 0
    assert not broken.spool_has_room()
