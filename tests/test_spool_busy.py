"""Another process holding the spool's lock is normal when processes share it (issue 20): said
at DEBUG while it only delays a look, WARNING when calls are lost, may be sent twice, or wait
too long."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_bucket.ground._call import Call
from otel_bucket.spool._spool import Spool
from otel_bucket.spool._spool_log import BUSY_BOUND, SpoolLog

CALL = Call("event", {"event": "Export", "userId": "u1"})


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A spool file holding two calls, closed."""
    where = tmp_path / "spool-0123.db"
    sp = Spool(where)
    sp.put([CALL, CALL])
    sp.close()
    return where


@pytest.fixture
def locked(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the write lock (as a process in the middle of a write)."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    yield other
    other.execute("ROLLBACK")
    other.close()


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_a_held_lock_that_only_delays_is_debug(
    path: Path, locked: sqlite3.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """claim, release and info find the file locked: nothing lost, nothing at WARNING; once the
    lock is free the calls come out as usual."""
    sp = Spool(path, busy_timeout=0.05)
    with caplog.at_level(logging.DEBUG, logger="otel_bucket"):
        assert sp.claim(10) == []
        assert sp.release([1]) == 0
    assert records(caplog, logging.WARNING) == []
    assert any("busy" in m and "trying again later" in m for m in records(caplog, logging.DEBUG))
    locked.execute("COMMIT")
    locked.execute("BEGIN")
    assert [c.call for c in sp.claim(10)] == [CALL, CALL]
    sp.close()


def test_calls_lost_or_sent_twice_are_warned(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A put that cannot get in loses its calls, an ack leaves answered calls to be sent
    again: each says so at WARNING."""
    sp = Spool(path, busy_timeout=0.05)
    taken = sp.claim(10)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with caplog.at_level(logging.WARNING, logger="otel_bucket"):
            assert sp.put([CALL]) == 0
            assert sp.ack([c.id for c in taken]) == 0
    finally:
        other.execute("ROLLBACK")
        other.close()
        sp.close()
    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == 2
    assert warnings[0].startswith(
        "otel-bucket spool locked by another process: 1 call(s) could not be kept ("
    )
    assert warnings[1].startswith(
        "otel-bucket spool locked by another process: 2 answered call(s) stay in the spool and "
        "may be sent again"
    )


def test_a_lock_that_lasts_beyond_the_bound_is_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Locked out for longer than BUSY_BOUND in a row: spooled calls wait, said once; a look
    that goes through starts the count again."""
    now = [0.0]
    log = SpoolLog(tmp_path / "s.db", 100.0, 1000, lambda: 0.0, monotonic=lambda: now[0])
    busy = sqlite3.OperationalError("database is locked")
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        log.busy(busy, None)
        now[0] = BUSY_BOUND - 1
        log.busy(busy, None)
        assert records(caplog, logging.WARNING) == []
        now[0] = BUSY_BOUND
        log.busy(busy, None)
        log.not_busy()
        now[0] = 2 * BUSY_BOUND + 1
        log.busy(busy, None)
    assert records(caplog, logging.WARNING) == [
        "otel-bucket spool locked by another process for 60 s (1 time(s)): spooled calls wait "
        "(database is locked)"
    ]
