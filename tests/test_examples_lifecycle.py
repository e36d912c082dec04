"""The lifecycle examples run for real against a devserver on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_bucket.devserver import DevServer
from tests._running import child_env, python, run


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevServer]:
    server = DevServer(port=0, db_path=tmp_path / "dev.sqlite3").start()
    yield server
    server.stop()


def test_serverless_handler_flushes_before_the_process_is_reclaimed(dev: DevServer) -> None:
    """serverless.py: three invocations, then os._exit(): every event was flushed already."""
    env = child_env(BUCKET_ENDPOINT=dev.url, BUCKET_TRACKING_KEY="dev")
    result = run(python("examples/serverless.py"), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("'analytics': 'delivered'") == 3
    snapshot = dev.snapshot(limit=100)
    assert snapshot.counts["event"] == 3
    assert snapshot.counts["rejected"] == 0
    invoices = sorted(c.body["userId"] for c in snapshot.calls if c.method == "event")
    assert invoices == ["42", "42", "43"]
