"""Spool files of an old endpoint or tracking key are aged out by the other spools of their
directory (issue 19): old calls deleted, unused empty files removed, counted and logged."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_bucket import BucketSpanExporter
from otel_bucket.ground._call import Call
from otel_bucket.spool._spool import Spool
from otel_bucket.spool._spool_info import read_spool
from otel_bucket.spool._spool_paths import list_spools, spool_path
from tests._capture import CaptureServer
from tests._spans import make_spans
from tests.test_spool import Clock

HOUR = 3600.0
DAY = 24 * HOUR
START = 1_800_000_000.0


@pytest.fixture
def clock() -> Clock:
    """A clock the test moves, from START."""
    return Clock(START)


@pytest.fixture
def spools(tmp_path: Path) -> Iterator[list[Spool]]:
    """Spools a test opened: closed at its end."""
    opened: list[Spool] = []
    yield opened
    for sp in opened:
        sp.close()


def event(user: str) -> Call:
    return Call("event", {"event": "Export", "userId": user, "attributes": {"email": f"{user}@x"}})


def stored(
    directory: Path, endpoint: str, clock: Clock, *batches: tuple[float, int], max_age: float = 0
) -> Path:
    """A closed spool file for ``endpoint`` holding, per batch, ``count`` calls spooled at
    ``at`` (seconds after START); the spool's age limit ``max_age`` (else the default)."""
    path = spool_path(directory, endpoint, "old-key")
    now = [START]
    limits = {"max_age": max_age} if max_age else {}
    sp = Spool(path, clock=lambda: now[0], endpoint=endpoint, **limits)
    for at, count in batches:
        now[0] = START + at
        assert sp.put([event(f"u{i}") for i in range(count)]) == count
    sp.close()
    return path


def own(directory: Path, clock: Clock, spools: list[Spool], **options: float) -> Spool:
    """The spool of the process that starts now (its own file does not exist yet)."""
    sp = Spool(spool_path(directory, "https://now.example", "key"), clock=clock, **options)
    spools.append(sp)
    return sp


def test_a_starting_spool_ages_out_the_other_files(
    tmp_path: Path, clock: Clock, spools: list[Spool], caplog: pytest.LogCaptureFixture
) -> None:
    """Calls older than max_age leave every other file; files left empty are removed; one
    ERROR counts the calls, one INFO line names the files."""
    gone = stored(tmp_path, "https://gone.example", clock, (0, 30))
    partly = stored(tmp_path, "https://partly.example", clock, (0, 20), (47 * HOUR, 5))
    empty = stored(tmp_path, "https://empty.example", clock, (47 * HOUR, 1))
    drained = Spool(empty, clock=clock)
    drained.ack([c.id for c in drained.claim(10)])
    drained.close()
    clock.now = START + 48 * HOUR + 1
    with caplog.at_level(logging.INFO, logger="otel_bucket"):
        assert own(tmp_path, clock, spools).claim(10) == []
    assert list_spools(tmp_path) == [partly]
    assert read_spool(partly).total == 5
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert error == (
        f"otel-bucket spool dropped 50 call(s) older than 172800 s from 2 other spool file(s) "
        f"in {tmp_path} (an old endpoint or tracking key): they will never be sent"
    )
    [info] = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    names = ", ".join(sorted([gone.name, empty.name]))
    assert info == f"otel-bucket spool removed 2 unused file(s) from {tmp_path}: {names}"


def test_a_file_in_use_is_emptied_not_removed(
    tmp_path: Path, clock: Clock, spools: list[Spool]
) -> None:
    """A file another spool has open loses its old calls but stays; that spool goes on with it."""
    path = stored(tmp_path, "https://busy.example", clock, (0, 3))
    clock.now = START + 3 * DAY
    holder = Spool(path, clock=lambda: START, endpoint="https://busy.example")
    spools.append(holder)
    assert len(holder.claim(1)) == 1  # opened (its own clock: nothing is old to it)
    own(tmp_path, clock, spools).info()
    assert path.exists() and read_spool(path).total == 0
    assert holder.put([event("new")]) == 1
    assert read_spool(path).total == 1


