"""``otel-bucket spool``: what each spool file holds, read without changing anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from otel_bucket._mapping import Call
from otel_bucket._spool import Spool
from otel_bucket._spool_config import spool_path
from otel_bucket.cli import main
from tests._running import python, run

KEY = "sk-cli-secret-key"
START = 1_800_000_000.0  # 2027-01-15T08:00:00Z


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
    """Per file: the endpoint, calls per method in sending order, oldest and newest, size."""
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
            "  oldest 2027-01-15T08:00:00.000Z, newest 2027-01-15T08:01:30.000Z",
        ],
        second.name: [
            f"{second.name}  http://127.0.0.1:8000",
            "  1 call(s): 1 event",
            "  oldest 2027-01-15T08:00:00.000Z, newest 2027-01-15T08:00:00.000Z",
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
