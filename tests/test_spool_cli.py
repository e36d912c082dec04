"""``otel-bucket spool``: what each spool file holds, read without changing anything."""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from otel_bucket.cli import main
from otel_bucket.ground._call import Call, utc_iso
from otel_bucket.spool._spool import Spool
from otel_bucket.spool._spool_paths import list_spools, spool_path
from tests._running import python, run

KEY = "sk-cli-secret-key"
START = 1_800_000_000.0  # 2027-01-15T08:00:00Z
DAY = 86400.0


def make_spool(directory: Path, endpoint: str, key: str, calls: list[Call]) -> Path:
    """A spool with ``calls`` spooled 30 s apart, closed again."""
    now = [START]
    path = spool_path(directory, endpoint, key)
    sp = Spool(path, clock=lambda: now[0], endpoint=endpoint)
    for call in calls:
        sp.put([call])
        now[0] += 30
    sp.close()
    return path


def user(n: int) -> Call:
    return Call("user", {"userId": str(n)})


def ev(n: int) -> Call:
    return Call("event", {"event": "Export", "userId": str(n)})


def test_shows_each_spool_without_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Per file: the endpoint, calls per method in sending order, when spooled, size."""
    first = make_spool(
        tmp_path,
        "https://tracking.bucket.co",
        KEY,
        [ev(1), user(1), ev(2), Call("company", {"companyId": "c"})],
    )
    second = make_spool(tmp_path, "http://127.0.0.1:8000", "other-key", [ev(3)])
    assert main(["spool", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    blocks = {
        first.name: [
            f"{first.name}  https://tracking.bucket.co",
            "  4 call(s): 1 user, 1 company, 2 event",
            "  spooled 2027-01-15T08:00:00.000Z to 2027-01-15T08:01:30.000Z",
        ],
        second.name: [
            f"{second.name}  http://127.0.0.1:8000",
            "  1 call(s): 1 event",
            "  spooled 2027-01-15T08:00:00.000Z",
        ],
    }
    lines = out.splitlines()
    assert lines[0] == f"Spool directory: {tmp_path}"
    for name, expected in blocks.items():
        start = lines.index(expected[0])
        assert lines[start : start + 3] == expected
        assert lines[start + 3].endswith(" KiB on disk"), name
    assert lines[-1] == "2 spool file(s), 5 call(s) waiting."
    assert KEY not in out and "other-key" not in out


def test_it_reads_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Looking changes nothing: no file added or removed, leases and calls as they were."""
    path = make_spool(tmp_path, "https://tracking.bucket.co", KEY, [ev(1), ev(2)])
    holder = Spool(path)
    assert len(holder.claim(1)) == 1
    before = sorted(os.listdir(tmp_path))
    assert main(["spool", "--dir", str(tmp_path)]) == 0
    assert "  2 call(s): 2 event (1 being sent)" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == before
    other = Spool(path)
    assert [c.call for c in other.claim(5)] == [ev(2)]  # the lease still holds
    other.close()
    holder.close()


