"""The spool end to end, in separate processes: what one process could not deliver, the next
one delivers (issue 9)."""

from __future__ import annotations

import logging
import re
import sqlite3
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from otel_bucket import BucketSpanExporter
from otel_bucket.ground._call import Call
from otel_bucket.spool._spool import Spool
from otel_bucket.spool._spool_info import read_spool
from otel_bucket.spool._spool_paths import list_spools, spool_path
from tests._capture import CaptureServer, Reply
from tests._running import Running, child_env, free_port, python, run
from tests._spans import make_spans

KEY = "trSPOOL-e2e"

pytestmark = pytest.mark.slow

# Makes ``batches`` x 500 events (each with its number) for one user, flushing after each batch.
PRODUCER = textwrap.dedent(
    """
    import sys
    from opentelemetry import trace
    from otel_bucket import install
    processor = install(tracking_key=sys.argv[1], endpoint=sys.argv[2], timeout=1)
    tracer = trace.get_tracer("app")
    for batch in range(int(sys.argv[3])):
        for i in range(batch * 500, (batch + 1) * 500):
            attributes = {"enduser.id": "u1", "bucket.event": "Export", "bucket.attributes.i": i}
            tracer.start_span("export", attributes=attributes).end()
        processor.force_flush()
        print("spooled", processor.exporter.stats.spooled, flush=True)
    """
)

