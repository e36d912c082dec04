"""The durable spool: calls in, oldest out under leases, limits, damaged files, settings."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_bucket.ground._call import Call
from otel_bucket.ground._config import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_BYTES,
    MIB,
    default_spool_dir,
    parse_duration,
    resolve_spool_dir,
    resolve_spool_max_age,
    resolve_spool_max_bytes,
)
from otel_bucket.spool._spool import Spool
from otel_bucket.spool._spool_db import APPLICATION_ID
from otel_bucket.spool._spool_info import read_spool
from otel_bucket.spool._spool_paths import list_spools, spool_path

KEY = "sk-secret-tracking-key-123"
ENDPOINT = "https://tracking.bucket.co"


class Clock:
    """Wall-clock seconds that move only when told."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """A clock the test moves."""
    return Clock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Where a spool file goes, in a directory that does not exist yet."""
    return spool_path(tmp_path / "spool", ENDPOINT, KEY)


@pytest.fixture
def spool(path: Path, clock: Clock) -> Iterator[Spool]:
    """A spool with an injected clock and a 60 s lease."""
    sp = Spool(path, clock=clock, lease_seconds=60, endpoint=ENDPOINT)
    yield sp
    sp.close()


def event(seq: int, **attributes: object) -> Call:
    """An event call numbered ``seq``, with a timestamp of its own."""
    return Call(
        "event",
        {
            "event": "Export",
            "userId": f"u{seq}",
            "attributes": {"seq": seq, **attributes},
            "timestamp": f"2026-11-27T14:03:{seq % 60:02d}.123Z",
        },
    )


def seqs(taken: list[object]) -> list[int]:
    return [c.call.payload["attributes"]["seq"] for c in taken]  # type: ignore[attr-defined]