def test_a_damaged_file_is_reported_not_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that is not a spool: one line saying so, exit code 1, the file left as it was."""
    good = make_spool(tmp_path, "https://tracking.bucket.co", KEY, [ev(1)])
    bad = spool_path(tmp_path, "https://elsewhere", KEY)
    bad.write_bytes(b"not sqlite " * 500)
    assert main(["spool", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{bad.name}: cannot read it: damaged (file is not a database)" in out
    assert f"{good.name}  https://tracking.bucket.co" in out
    assert bad.read_bytes() == b"not sqlite " * 500
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([good.name, bad.name])


def test_files_set_aside_are_mentioned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Files the spool moved aside are counted, so that someone can look at them."""
    path = spool_path(tmp_path, "https://tracking.bucket.co", KEY)
    tmp_path.joinpath(path.name).write_bytes(b"junk" * 2000)
    sp = Spool(path)
    sp.put([ev(1)])
    sp.close()
    assert main(["spool", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 damaged or foreign file(s) set aside as *.corrupt-*, never read again." in out


def test_where_it_looks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dir, else BUCKET_SPOOL_DIR (off: says so), else the user cache directory; a missing
    directory is reported and not created."""
    monkeypatch.delenv("BUCKET_SPOOL_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("sys.platform", "linux")
    assert main(["spool"]) == 0
    assert capsys.readouterr().out == f"No spool files in {tmp_path / 'cache' / 'otel-bucket'}.\n"
    monkeypatch.setenv("BUCKET_SPOOL_DIR", str(tmp_path / "vol"))
    make_spool(tmp_path / "vol", "https://tracking.bucket.co", KEY, [ev(1)])
    assert main(["spool"]) == 0
    assert "1 spool file(s), 1 call(s) waiting." in capsys.readouterr().out
    monkeypatch.setenv("BUCKET_SPOOL_DIR", "off")
    assert main(["spool"]) == 0
    assert capsys.readouterr().out == "The spool is off (BUCKET_SPOOL_DIR=off).\n"
    assert main(["spool", "--dir", str(tmp_path / "vol")]) == 0
    assert "1 spool file(s)" in capsys.readouterr().out
    assert not (tmp_path / "cache").exists()


def test_in_a_real_process(tmp_path: Path) -> None:
    """`python -m otel_bucket spool --dir DIR` prints the same and exits 0, no traceback."""
    path = make_spool(tmp_path, "https://tracking.bucket.co", KEY, [ev(1), user(2)])
    result = run(python("-m", "otel_bucket", "spool", "--dir", str(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert f"{path.name}  https://tracking.bucket.co" in result.stdout
    assert "  2 call(s): 1 user, 1 event" in result.stdout
    assert result.stderr == ""


def test_help_names_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    """`otel-bucket spool --help` explains the command and --dir."""
    with pytest.raises(SystemExit) as info:
        main(["spool", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--dir" in out and "BUCKET_SPOOL_DIR" in out and "tracking key" in out


def made(n: int, at: float) -> Call:
    stamp = utc_iso(datetime.fromtimestamp(at, timezone.utc))
    return Call("event", {"event": "Export", "userId": str(n), "timestamp": stamp})


def test_calls_spooled_together_show_when_they_were_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 20: 500 calls made over 0.3 s and spooled in one go at exit: the listing shows the
    0.3 s over which they were made (their own timestamps), and the one moment of spooling."""
    calls = [made(i, START - 0.3 + i * 0.3 / 499) for i in range(500)]
    path = spool_path(tmp_path, "https://tracking.bucket.co", KEY)
    sp = Spool(path, clock=lambda: START, endpoint="https://tracking.bucket.co")
    assert sp.put(calls) == 500
    sp.close()
    assert main(["spool", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[3] == (
        "  made 2027-01-15T07:59:59.700Z to 2027-01-15T08:00:00.000Z,"
        " spooled 2027-01-15T08:00:00.000Z"
    )


def stale_spools(directory: Path) -> tuple[Path, Path, Path]:
    """Three files: calls from 3 days ago, calls of both then and now, and an empty file."""
    now = time.time()
    old = make_spool_at(directory, "https://gone.example", [(now - 3 * DAY, [ev(1), ev(2)])])
    mixed = make_spool_at(
        directory, "https://live.example", [(now - 3 * DAY, [ev(3)]), (now, [ev(4)])]
    )
    empty = make_spool_at(directory, "https://empty.example", [(now, [ev(5)])])
    sp = Spool(empty, clock=lambda: 0.0)  # its clock: nothing is old to it, nothing swept
    sp.ack([c.id for c in sp.claim(10)])
    sp.close()
    return old, mixed, empty


def make_spool_at(directory: Path, endpoint: str, batches: list[tuple[float, list[Call]]]) -> Path:
    """A closed spool with each batch of calls spooled at its own time, made apart and moved
    in (so that it does not age out the directory's other files), recording the default age
    limit (48h)."""
    path = spool_path(directory, endpoint, KEY)
    workshop = directory.parent / f"{directory.name}-workshop"
    at = [0.0]
    sp = Spool(workshop / path.name, clock=lambda: at[0], endpoint=endpoint, max_age=10 * DAY)
    for when, calls in batches:
        at[0] = when
        sp.put(calls)
    sp.close()
    db = sqlite3.connect(workshop / path.name, isolation_level=None)
    db.execute("UPDATE meta SET value = ? WHERE name = 'max_age'", (2 * DAY,))
    db.close()
    directory.mkdir(exist_ok=True)
    os.replace(workshop / path.name, path)
    return path


def test_stale_calls_and_files_are_named_with_how_to_remove_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 20: calls older than BUCKET_SPOOL_MAX_AGE are marked stale per file, are not
    counted as waiting, and the summary says how to remove them."""
    old, mixed, _ = stale_spools(tmp_path)
    assert main(["spool", "--dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index(f"{old.name}  https://gone.example")
    assert lines[start + 4] == "  stale: all 2 call(s) spooled more than 48h ago will never be sent"
    start = lines.index(f"{mixed.name}  https://live.example")
    assert lines[start + 4] == "  stale: 1 call(s) spooled more than 48h ago will never be sent"
    assert "3 spool file(s), 1 call(s) waiting." in lines
    assert lines[-1] == (
        "3 stale call(s) and 1 empty file(s): `otel-bucket spool prune` deletes the calls older "
        "than their spool's age limit (or --older-than) and the files left empty; spools also "
        "do it on their own, hourly."
    )


def test_prune_deletes_stale_calls_and_unused_empty_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`spool prune`: calls beyond their file's age limit deleted, files left empty removed
    unless a process has one open, what it did said per file; --older-than 0 empties all."""
    old, mixed, empty = stale_spools(tmp_path)
    holder = Spool(empty, clock=lambda: 0.0)  # its clock: nothing is old to it
    holder.info()  # a process has the empty file open
    try:
        assert main(["spool", "prune", "--dir", str(tmp_path)]) == 0
    finally:
        holder.close()
    out = capsys.readouterr().out.splitlines()
    assert sorted(out[1:4]) == sorted(
        [
            f"{old.name}  https://gone.example: 2 call(s) deleted, file removed",
            f"{mixed.name}  https://live.example: 1 call(s) deleted, 1 newer kept",
            f"{empty.name}  https://empty.example: 0 call(s) deleted, empty (kept: a process "
            "has it open)",
        ]
    )
    assert out[4] == "Deleted 3 call(s) spooled beyond their age limit and removed 1 file(s)."
    assert list_spools(tmp_path) == sorted([mixed, empty])
    assert main(["spool", "prune", "--dir", str(tmp_path)]) == 0  # the empty file is free now
    assert list_spools(tmp_path) == [mixed]
    assert main(["spool", "prune", "--older-than", "0", "--dir", str(tmp_path)]) == 0
    assert list_spools(tmp_path) == []
    assert "Deleted 1 call(s) spooled more than 0s ago and removed 1 file(s)." in (
        capsys.readouterr().out
    )


def test_prune_rejects_a_bad_age(capsys: pytest.CaptureFixture[str]) -> None:
    """--older-than takes a duration; anything else is a usage error naming it."""
    with pytest.raises(SystemExit) as info:
        main(["spool", "prune", "--older-than", "soon"])
    assert info.value.code == 2
    assert "--older-than" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX owners and modes")
def test_the_listing_says_a_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 19: a directory every user may write to is named, with why processes do not use
    it (see tests/test_spool_trust.py)."""
    place = tmp_path / "shared"
    place.mkdir()
    os.chmod(place, 0o777)
    assert main(["spool", "--dir", str(place)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == (
        f"Not used: {place} is writable by every user, who could replace the spool; chmod o-w "
        "it, or use another directory (BUCKET_SPOOL_DIR). Processes turn their spool off here "
        "(one warning each)."
    )
