"""The ``otel-bucket`` command: help, version, devserver (errors, lines, Ctrl-C) and demo."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import requests

from otel_bucket import __version__
from otel_bucket.cli import main
from tests._running import Running, child_env, python, run


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the installed version."""
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"otel-bucket {__version__}\n"


@pytest.mark.parametrize("argv", [["--help"], ["devserver", "--help"], ["demo", "--help"]])
def test_help_is_clear(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Each help names what the command does."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "Bucket" in out
    if argv[0] == "devserver":
        for option in ("--host", "--port", "--db", "--key", "--fail-rate"):
            assert option in out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a command the help goes to stderr and the exit code is 2."""
    assert main([]) == 2
    assert "devserver" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "99999"], "argument --port: port must be from 0 to 65535, got 99999"),
        (["--port", "http"], "argument --port: not a port number: 'http'"),
        (["--fail-rate", "1.5"], "argument --fail-rate: must be between 0 and 1, got 1.5"),
        (["--fail-rate", "nan"], "argument --fail-rate: must be between 0 and 1, got nan"),
        (["--key", ""], "argument --key: not a tracking key: ''"),
        (["--colour"], "unrecognized arguments: --colour"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad option is one line on stderr, exit code 2, no usage dump, no traceback."""
    with pytest.raises(SystemExit) as info:
        main(["devserver", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("otel-bucket")
    assert ": error: " in err
    assert message in err


def test_port_in_use_is_one_line_and_exit_2(
    taken_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port that is taken gives one line and exit code 2."""
    code = main(["devserver", "--port", str(taken_port), "--db", str(tmp_path / "db")])
    assert code == 2
    err = capsys.readouterr().err
    assert err == (
        f"otel-bucket devserver: error: cannot listen on 127.0.0.1:{taken_port}: "
        "address already in use\n"
    )


@pytest.mark.parametrize("where", ["under-a-file", "a-folder"])
def test_unwritable_db_is_one_line_and_exit_2(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database path that cannot be written gives one line and exit code 2."""
    (tmp_path / "file").write_text("")
    db = tmp_path / "file" / "dev.sqlite3" if where == "under-a-file" else tmp_path
    assert main(["devserver", "--port", "0", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("otel-bucket devserver: error: cannot ")
    assert str(db if where == "a-folder" else db.parent) in err


def test_bad_port_in_a_real_process_has_no_traceback(taken_port: int, tmp_path: Path) -> None:
    """`python -m otel_bucket devserver` on a taken port: exit 2, exactly one line."""
    db = str(tmp_path / "dev.sqlite3")
    result = run(python("-m", "otel_bucket", "devserver", "--port", str(taken_port), "--db", db))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "address already in use" in result.stderr


def test_console_script_is_installed() -> None:
    """The `otel-bucket` console script runs."""
    script = shutil.which("otel-bucket") or str(Path(sys.executable).parent / "otel-bucket")
    result = run([script, "--version"])
    assert result.returncode == 0
    assert result.stdout.strip() == f"otel-bucket {__version__}"


def test_devserver_prints_a_line_per_call_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """The devserver says where it listens, prints each call, and Ctrl-C stops it with 0."""
    db = tmp_path / "dev.sqlite3"
    args = ["-m", "otel_bucket", "devserver", "--port", "0", "--db", str(db), "--key", "k"]
    proc = Running(python(*args))
    try:
        url = proc.expect(r"listening on (http://127\.0\.0\.1:\d+)").group(1)
        proc.expect(r"Press Ctrl-C to stop")
        body = {"event": "Sent message", "userId": "u1"}
        assert requests.post(f"{url}/k/event", json=body, timeout=5).status_code == 200
        proc.expect(r"200 accepted event   'Sent message' userId='u1'")
        assert requests.post(f"{url}/other/event", json=body, timeout=5).status_code == 404
        proc.expect(r"404 rejected event   'Sent message' userId='u1' - unknown tracking key")
        assert proc.interrupt() == 0
    finally:
        proc.kill()
    assert proc.lines[-1] == "otel-bucket devserver stopped."
    assert not any("Traceback" in line for line in proc.lines)
    assert db.is_file()


def test_devserver_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`kill` stops the devserver as cleanly as Ctrl-C."""
    args = ["-m", "otel_bucket", "devserver", "--port", "0", "--db", str(tmp_path / "d")]
    proc = Running(python(*args))
    try:
        proc.expect(r"Press Ctrl-C to stop")
        assert proc.terminate() == 0
    finally:
        proc.kill()
    assert proc.lines[-1] == "otel-bucket devserver stopped."


def test_demo_exits_0_and_reports_the_calls() -> None:
    """`otel-bucket demo` runs offline, even with a dead proxy configured, and reports."""
    dead_proxy = "http://127.0.0.1:9"
    env = child_env(HTTP_PROXY=dead_proxy, HTTPS_PROXY=dead_proxy, NO_PROXY="", no_proxy="")
    result = run(python("-m", "otel_bucket", "demo"), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "The devserver received 5 user, 5 company and 8 event calls (0 rejected)." in out
    assert "devserver: " in out and "200 accepted event   'Sent message' userId='ada'" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "acme: 2, globex: 1" in rows["Sent"]
    assert "acme: 1, globex: 1" in rows["export_csv"]
    assert "Every call arrived. Where to look next:" in out
    assert "otel-bucket devserver" in out
    assert "Traceback" not in result.stderr


def test_demo_quiet_skips_the_call_lines() -> None:
    """--quiet keeps only the report."""
    result = run(python("-m", "otel_bucket", "demo", "--quiet"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "devserver: " not in result.stdout
    assert "8 event calls" in result.stdout


def test_demo_serve_keeps_the_page_open_until_ctrl_c() -> None:
    """`demo --serve` keeps its devserver up to browse; Ctrl-C ends it with 0."""
    proc = Running(python("-m", "otel_bucket", "demo", "--quiet", "--serve"))
    try:
        url = proc.expect(r"Serving the demo's page at (http://127\.0\.0\.1:\d+)/").group(1)
        page = requests.get(url + "/", timeout=5).text
        assert ">Sent message</a>" in page
        assert ">Acme Corp</a><br><small>acme</small></th>" in page
        assert proc.interrupt() == 0
    finally:
        proc.kill()
