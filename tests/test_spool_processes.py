"""The spool shared by real processes: concurrent claims, SIGKILL in the middle of writes, a dead
holder's leases, and writes that fail as on a full disk."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_bucket.ground._call import Call
from otel_bucket.spool._spool import Spool
from otel_bucket.spool._spool_paths import spool_path
from tests._capture import CaptureServer
from tests._running import Running, child_env, python, run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and resource limits"),
]


def worker(command: str, path: Path, *numbers: int) -> list[str]:
    return python("-m", "tests._spool_worker", command, str(path), *map(str, numbers))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A spool file in a directory of its own."""
    return tmp_path / "spool" / "s.db"


@pytest.fixture
def started() -> Iterator[list[Running]]:
    """Processes a test starts; killed at the end if they are still running."""
    procs: list[Running] = []
    yield procs
    for proc in procs:
        proc.kill()


def ids(line: str) -> list[int]:
    listed = line.split(" ", 1)[1] if " " in line else ""
    return [int(i) for i in listed.split(",") if i]


def go(proc: Running) -> None:
    os.kill(proc.proc.pid, signal.SIGUSR1)


def fill(path: Path, count: int) -> None:
    sp = Spool(path, max_bytes=1 << 40)
    for start in range(0, count, 500):
        stop = min(start + 500, count)
        sp.put([Call("event", {"event": "E", "userId": f"u{i}"}) for i in range(start, stop)])
    sp.close()


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def test_two_processes_claim_each_call_exactly_once(path: Path, started: list[Running]) -> None:
    """Two processes draining one spool at once: every call is claimed by exactly one of them."""
    count = 3000
    fill(path, count)
    a = Running(worker("claim", path, 20))
    b = Running(worker("claim", path, 20))
    started.extend([a, b])
    for proc in (a, b):
        proc.expect("^ready$")
    # Each takes a first batch while the other holds its own, so both surely take part ...
    firsts = []
    for proc in (a, b):
        go(proc)
        firsts.append(ids(proc.expect("^claimed ").string))
    assert all(firsts) and not set(firsts[0]) & set(firsts[1])
    for proc in (a, b):  # ... then both drain as fast as they can, side by side.
        go(proc)
    done = [int(proc.expect(r"^done (\d+)$", timeout=120).group(1)) for proc in (a, b)]
    assert a.wait() == 0 and b.wait() == 0
    claimed = [
        [i for line in proc.lines if line.startswith("claimed ") for i in ids(line)]
        for proc in (a, b)
    ]
    assert sorted(claimed[0] + claimed[1]) == list(range(1, count + 1))
    assert done == [len(claimed[0]), len(claimed[1])]
    assert Spool(path).info().total == 0