def errors(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


# -- calls in and out --------------------------------------------------------------------------


def test_round_trip_keeps_order_payload_and_timestamp(spool: Spool, clock: Clock) -> None:
    """Claimed calls come back oldest first, exactly as put, with when they were spooled."""
    calls = [
        Call("user", {"userId": "42", "attributes": {"name": "Zoë ✓", "n": 2**70, "ok": True}}),
        Call("company", {"companyId": "c1", "userId": "42", "timestamp": "2026-01-02T03:04:05.6Z"}),
        event(1, ratio=0.1 + 0.2, tags="a,b", empty=""),
    ]
    assert spool.put(calls[:2]) == 2
    clock.now += 5
    assert spool.put(calls[2:]) == 1
    taken = spool.claim(10)
    assert [c.call for c in taken] == calls
    assert [c.spooled_at for c in taken] == [clock.now - 5, clock.now - 5, clock.now]
    assert taken[2].call.payload["timestamp"] == "2026-11-27T14:03:01.123Z"
    assert taken[2].call.payload["attributes"]["ratio"] == 0.1 + 0.2
    assert len({c.id for c in taken}) == 3
    assert spool.stored == 3


def test_claim_takes_the_oldest_not_leased(spool: Spool) -> None:
    """A claim never hands out what is leased; release gives it back in its old place."""
    spool.put([event(i) for i in range(6)])
    first = spool.claim(2)
    second = spool.claim(3)
    assert (seqs(first), seqs(second)) == ([0, 1], [2, 3, 4])
    assert spool.release([c.id for c in first]) == 2
    assert seqs(spool.claim(10)) == [0, 1, 5]
    assert spool.claim(10) == []


def test_ack_deletes_for_good(spool: Spool, path: Path) -> None:
    """Acked calls are gone, also for a new object on the same file; an unknown id counts 0."""
    spool.put([event(i) for i in range(3)])
    taken = spool.claim(2)
    assert spool.ack([c.id for c in taken]) == 2
    assert spool.ack([c.id for c in taken] + [999]) == 0
    assert spool.acked == 2
    spool.close()
    again = Spool(path)
    try:
        assert seqs(again.claim(10)) == [2]
    finally:
        again.close()


def test_an_expired_lease_can_be_claimed_again(path: Path, clock: Clock) -> None:
    """A holder that went quiet loses its calls when the lease ends; its late release cannot
    take them from the new holder, its late ack still deletes them."""
    a = Spool(path, clock=clock, lease_seconds=60)
    b = Spool(path, clock=clock, lease_seconds=60)
    c = Spool(path, clock=clock, lease_seconds=60)
    try:
        a.put([event(i) for i in range(4)])
        held = a.claim(2)
        clock.now += 30
        assert seqs(b.claim(10)) == [2, 3]
        clock.now += 29
        assert b.claim(10) == []
        clock.now += 1  # a's lease ends now; b's lasts 30 s more
        retaken = b.claim(1)
        assert seqs(retaken) == [0]
        assert a.release([c.id for c in held]) == 1  # only seq 1 was still a's
        assert seqs(c.claim(10)) == [1]
        assert a.ack([held[0].id]) == 1  # delivered by a after all: gone
        assert b.ack([retaken[0].id]) == 0
    finally:
        for sp in (a, b, c):
            sp.close()


def test_close_gives_leases_back(path: Path, clock: Clock) -> None:
    """close() ends this object's leases at once, without waiting for them to expire."""
    a = Spool(path, clock=clock)
    b = Spool(path, clock=clock)
    try:
        a.put([event(i) for i in range(3)])
        assert len(a.claim(3)) == 3
        assert b.claim(3) == []
        a.close()
        assert seqs(b.claim(3)) == [0, 1, 2]
        assert a.put([event(3)]) == 1  # a closed spool opens again when used
    finally:
        a.close()
        b.close()


def test_retire_gives_leases_back_and_claims_no_more(path: Path, clock: Clock) -> None:
    """retire() (a process that sends no more: a reloader's child at Ctrl-C, the exporter at
    shutdown): its leases end, a later claim from it (another of its threads, racing) takes
    nothing, so nothing stays leased by a process about to be killed; puts still go in."""
    a = Spool(path, clock=clock)
    b = Spool(path, clock=clock)
    try:
        a.put([event(i) for i in range(3)])
        assert len(a.claim(2)) == 2
        a.retire()
        assert a.claim(3) == []
        assert a.info().leased == 0
        assert a.put([event(3)]) == 1
        assert seqs(b.claim(10)) == [0, 1, 2, 3]
    finally:
        a.close()
        b.close()


def test_calls_that_are_not_json_are_counted_not_stored(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    """A payload JSON cannot carry (NaN) is not stored: one ERROR, counted in dropped."""
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        stored = spool.put([event(0), event(1, bad=float("nan")), event(2)])
    assert stored == 2
    assert spool.dropped == 1
    assert errors(caplog, logging.ERROR) == ["otel-bucket spool could not keep 1 call(s): not JSON"]
    assert seqs(spool.claim(5)) == [0, 2]


def test_threads_share_one_spool(spool: Spool) -> None:
    """Threads putting and claiming at once: every call is claimed exactly once."""
    claimed: list[int] = []
    lock = threading.Lock()

    def producer(base: int) -> None:
        for i in range(0, 200, 10):
            spool.put([event(base + i + j) for j in range(10)])

    def consumer() -> None:
        for _ in range(200):
            taken = spool.claim(7)
            spool.ack([c.id for c in taken])
            with lock:
                claimed.extend(seqs(taken))

    threads = [threading.Thread(target=producer, args=(b,)) for b in (0, 1000, 2000)]
    threads += [threading.Thread(target=consumer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claimed.extend(seqs(spool.claim(1000)))
    expected = [b + i for b in (0, 1000, 2000) for i in range(200)]
    assert sorted(claimed) == expected


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_connection(spool: Spool, clock: Clock) -> None:
    """After fork() the child uses the spool through a connection of its own, holds leases of
    its own, and the parent's connection goes on working."""
    spool.put([event(i) for i in range(4)])
    parent_held = spool.claim(1)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it claimed, then leave without cleanup
        code = 1
        try:
            taken = spool.claim(10)
            os.write(write, ",".join(map(str, seqs(taken))).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_claimed = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_claimed == "1,2,3"
    assert spool.claim(10) == []  # the child's leases hold against the parent
    assert spool.release([c.id for c in parent_held]) == 1
    assert spool.put([event(4)]) == 1
    assert seqs(spool.claim(10)) == [0, 4]


# -- on disk -----------------------------------------------------------------------------------


def test_nothing_is_created_before_the_first_put(path: Path) -> None:
    """Claim, ack, release, info and close on a spool that was never written create nothing."""
    sp = Spool(path)
    assert sp.claim(5) == []
    assert sp.ack([1]) == 0
    assert sp.release([1]) == 0
    info = sp.info()
    assert (info.total, info.size, info.oldest, info.path) == (0, 0, None, path)
    sp.close()
    assert not path.parent.exists()
    assert sp.put([event(0)]) == 1
    assert path.is_file()


def test_directory_and_files_are_private(path: Path, spool: Spool) -> None:
    """The directory is created 0700 and the file, its -wal and -shm 0600, whatever the umask."""
    previous = os.umask(0)
    try:
        assert spool.put([event(0)]) == 1
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == [path.name, f"{path.name}-shm", f"{path.name}-wal"]
    for name in files:
        assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name


def test_the_file_never_holds_the_tracking_key(path: Path, spool: Spool) -> None:
    """Neither the file's name nor its content carries the key; the endpoint is kept without
    any user, password or query (masked)."""
    sp = Spool(path, endpoint="https://user:pw@tracking.example/v1?token=pw")
    try:
        sp.put([event(0)])
        assert sp.info().endpoint == "https://***@tracking.example/v1?***"
    finally:
        sp.close()
    assert KEY not in str(path)
    for name in os.listdir(path.parent):
        data = (path.parent / name).read_bytes()
        assert KEY.encode() not in data
        assert b"pw@" not in data
    assert KEY not in repr(sp)


def _unwritable(tmp_path: Path, how: str) -> Path:
    if how == "under-a-file":  # holds for root too: nothing can be created under a file
        (tmp_path / "file").write_text("")
        return tmp_path / "file" / "spool" / "s.db"
    if how == "proc":  # /proc takes no new directories, not even from root
        return Path("/proc/self/otel-bucket-spool/s.db")
    directory = tmp_path / "ro"
    directory.mkdir()
    directory.chmod(0o500)
    return directory / "spool" / "s.db"


@pytest.mark.parametrize(
    "how",
    [
        "under-a-file",
        pytest.param(
            "proc", marks=pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc")
        ),
        pytest.param(
            "chmod-0500",
            marks=pytest.mark.skipif(
                not hasattr(os, "geteuid") or os.geteuid() == 0,
                reason="root writes through chmod 0500; the other cases cover root",
            ),
        ),
    ],
)
def test_an_unwritable_place_turns_the_spool_off_with_one_warning(
    how: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Put returns 0 and raises nothing; one warning, however often it is tried again."""
    sp = Spool(_unwritable(tmp_path, how))
    with caplog.at_level(logging.DEBUG, logger="otel_bucket"):
        assert sp.put([event(0)]) == 0
        assert sp.put([event(1)]) == 0
        assert sp.claim(1) == []
        sp.close()
    warnings = errors(caplog, logging.WARNING)
    assert len(warnings) == 1, caplog.text
    assert "otel-bucket spool off in this process" in warnings[0]
    assert not errors(caplog, logging.ERROR)
    assert sp.disabled


# -- limits ------------------------------------------------------------------------------------


def test_size_limit_drops_the_oldest_with_one_error(
    path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Beyond max_bytes the oldest calls go, the file stays within it, one ERROR counts them."""
    limit = 256 * 1024
    sp = Spool(path, clock=clock, max_bytes=limit)
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        for start in range(0, 300, 100):
            assert sp.put([event(i, pad="x" * 400) for i in range(start, start + 100)]) == 100
            assert not errors(caplog, logging.ERROR)  # 300 calls of ~0.5 KiB fit
        assert sp.put([event(i, pad="x" * 400) for i in range(300, 500)]) == 200
    kept = seqs(sp.claim(1000))
    assert kept == list(range(500 - len(kept), 500))  # the newest, none missing
    dropped = 500 - len(kept)
    assert sp.dropped == dropped > 0
    assert errors(caplog, logging.ERROR) == [
        f"otel-bucket spool dropped {dropped} call(s) that will never be sent: 0 older than "
        f"172800 s, {dropped} beyond {limit} bytes ({path.name})"
    ]
    sp.close()
    assert path.stat().st_size <= limit


@pytest.mark.parametrize("pad", [0, 1500, 6000])
def test_the_file_stays_within_max_bytes_whatever_the_call_size(path: Path, pad: int) -> None:
    """The limit holds for the file itself, for small calls and for calls larger than a page."""
    limit = 256 * 1024
    sp = Spool(path, max_bytes=limit)
    for start in range(0, 1000, 50):
        sp.put([event(i, pad="y" * pad) for i in range(start, start + 50)])
    sp.close()
    assert path.stat().st_size <= limit
    assert read_spool(path).total > 0


def test_drop_errors_come_once_a_minute_with_the_sum(
    path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Repeated drops during a long outage: one ERROR a minute with the sum, the rest at close."""
    sp = Spool(path, clock=clock, max_bytes=64 * 1024)
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        for i in range(0, 2000, 100):
            sp.put([event(j, pad="z" * 200) for j in range(i, i + 100)])
            clock.now += 1
        during = errors(caplog, logging.ERROR)
        clock.now += 60
        sp.put([event(j, pad="z" * 200) for j in range(2000, 2100)])
        after_a_minute = errors(caplog, logging.ERROR)
        sp.put([event(j, pad="z" * 200) for j in range(2100, 2200)])
        sp.close()
    final = errors(caplog, logging.ERROR)
    assert len(during) == 1
    assert len(after_a_minute) == 2
    assert len(final) == 3
    counted = sum(int(line.split()[3]) for line in final)
    assert counted == sp.dropped == 2200 - Spool(path).info().total


def test_age_limit_drops_old_calls_on_put_and_on_open(
    path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Calls older than max_age go when a put or a newly opened spool enforces the limit."""
    sp = Spool(path, clock=clock, max_age=100)
    sp.put([event(0), event(1), event(2)])
    clock.now += 60
    sp.put([event(3)])
    clock.now += 50  # the first three are 110 s old
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        sp.put([event(4)])
    assert sp.dropped == 3
    assert errors(caplog, logging.ERROR) == [
        f"otel-bucket spool dropped 3 call(s) that will never be sent: 3 older than 100 s, "
        f"0 beyond {DEFAULT_MAX_BYTES} bytes ({path.name})"
    ]
    sp.close()
    caplog.clear()
    clock.now += 55  # event 3 is now 105 s old
    later = Spool(path, clock=clock, max_age=100)
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        assert seqs(later.claim(10)) == [4]
    assert later.dropped == 1
    assert len(errors(caplog, logging.ERROR)) == 1
    later.close()


# -- damaged and foreign files -----------------------------------------------------------------


def _aside(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.corrupt-*"))


def test_a_file_that_is_not_sqlite_is_moved_aside(
    path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage where the spool should be: moved aside with a warning, a fresh spool started."""
    path.parent.mkdir()
    garbage = os.urandom(8192)
    path.write_bytes(garbage)
    sp = Spool(path, clock=clock)
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        assert sp.put([event(0)]) == 1
    (moved,) = _aside(path)
    assert moved.name == f"{path.name}.corrupt-20270115T080000Z"
    assert moved.read_bytes() == garbage
    warnings = errors(caplog, logging.WARNING)
    assert len(warnings) == 1
    assert "moved it to" in warnings[0] and moved.name in warnings[0]
    assert seqs(sp.claim(5)) == [0]
    sp.close()


def test_a_foreign_sqlite_file_is_moved_aside_untouched(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Somebody else's SQLite database: left as it was under a new name; a claim creates nothing."""
    path.parent.mkdir()
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE calls (id INTEGER PRIMARY KEY, payload TEXT)")
        other.execute("INSERT INTO calls (payload) VALUES ('theirs')")
    other.close()
    before = path.read_bytes()
    sp = Spool(path)
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        assert sp.claim(5) == []
    (moved,) = _aside(path)
    assert moved.read_bytes() == before
    assert not path.exists()
    assert "not an otel-bucket spool" in errors(caplog, logging.WARNING)[0]
    assert sp.put([event(1)]) == 1
    assert seqs(sp.claim(5)) == [1]
    sp.close()


def test_a_damaged_spool_is_moved_aside(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A spool whose pages were overwritten fails its check on open and is replaced."""
    sp = Spool(path)
    sp.put([event(i, pad="p" * 500) for i in range(200)])
    sp.close()
    with open(path, "r+b") as f:  # keep the header page, wreck the b-tree pages after it
        f.seek(4096)
        f.write(b"\xff" * 4096 * 8)
    again = Spool(path)
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        assert again.claim(5) == []
    assert len(_aside(path)) == 1
    assert len(errors(caplog, logging.WARNING)) == 1
    assert again.put([event(7)]) == 1
    assert seqs(again.claim(5)) == [7]
    again.close()


def test_a_newer_spool_is_left_alone(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A file written by a newer otel-bucket (higher schema version) is neither used nor moved."""
    path.parent.mkdir()
    with sqlite3.connect(path) as newer:
        newer.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        newer.execute("PRAGMA user_version = 99")
        newer.execute("CREATE TABLE calls (x)")
    newer.close()
    before = path.read_bytes()
    sp = Spool(path)
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        assert sp.put([event(0)]) == 0
    assert path.read_bytes() == before
    assert not _aside(path)
    assert "newer otel-bucket" in errors(caplog, logging.WARNING)[0]
    assert sp.disabled


# -- info --------------------------------------------------------------------------------------


def test_info_counts_per_method_and_times(spool: Spool, clock: Clock, path: Path) -> None:
    """info() tells calls per method, leased calls, oldest and newest, size and endpoint."""
    spool.put([Call("user", {"userId": "1"}), Call("company", {"companyId": "c"})])
    clock.now += 30
    spool.put([event(0), event(1), event(2)])
    spool.claim(1)
    info = spool.info()
    assert info.calls == {"company": 1, "event": 3, "user": 1}
    assert (info.total, info.leased) == (5, 1)
    assert (info.oldest, info.newest) == (clock.now - 30, clock.now)
    assert info.size >= path.stat().st_size > 0
    assert info.endpoint == ENDPOINT
    assert read_spool(path).calls == info.calls


# -- settings ----------------------------------------------------------------------------------


def test_default_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """$XDG_CACHE_HOME when absolute, else ~/.cache; a relative XDG value is ignored."""
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_spool_dir() == tmp_path / "xdg" / "otel-bucket"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert default_spool_dir() == tmp_path / "home" / ".cache" / "otel-bucket"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_spool_dir() == tmp_path / "home" / ".cache" / "otel-bucket"


def test_default_dir_on_macos_and_windows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """~/Library/Caches on macOS; %LOCALAPPDATA% on Windows."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(sys, "platform", "darwin")
    assert default_spool_dir() == tmp_path / "Library" / "Caches" / "otel-bucket"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "Local"))
    assert default_spool_dir() == tmp_path / "Local" / "otel-bucket"


def test_no_home_turns_the_default_off_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a home directory there is no default: a warning and no spool, not a crash."""
    monkeypatch.delenv("BUCKET_SPOOL_DIR")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(os.path, "expanduser", lambda p: p)  # as when HOME and pwd fail
    with pytest.raises(RuntimeError, match="home directory"):
        default_spool_dir()
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        assert resolve_spool_dir() is None
    assert "BUCKET_SPOOL_DIR" in caplog.text


def test_spool_path_is_a_hash_per_endpoint_and_key(tmp_path: Path) -> None:
    """One file per (endpoint, key), named by a hash; listed by list_spools, nothing else is."""
    a = spool_path(tmp_path, ENDPOINT, KEY)
    assert a == spool_path(str(tmp_path), ENDPOINT, KEY)
    others = {
        spool_path(tmp_path, ENDPOINT, "other"),
        spool_path(tmp_path, "http://127.0.0.1:8000", KEY),
        spool_path(tmp_path, "ab", "c"),
        spool_path(tmp_path, "a", "bc"),
    }
    assert len(others | {a}) == 5
    assert KEY not in a.name and a.parent == tmp_path
    for name in (a.name, f"{a.name}-wal", f"{a.name}.corrupt-20260101T000000Z", "notes.db"):
        (tmp_path / name).write_text("")
    assert list_spools(tmp_path) == [a]
    assert list_spools(tmp_path / "missing") == []
    with pytest.raises(TypeError, match="tracking_key"):
        spool_path(tmp_path, ENDPOINT, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argument", "env", "expected"),
    [
        (None, None, "default"),
        (None, "off", None),
        (None, " OFF ", None),
        (None, "/var/lib/otel-bucket", Path("/var/lib/otel-bucket")),
        (None, "   ", "default"),
        (False, "/var/lib/otel-bucket", None),
        ("/srv/spool", "off", Path("/srv/spool")),
        (Path("/srv/spool"), None, Path("/srv/spool")),
        ("relative", None, Path.cwd() / "relative"),
        ("off", None, None),
    ],
)
def test_spool_dir_precedence(
    argument: object,
    env: str | None,
    expected: object,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Argument beats BUCKET_SPOOL_DIR beats the cache directory; False and 'off' turn it off."""
    monkeypatch.delenv("BUCKET_SPOOL_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(sys, "platform", "linux")
    if env is not None:
        monkeypatch.setenv("BUCKET_SPOOL_DIR", env)
    want = tmp_path / "otel-bucket" if expected == "default" else expected
    assert resolve_spool_dir(argument) == want


@pytest.mark.parametrize(
    ("argument", "error", "message"),
    [
        (True, TypeError, "spool_dir must be a path or False, got bool"),
        (3, TypeError, "spool_dir must be a path or False, got int"),
        ("", ValueError, "spool_dir must not be empty"),
        ("a\0b", ValueError, "spool_dir must not contain a NUL"),
    ],
)
def test_bad_spool_dir_raises_naming_it(argument: object, error: type, message: str) -> None:
    """A malformed spool_dir raises, naming the argument."""
    with pytest.raises(error, match=message):
        resolve_spool_dir(argument)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3600", 3600), ("90m", 5400), ("48h", 172800), (" 2d ", 172800), ("1.5s", 1.5), (30, 30)],
)
def test_durations(text: object, seconds: float) -> None:
    """Seconds, or a number with s, m, h or d."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["h", "-1h", "0", "soon", "nan", "inf", "1w", "1e400"])
def test_bad_durations(text: str) -> None:
    """Anything else is a ValueError."""
    with pytest.raises(ValueError, match="must be"):
        parse_duration(text)


def test_limits_from_arguments_and_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """BUCKET_SPOOL_MAX_MB and BUCKET_SPOOL_MAX_AGE; a bad value warns and gives the default."""
    assert resolve_spool_max_bytes() == DEFAULT_MAX_BYTES == 50 * MIB
    assert resolve_spool_max_age() == DEFAULT_MAX_AGE == 48 * 3600
    assert resolve_spool_max_bytes(10) == 10 * MIB
    assert resolve_spool_max_age("2h") == 7200
    monkeypatch.setenv("BUCKET_SPOOL_MAX_MB", "0.5")
    monkeypatch.setenv("BUCKET_SPOOL_MAX_AGE", "30m")
    assert resolve_spool_max_bytes() == MIB // 2
    assert resolve_spool_max_age() == 1800
    assert resolve_spool_max_bytes(1) == MIB  # the argument wins
    monkeypatch.setenv("BUCKET_SPOOL_MAX_MB", "lots")
    monkeypatch.setenv("BUCKET_SPOOL_MAX_AGE", "forever")
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        assert resolve_spool_max_bytes() == DEFAULT_MAX_BYTES
        assert resolve_spool_max_age() == DEFAULT_MAX_AGE
    assert "BUCKET_SPOOL_MAX_MB='lots'" in caplog.text
    assert "BUCKET_SPOOL_MAX_AGE='forever'" in caplog.text


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: resolve_spool_max_bytes(0),
            ValueError,
            "spool_max_mb must be a number of MiB > 0",
        ),
        (lambda: resolve_spool_max_bytes(True), TypeError, "spool_max_mb must be a number"),
        (lambda: resolve_spool_max_age(-5), ValueError, "spool_max_age must be a duration > 0"),
        (lambda: resolve_spool_max_age([1]), TypeError, "spool_max_age must be a number"),
        (lambda: Spool(3), TypeError, "path must be a path"),  # type: ignore[arg-type]
        (lambda: Spool("s", max_bytes=0), ValueError, "max_bytes must be >= 1"),
        (lambda: Spool("s", max_bytes=1.5), TypeError, "max_bytes must be an integer"),  # type: ignore[arg-type]
        (lambda: Spool("s", max_age=float("nan")), ValueError, "max_age must be a finite"),
        (lambda: Spool("s", lease_seconds=0), ValueError, "lease_seconds must be a finite"),
        (lambda: Spool("s", clock=1), TypeError, "clock must be callable"),  # type: ignore[arg-type]
        (lambda: Spool("s").claim(0), ValueError, "limit must be >= 1"),
        (lambda: Spool("s").claim("3"), TypeError, "limit must be an integer"),  # type: ignore[arg-type]
        (lambda: Spool("s").ack(["1"]), TypeError, "ids must be integers"),  # type: ignore[list-item]
        (lambda: Spool("s").put([{"a": 1}]), TypeError, "calls must hold Call objects"),  # type: ignore[list-item]
    ],
)
def test_bad_arguments_raise_naming_them(call: object, error: type, message: str) -> None:
    """Bad arguments raise TypeError/ValueError naming the argument (and create nothing)."""
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]
    assert not os.path.exists("s")
