"""``otel-bucket bridge``: arguments, the missing extra, and a real process stopped by SIGTERM."""

from __future__ import annotations

import textwrap
import threading

import pytest
import requests
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from otel_bucket.cli import main
from tests._capture import CaptureServer, Reply
from tests._running import Running, child_env, python, run
from tests._spans import make_spans

KEY = "cli-secret-tracking-key"


def test_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    """`otel-bucket bridge --help` says what it does and lists its options."""
    with pytest.raises(SystemExit) as info:
        main(["bridge", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "OTLP/HTTP" in out and "Bucket" in out
    options = ("--host", "--port", "--key", "--listen-key", "--queue-size", "--threads")
    options += ("--max-spans", "--max-connections", "--request-timeout", "--drain-timeout")
    for option in options:
        assert option in out
    assert "BUCKET_BRIDGE_TOKEN" in out and "BUCKET_TRACKING_KEY" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "argument --port: port must be from 0 to 65535, got 70000"),
        (["--queue-size", "0"], "argument --queue-size: must be at least 1, got 0"),
        (["--threads", "many"], "argument --threads: not a whole number: 'many'"),
        (["--drain-timeout", "-1"], "argument --drain-timeout: must be a number of seconds"),
        (["--max-spans", "0"], "argument --max-spans: must be at least 1, got 0"),
        (["--max-connections", "x"], "argument --max-connections: not a whole number: 'x'"),
        (["--request-timeout", "soon"], "argument --request-timeout: not a number: 'soon'"),
        (["--listen-key", "a b"], "argument --listen-key: must be a non-empty token"),
    ],
)
def test_bad_arguments_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad option is one line on stderr and exit code 2."""
    with pytest.raises(SystemExit) as info:
        main(["bridge", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err


def test_no_tracking_key_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --key or BUCKET_TRACKING_KEY: one line naming both, exit code 2."""
    assert main(["bridge", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "otel-bucket bridge: error: no tracking key: pass --key or set BUCKET_TRACKING_KEY\n"
    )


def test_port_in_use_is_one_line(taken_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    """A port that is taken: one line, exit code 2, and the key is not in it."""
    assert main(["bridge", "--port", str(taken_port), "--key", KEY]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"otel-bucket bridge: error: cannot listen on 127.0.0.1:{taken_port}: ")
    assert err.count("\n") == 1
    assert KEY not in err


# Hides the packages of the "bridge" extra, as if it were not installed.
WITHOUT_EXTRA = textwrap.dedent(
    """
    import importlib.abc, sys
    class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "google" or name.startswith("opentelemetry.proto"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, Hide())
    from otel_bucket.cli import main
    sys.exit(main(["bridge", "--port", "0", "--key", "k"]))
    """
)


@pytest.mark.slow
def test_without_the_extra_says_what_to_install() -> None:
    """Without opentelemetry-proto/protobuf: one line telling how to install them, exit 2."""
    result = run(python("-c", WITHOUT_EXTRA))
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert 'pip install "otel-bucket[bridge]"' in result.stderr
    assert result.stderr.startswith("otel-bucket bridge: error: ")


@pytest.mark.slow
def test_sigterm_drains_what_is_queued_and_exits_0(server: CaptureServer) -> None:
    """A real `otel-bucket bridge` process: it says where it listens, logs one line per
    request with --debug, and on SIGTERM stops listening, delivers what it accepted and exits
    0, never printing the tracking key."""
    first_call = threading.Event()

    def hold(path: str, body: bytes) -> Reply | None:
        first_call.set()
        return Reply(delay=30)  # the export is in flight when SIGTERM arrives

    server.route(hold)
    env = child_env(BUCKET_ENDPOINT=server.url, BUCKET_TRACKING_KEY=KEY, BUCKET_TIMEOUT="30")
    proc = Running(python("-m", "otel_bucket", "bridge", "--port", "0", "--debug"), env=env)
    try:
        url = proc.expect(r"listening on (http://127\.0\.0\.1:\d+)/v1/traces").group(1)
        proc.expect(rf"sending to {server.url}")
        assert requests.get(f"{url}/health", timeout=5).status_code == 200
        first = make_spans({"enduser.id": "u1", "bucket.event": "Opened"})
        second = make_spans({"enduser.id": "u2"}, {"enduser.id": "u3"})
        for spans in (first, second):
            body = encode_spans(spans).SerializeToString()
            headers = {"Content-Type": "application/x-protobuf"}
            answer = requests.post(f"{url}/v1/traces", data=body, headers=headers, timeout=5)
            assert answer.status_code == 200
        proc.expect(r"bridge: 127\.0\.0\.1 POST /v1/traces 200 protobuf .* 2 for Bucket")
        assert first_call.wait(10)
        proc.proc.send_signal(15)
        proc.expect(r"stopping: exporting what is queued")
        server.route(None)
        server.release()
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    assert any("stopped: 4 call(s) delivered, 0 spooled, 0 lost" in line for line in proc.lines)
    assert sorted(c["userId"] for c in server.calls("user")) == ["u1", "u2", "u3"]
    assert [c["event"] for c in server.calls("event")] == ["Opened"]
    assert not [line for line in proc.lines if KEY in line]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/health", timeout=5)