@pytest.mark.parametrize("after", [300, 2000, 6000])
def test_sigkill_during_writes_keeps_every_committed_call(
    after: int, path: Path, started: list[Running]
) -> None:
    """A process killed in the middle of a long run of puts: the file opens fine, and it holds
    every batch the process had reported committed, whole batches only."""
    proc = Running(worker("put", path, 100))
    started.append(proc)
    proc.expect(rf"^committed {after}$", timeout=120)
    os.kill(proc.proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    reported = max(int(line.split()[1]) for line in proc.lines if line.startswith("committed"))
    assert integrity(path) == "ok"
    spool = Spool(path)
    try:
        seqs = sorted(c.call.payload["attributes"]["seq"] for c in spool.claim(1_000_000))
    finally:
        spool.close()
    assert len(seqs) >= reported
    assert len(seqs) % 100 == 0, "a batch is stored whole or not at all"
    assert seqs == list(range(len(seqs)))
    assert not list(path.parent.glob("*.corrupt-*"))


def test_a_killed_holders_calls_are_claimable_at_once(path: Path, started: list[Running]) -> None:
    """A process of this machine holding calls: others skip them while it runs; killed with
    SIGKILL (no release), the next claim takes them at once, oldest first, long before the
    lease would have expired, also while the dead process is a zombie not yet waited for."""
    fill(path, 300)
    env = child_env(SPOOL_LEASE="600")
    holder = Running(worker("hold", path, 100), env=env)
    started.append(holder)
    held = ids(holder.expect("^claimed ").string)
    assert held == list(range(1, 101))
    alive = Spool(path)
    try:
        others = alive.claim(1000)
        assert [c.id for c in others] == list(range(101, 301))  # the holder still runs
        assert alive.ack([c.id for c in others]) == 200
    finally:
        alive.close()
    os.kill(holder.proc.pid, signal.SIGKILL)
    dead = Spool(path)
    try:
        # Waits until it is dead (SIGKILL: at once); WNOWAIT leaves it a zombie for wait().
        os.waitid(os.P_PID, holder.proc.pid, os.WEXITED | os.WNOWAIT)
        assert [c.id for c in dead.claim(1000)] == held
    finally:
        dead.close()
        assert holder.wait() == -signal.SIGKILL


def test_the_cli_tells_and_sends_what_a_killed_process_held(
    tmp_path: Path, server: CaptureServer, started: list[Running]
) -> None:
    """A process killed while it held every call of a spool: `otel-bucket spool` says they are
    held by a process that is gone (not "being sent"), and `otel-bucket spool flush` sends them
    at once, without waiting for the 10-minute lease or for that process."""
    directory = tmp_path / "spool"
    env = child_env(
        BUCKET_SPOOL_DIR=str(directory),
        BUCKET_TRACKING_KEY="k",
        BUCKET_ENDPOINT=server.url,
        SPOOL_LEASE="600",
    )
    path = spool_path(directory, server.url, "k")
    fill(path, 40)
    holder = Running(worker("hold", path, 40), env=env)
    started.append(holder)
    assert len(ids(holder.expect("^claimed ").string)) == 40
    os.kill(holder.proc.pid, signal.SIGKILL)
    assert holder.wait() == -signal.SIGKILL
    status = run([*python("-m", "otel_bucket"), "spool"], env=env)
    assert "  40 call(s): 40 event (40 held by a process that is gone" in status.stdout, (
        status.stdout + status.stderr
    )
    flushed = run([*python("-m", "otel_bucket"), "spool", "flush"], env=env)
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    assert "Another process" not in flushed.stdout
    assert "40 delivered" in flushed.stdout
    assert sorted(call["userId"] for call in server.calls("event")) == sorted(
        f"u{i}" for i in range(40)
    )


def test_a_holder_that_cannot_be_checked_keeps_its_lease_until_it_expires(path: Path) -> None:
    """A lease whose holder is not a process of this machine and PID namespace (a spool shared
    by containers, or a file written by an older version) is left to its expiry: no process
    is taken for dead that may be alive elsewhere. Nor is a live holder of this process."""
    fill(path, 3)
    holder = Spool(path, lease_seconds=30)
    holder.claim(3)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE calls SET lease_owner = ? WHERE id = 1", (f"{2**22 + 7}.elsewhere-0123",)
        )
        conn.execute("UPDATE calls SET lease_owner = ? WHERE id = 2", (f"{2**22 + 7}-0123",))
    now = Spool(path)
    later = Spool(path, clock=lambda: time.time() + 31)
    try:
        assert now.claim(10) == []
        assert [c.id for c in later.claim(10)] == [1, 2, 3]
    finally:
        now.close()
        later.close()
        holder.close()


def _flooded(result: subprocess.CompletedProcess[str]) -> tuple[int, str]:
    """Checks common to both ways of filling up: returns (calls stored, the one warning)."""
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "stored 200"
    match = re.fullmatch(r"stored (\d+) disabled True", lines[1])
    assert match, lines
    stored = int(match.group(1))
    assert lines[2] == f"kept {stored} ok", "every call put before the failure, and no damage"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1, result.stderr
    assert "otel-bucket spool off in this process" in warnings[0]
    assert "Traceback" not in result.stderr
    return stored, warnings[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE as on Linux")
def test_writes_refused_by_the_file_size_limit_turn_the_spool_off(path: Path) -> None:
    """Writes the file system refuses (past RLIMIT_FSIZE): put returns 0, one warning, no
    traceback; everything stored before is intact."""
    stored, _ = _flooded(run(worker("fill", path, 200)))
    assert stored >= 200
    spool = Spool(path)
    try:
        assert len(spool.claim(1_000_000)) == stored
    finally:
        spool.close()


def _can_mount_a_private_tmpfs(where: Path) -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = [unshare, "-Urm", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)]
    return subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0


def test_a_full_disk_turns_the_spool_off(tmp_path: Path) -> None:
    """A really full file system (a 1 MiB tmpfs in a private mount namespace): the spool
    fills it, then put returns 0 with one warning; all it stored is there, undamaged."""
    mount = tmp_path / "small"
    mount.mkdir()
    if not _can_mount_a_private_tmpfs(mount):
        pytest.skip("cannot mount a tmpfs in a user namespace here (unshare -Urm)")
    mount_then_run = 'mount -t tmpfs -o size=1m tmpfs "$1" && shift && exec "$@"'
    flood = worker("flood", mount / "s.db", 200)
    command = ["unshare", "-Urm", "sh", "-c", mount_then_run, "sh", str(mount), *flood]
    stored, warning = _flooded(run(command))
    assert 200 < stored < 2000  # it filled the 1 MiB, then stopped
    assert "database or disk is full" in warning