def test_a_spool_whose_file_was_removed_starts_a_fresh_one(
    tmp_path: Path, clock: Clock, spools: list[Spool]
) -> None:
    """A file removed under an open spool (by hand, or a sweep that raced its opening): the next
    put goes into a new file at the path, never into the removed one."""
    sp = own(tmp_path, clock, spools)
    assert sp.put([event("a")]) == 1
    for name in os.listdir(tmp_path):
        os.remove(tmp_path / name)
    assert sp.put([event("b")]) == 1
    assert read_spool(sp.path).total == 1
    assert [c.call for c in sp.claim(10)] == [event("b")]


def test_files_set_aside_go_after_max_age(
    tmp_path: Path, clock: Clock, spools: list[Spool]
) -> None:
    """Damaged files moved aside (they too may hold emails) are removed once older than
    max_age, with their -wal; younger ones stay."""
    old = tmp_path / "spool-0123.db.corrupt-20270101T000000Z"
    young = tmp_path / "spool-0123.db.corrupt-20270115T000000Z"
    for path in (old, young, Path(f"{old}-wal")):
        path.write_bytes(b"junk")
    os.utime(old, (START - 49 * HOUR, START - 49 * HOUR))
    os.utime(young, (START - 47 * HOUR, START - 47 * HOUR))
    own(tmp_path, clock, spools).info()
    assert sorted(os.listdir(tmp_path)) == [young.name]


def test_it_sweeps_at_the_first_use_then_hourly(
    tmp_path: Path, clock: Clock, spools: list[Spool]
) -> None:
    """Not at construction; at the first use; again only once the interval has passed
    (max_age when shorter than an hour)."""
    path = stored(tmp_path, "https://gone.example", clock, (0, 1), max_age=100)
    clock.now = START + 200
    sp = own(tmp_path, clock, spools, max_age=100)
    assert path.exists()
    sp.info()
    assert not path.exists()
    stored(tmp_path, "https://gone.example", clock, (0, 1), max_age=100)
    clock.now += 99
    sp.info()
    assert path.exists()
    clock.now += 1
    sp.info()
    assert not path.exists()


def test_a_file_is_aged_out_by_its_own_age_limit(
    tmp_path: Path, clock: Clock, spools: list[Spool]
) -> None:
    """A file whose processes keep calls 7 days (BUCKET_SPOOL_MAX_AGE=7d) keeps its 3-day-old
    calls when a 48-hour spool sweeps; a file that records no limit goes by the sweeper's."""
    week = stored(tmp_path, "https://week.example", clock, (0, 2), max_age=7 * DAY)
    older = stored(tmp_path, "https://older.example", clock, (0, 2))
    db = sqlite3.connect(older, isolation_level=None)  # as an otel-bucket that did not record it
    db.execute("DELETE FROM meta WHERE name = 'max_age'")
    db.close()
    clock.now = START + 3 * DAY
    own(tmp_path, clock, spools).info()
    assert read_spool(week).total == 2
    assert not older.exists()


def test_other_users_and_foreign_files_are_left_alone(
    tmp_path: Path, clock: Clock, spools: list[Spool]
) -> None:
    """A file that is not a spool stays as it is; so does another user's (when root can make
    one)."""
    foreign = spool_path(tmp_path, "https://foreign.example", "k")
    foreign.write_bytes(b"not sqlite" * 100)
    theirs = stored(tmp_path, "https://theirs.example", clock, (0, 1))
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if is_root:
        os.chown(theirs, 65534, 65534)
    clock.now = START + 3 * DAY
    own(tmp_path, clock, spools).info()
    assert foreign.read_bytes() == b"not sqlite" * 100
    assert theirs.exists() is is_root


def test_an_exporter_ages_out_the_old_files_as_it_starts(
    tmp_path: Path, server: CaptureServer
) -> None:
    """The way users run it: a process with a spool in the directory ages out the file of an
    endpoint used three days ago, as it delivers its own calls."""
    ago = [os.path.getmtime(tmp_path) - 3 * DAY]
    old = spool_path(tmp_path, "https://old.example", "old-key")
    sp = Spool(old, clock=lambda: ago[0], endpoint="https://old.example")
    sp.put([event("u1")])
    sp.close()
    exporter = BucketSpanExporter("key", endpoint=server.url, spool_dir=tmp_path)
    try:
        assert exporter.export(make_spans({"enduser.id": "u", "bucket.event": "E"})).name == (
            "SUCCESS"
        )
        assert exporter.force_flush()
    finally:
        exporter.shutdown()
    assert not old.exists()
    assert len(server.calls("event")) == 1