# Starts, makes no call of its own, and exits normally when its input ends.
DRAINER = textwrap.dedent(
    """
    import sys
    from otel_bucket import install
    install(tracking_key=sys.argv[1], endpoint=sys.argv[2], timeout=5)
    print("ready", flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture
def port() -> int:
    """A loopback port nobody listens on until ``server`` starts there."""
    return free_port()


@pytest.fixture
def refused(port: int) -> str:
    """The endpoint, refusing connections (a spool is per endpoint and key: the same URL comes
    back up later as ``server``)."""
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    """A spool directory of the test's own."""
    return tmp_path / "spool"


def _env(spool_dir: Path) -> dict[str, str]:
    return child_env(BUCKET_SPOOL_DIR=str(spool_dir))


def _numbers(server: CaptureServer) -> Counter[int]:
    return Counter(call["attributes"]["i"] for call in server.calls("event"))


def _drainer(spool_dir: Path, server: CaptureServer) -> Running:
    drainer = Running(python("-c", DRAINER, KEY, server.url), env=_env(spool_dir), stdin=True)
    drainer.expect("ready")
    return drainer


def _stop(drainer: Running) -> None:
    drainer.close_stdin()
    assert drainer.wait(30) == 0, drainer.lines


@pytest.fixture
def server(port: int) -> Iterator[CaptureServer]:
    """The endpoint back up: a capture server on the same port (start it after the outage)."""
    started: list[CaptureServer] = []

    class Later:
        def __getattr__(self, name: str) -> object:
            if not started:
                started.append(CaptureServer(port=port))
            return getattr(started[0], name)

    yield Later()  # type: ignore[misc]
    for srv in started:
        srv.close()


def test_calls_survive_an_outage_and_a_restart(
    refused: str, spool_dir: Path, server: CaptureServer
) -> None:
    """With the endpoint refusing, 500 events are spooled at a normal exit; the next process,
    with the endpoint up, delivers each exactly once with its original timestamp."""
    proc = run(python("-c", PRODUCER, KEY, refused, "1"), env=_env(spool_dir), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "kept 501 undelivered call(s) in its spool" in proc.stderr
    assert "lost" not in proc.stderr
    assert KEY not in proc.stderr and not any(KEY in p.name for p in spool_dir.iterdir())
    [spool] = list_spools(spool_dir)
    assert read_spool(spool).calls == {"user": 1, "event": 500}
    restarted = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    drainer = _drainer(spool_dir, server)
    server.wait_for(501, timeout=30)
    _stop(drainer)
    assert _numbers(server) == Counter(range(500))
    assert all(call["timestamp"] < restarted for call in server.calls("event"))
    assert read_spool(spool).total == 0


# Starts during an outage, makes no call of its own; says "down" once every call it took from
# the spool failed and went back there (nothing left in memory to probe the endpoint with).
WAITER = textwrap.dedent(
    """
    import sys, threading
    from otel_bucket import install
    processor = install(tracking_key=sys.argv[1], endpoint=sys.argv[2], timeout=1)
    exporter = processor.exporter
    tick = threading.Event()
    while not (exporter.stats.unspooled and exporter.pending == 0 and exporter._gate.is_down()):
        tick.wait(0.05)
    print("down", flush=True)
    sys.stdin.read()
    """
)


def test_a_process_started_in_an_outage_sends_its_spool_once_the_endpoint_is_back(
    refused: str, spool_dir: Path, server: CaptureServer
) -> None:
    """The spool holds a few calls, and the endpoint still refuses when the next process
    starts: what it takes from the spool fails and goes back, and nothing is left in memory to
    probe the endpoint with. When the endpoint answers again, the process sends the spool on
    its own, with no new traffic (a spooled call is its probe). Before, it sent nothing until
    a span came, and its timekeeper woke without waiting meanwhile (a third of a core)."""
    spool = Spool(spool_path(spool_dir, refused, KEY), endpoint=refused)
    calls = [
        Call("event", {"event": "Export", "userId": "u1", "attributes": {"i": i}}) for i in range(5)
    ]
    assert spool.put(calls) == 5
    spool.close()
    waiter = Running(python("-c", WAITER, KEY, refused), env=_env(spool_dir), stdin=True)
    try:
        waiter.expect("^down$", timeout=60)
        server.wait_for(5, timeout=60)  # the endpoint is back (the server starts here)
    finally:
        _stop(waiter)
    assert _numbers(server) == Counter(range(5))
    assert read_spool(spool.path).total == 0


def test_a_process_killed_while_spooling_leaves_a_sound_spool(
    refused: str, spool_dir: Path, server: CaptureServer
) -> None:
    """SIGKILL while a process keeps writing overflow to the spool: the file is intact and
    every call it had reported as spooled is delivered by the next process, once."""
    producer = Running(python("-c", PRODUCER, KEY, refused, "100"), env=_env(spool_dir))
    try:
        spooled = 0
        while spooled < 5000:
            spooled = int(producer.expect(r"spooled (\d+)", timeout=60).group(1))
        producer.proc.kill()
        producer.wait(20)
    finally:
        producer.kill()
    [spool] = list_spools(spool_dir)
    with sqlite3.connect(spool) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    held = read_spool(spool).calls
    assert held["event"] + held["user"] >= spooled
    drainer = _drainer(spool_dir, server)
    server.wait_for(held["event"] + 1, timeout=60)
    _stop(drainer)
    numbers = _numbers(server)
    assert max(numbers.values()) == 1  # each event once
    assert sum(numbers.values()) == held["event"]
    assert 1 <= len(server.calls("user")) <= held["user"]  # identical user calls: deduplicated
    assert read_spool(spool).total == 0


def test_two_processes_draining_one_spool_deliver_each_call_once(
    refused: str, spool_dir: Path, server: CaptureServer
) -> None:
    """Two processes start together on one spool of 3,000 calls: each call arrives once."""
    proc = run(python("-c", PRODUCER, KEY, refused, "6"), env=_env(spool_dir), timeout=60)
    assert proc.returncode == 0, proc.stderr
    [spool] = list_spools(spool_dir)
    assert read_spool(spool).total == 3001
    drainers = [_drainer(spool_dir, server), _drainer(spool_dir, server)]
    server.wait_for(3001, timeout=60)
    for drainer in drainers:
        _stop(drainer)
    assert _numbers(server) == Counter(range(3000))
    assert len(server.calls("user")) == 1
    assert read_spool(spool).total == 0


def test_an_unwritable_spool_directory_costs_one_warning(
    tmp_path: Path, refused: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A spool that cannot be created (its parent is a file): the exporter works as before,
    one warning, and the loss is counted and logged."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    exporter = BucketSpanExporter(KEY, endpoint=refused, timeout=1, spool_dir=blocker / "spool")
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        exporter.export(make_spans({"enduser.id": "u", "bucket.event": "E"}))
        exporter.shutdown()
    spool_warnings = [r for r in caplog.records if "spool" in r.getMessage().lower()]
    assert len(spool_warnings) == 1, [r.getMessage() for r in spool_warnings]
    assert exporter.stats.undelivered == 2 and exporter.stats.spooled == 0
    assert re.search(r"lost 2 call\(s\)", caplog.text)


def test_spool_flush_sends_now_and_says_so(
    refused: str, spool_dir: Path, server: CaptureServer
) -> None:
    """`otel-bucket spool flush` sends what waits and exits 0 once the spool is empty; with
    the endpoint down it exits 1 and keeps the calls."""
    proc = run(python("-c", PRODUCER, KEY, refused, "1"), env=_env(spool_dir), timeout=60)
    assert proc.returncode == 0, proc.stderr
    down = run(
        python("-m", "otel_bucket", "spool", "flush"),
        env=child_env(
            BUCKET_SPOOL_DIR=str(spool_dir),
            BUCKET_TRACKING_KEY=KEY,
            BUCKET_ENDPOINT=refused,
            BUCKET_TIMEOUT="1",
        ),
    )
    assert down.returncode == 1, down.stdout + down.stderr
    assert "501 still waiting" in down.stdout
    up = run(
        python("-m", "otel_bucket", "spool", "flush"),
        env=child_env(
            BUCKET_SPOOL_DIR=str(spool_dir), BUCKET_TRACKING_KEY=KEY, BUCKET_ENDPOINT=server.url
        ),
    )
    assert up.returncode == 0, up.stdout + up.stderr
    assert "501 delivered" in up.stdout
    assert _numbers(server) == Counter(range(500))
    assert KEY not in up.stdout + up.stderr


def _flush_env(spool_dir: Path, endpoint: str) -> dict[str, str]:
    return child_env(
        BUCKET_SPOOL_DIR=str(spool_dir),
        BUCKET_TRACKING_KEY=KEY,
        BUCKET_ENDPOINT=endpoint,
        BUCKET_TIMEOUT="30",
    )


def test_overlapping_flushes_tell_the_truth(
    refused: str, spool_dir: Path, server: CaptureServer
) -> None:
    """Issue 19: a second `spool flush` while a first one is sending the same calls waits for
    it, exits 0 and says another process sent them; the spool ends empty, each call sent once."""
    proc = run(python("-c", PRODUCER, KEY, refused, "1"), env=_env(spool_dir), timeout=60)
    assert proc.returncode == 0, proc.stderr
    [spool] = list_spools(spool_dir)
    server.route(lambda path, body: Reply(delay=60))  # answers once released
    flush = python("-m", "otel_bucket", "spool", "flush")
    first = Running(flush, env=_flush_env(spool_dir, server.url))
    second: Running | None = None
    try:
        deadline = time.monotonic() + 30
        while read_spool(spool).leased < 501:  # the first flush holds every call
            assert time.monotonic() < deadline, first.lines
            time.sleep(0.05)
        second = Running(flush, env=_flush_env(spool_dir, server.url))
        second.expect(r"Another process is sending 501 of these call\(s\); waiting for it")
        server.release()
        assert first.wait(60) == 0, first.lines
        assert second.wait(60) == 0, second.lines
    finally:
        first.kill()
        if second is not None:
            second.kill()
    assert second.lines[-1] == (
        f"501 call(s) were waiting for {server.url}: 0 delivered, 0 rejected, 501 sent by "
        "another process, 0 still waiting."
    )
    assert "501 delivered" in first.lines[-1]
    assert read_spool(spool).total == 0
    assert _numbers(server) == Counter(range(500))
