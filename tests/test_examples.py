"""Every example runs for real, against a devserver on 127.0.0.1, in its own process."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from otel_bucket.devserver import Call, DevServer
from tests._capture import CaptureServer
from tests._running import ROOT, Running, child_env, free_port, python, run

EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.slow  # every example runs in processes of its own


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevServer]:
    server = DevServer(port=0, db_path=tmp_path / "dev.sqlite3").start()
    yield server
    server.stop()


@pytest.fixture
def env(dev: DevServer) -> dict[str, str]:
    """The environment an example gets: the devserver as its Bucket endpoint."""
    return child_env(BUCKET_ENDPOINT=dev.url, BUCKET_TRACKING_KEY="dev")


def received(dev: DevServer) -> list[tuple[str, ...]]:
    """What arrived, in a comparable form: (method, ids..., event or attributes)."""
    calls: list[Call] = dev.snapshot(limit=1000).calls
    assert dev.snapshot().counts["rejected"] == 0
    out: list[tuple[str, ...]] = []
    for call in calls:
        body: dict[str, Any] = call.body
        attributes = ",".join(f"{k}={v}" for k, v in sorted(body.get("attributes", {}).items()))
        ids = (body.get("companyId", ""), body["userId"]) if call.method == "company" else ()
        out.append((call.method, *ids, body.get("userId", ""), body.get("event", ""), attributes))
    return sorted(out)


def tool(name: str) -> str:
    """A console script installed beside this interpreter."""
    beside = Path(sys.executable).parent / name  # this environment's, before any on PATH
    found = str(beside) if beside.exists() else shutil.which(name) or str(beside)
    if not Path(found).exists():
        pytest.fail(f"{name} is not installed: python -m pip install -e '.[dev]'")
    return found


def test_every_example_is_documented() -> None:
    """examples/README.md lists every example file."""
    readme = (EXAMPLES / "README.md").read_text()
    for path in EXAMPLES.glob("*.py"):
        assert f"`{path.name}`" in readme


def test_quickstart(dev: DevServer, env: dict[str, str]) -> None:
    """quickstart.py sends a user, a company and two events, with no explicit flush."""
    result = run(python("examples/quickstart.py"), env=env)
    assert result.returncode == 0, result.stderr
    assert "sent: hello" in result.stdout
    assert received(dev) == [
        ("company", "acme", "42", "42", "", "name=Acme Corp,plan=enterprise"),
        ("event", "42", "Sent message", "channel=chat"),
        ("event", "42", "export_csv", ""),
        ("user", "42", "", "name=Ada Lovelace"),
    ]


def _serve(args: list[str], env: dict[str, str], ready: str) -> tuple[Running, str]:
    proc = Running(args, env=env)
    try:
        url = proc.expect(ready).group(1)
    except BaseException:
        proc.kill()
        raise
    return proc, url


def test_flask_app_on_a_real_server(dev: DevServer, env: dict[str, str]) -> None:
    """flask_app.py under Flask's server with otel_bucket.wsgi: identified requests send calls,
    anonymous ones none; set_event_attributes and track add per-call data."""
    proc, url = _serve(
        python("examples/flask_app.py"),
        dict(env, PORT="0"),
        r"Running on (http://127\.0\.0\.1:\d+)",
    )
    try:
        who = {"X-User-Id": "42", "X-Company-Id": "acme"}
        assert requests.get(f"{url}/export", headers=who, timeout=10).text.startswith("id,name")
        assert requests.post(f"{url}/messages", data="hi", headers=who, timeout=10).json() == {
            "length": 2
        }
        mention = requests.post(f"{url}/messages", data="hi @grace", headers=who, timeout=10)
        assert mention.json() == {"length": 9}
        assert requests.get(f"{url}/export", timeout=10).status_code == 200  # anonymous
        assert requests.get(f"{url}/health", headers=who, timeout=10).text == "ok"
        assert proc.interrupt() == 0
    finally:
        proc.kill()
    assert received(dev) == [
        ("company", "acme", "42", "42", "", "plan=enterprise"),
        ("event", "42", "Exported CSV", "format=csv,rows=2"),
        ("event", "42", "Mentioned someone", ""),
        ("event", "42", "send_message", ""),
        ("event", "42", "send_message", ""),
        ("user", "42", "", "name=Ada Lovelace"),
    ]


def test_fastapi_app_on_a_real_server(dev: DevServer, env: dict[str, str]) -> None:
    """fastapi_app.py under uvicorn: otel_bucket.asgi's identity reaches sync and async features."""
    proc, url = _serve(
        python("examples/fastapi_app.py"),
        dict(env, PORT="0"),
        r"Uvicorn running on (http://127\.0\.0\.1:\d+)",
    )
    try:
        who = {"x-user-id": "7", "x-company-id": "globex"}
        report = requests.get(f"{url}/reports/weekly", headers=who, timeout=10)
        assert report.json() == {"report": "weekly", "rows": "0"}
        share = requests.post(f"{url}/reports/weekly/share", headers=who, timeout=10)
        assert share.json() == {"link": "https://example.com/reports/weekly"}
        assert requests.get(f"{url}/reports/daily", timeout=10).status_code == 200  # anonymous
        assert proc.interrupt() == 0
    finally:
        proc.kill()
    assert received(dev) == [
        ("company", "globex", "7", "7", "", ""),
        ("event", "7", "Shared report", "via=link"),
        ("event", "7", "Viewed report", ""),
        ("user", "7", "", ""),
    ]


def test_gunicorn_conf_prefork_workers_deliver(
    dev: DevServer, env: dict[str, str], tmp_path: Path
) -> None:
    """gunicorn.conf.py: two preloaded, forked workers serve; every event arrives on stop."""
    gunicorn_env = dict(env, GUNICORN_BIND="127.0.0.1:0", XDG_RUNTIME_DIR=str(tmp_path))
    args = [tool("gunicorn"), "-c", "examples/gunicorn.conf.py", "--workers", "2"]
    proc, url = _serve(args, gunicorn_env, r"Listening at: (http://127\.0\.0\.1:\d+)")
    try:
        proc.expect(r"Booting worker")
        proc.expect(r"Booting worker")
        users = ["1", "2", "3"]
        for n in range(12):
            who = {"X-User-Id": users[n % 3], "X-Company-Id": "acme", "Connection": "close"}
            assert requests.get(f"{url}/export", headers=who, timeout=10).status_code == 200
        assert proc.terminate(timeout=60) == 0
    finally:
        proc.kill()
    pids = set(re.findall(r"Worker exiting \(pid: (\d+)\)", "\n".join(proc.lines)))
    assert len(pids) == 2
    snapshot = dev.snapshot(limit=1000)
    assert snapshot.counts["event"] == 12
    assert snapshot.counts["rejected"] == 0
    # Each worker dedupes in its own memory: every user arrives once or once per worker.
    assert {call.user_id for call in snapshot.calls if call.method == "user"} == set(users)
    assert 3 <= snapshot.counts["user"] <= 6


def test_instrumented_app_beside_otlp(
    dev: DevServer, env: dict[str, str], server: CaptureServer
) -> None:
    """`OTEL_TRACES_EXPORTER=otlp,bucket opentelemetry-instrument`: both exporters get spans."""
    otel = {
        "OTEL_TRACES_EXPORTER": "otlp,bucket",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": server.url,
        "OTEL_SERVICE_NAME": "reports",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    result = run(
        [tool("opentelemetry-instrument"), *python("examples/instrumented_app.py")],
        env=dict(env, **otel),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("report for") == 3
    traces = [r for r in server.requests if r.path == "/v1/traces"]
    assert traces
    headers = {name.lower(): value for name, value in traces[0].headers.items()}
    assert headers["content-type"] == "application/x-protobuf"
    assert b"nightly report" in b"".join(r.raw for r in traces)
    assert received(dev) == [
        ("company", "acme", "42", "42", "", ""),
        ("company", "globex", "7", "7", "", ""),
        ("company", "globex", "8", "8", "", ""),
        ("event", "42", "Generated report", "schedule=nightly"),
        ("event", "7", "Generated report", "schedule=nightly"),
        ("event", "8", "Generated report", "schedule=nightly"),
        ("user", "42", "", ""),
        ("user", "7", "", ""),
        ("user", "8", "", ""),
    ]


@pytest.mark.parametrize("instrumented", [True, False], ids=["instrumented", "plain"])
def test_django_app_under_runserver(
    dev: DevServer, env: dict[str, str], instrumented: bool
) -> None:
    """django_app.py under Django's runserver, with and without the Django instrumentation:
    signed-in users are identified with the OTEL_BUCKET_IDENTITY callable, anonymous are not."""
    port = free_port()
    run_env = dict(env, PORT=str(port), OTEL_INSTRUMENT_DJANGO="1" if instrumented else "0")
    proc, url = _serve(
        python("examples/django_app.py"), run_env, r"Starting development server at (http://\S+)/"
    )
    try:
        who = {"X-User-Id": "42", "X-Company-Id": "acme"}
        report = requests.get(f"{url}/reports/weekly", headers=who, timeout=10)
        assert report.json() == {"report": "weekly", "rows": [{"week": "weekly", "total": 3}]}
        sent = requests.post(f"{url}/messages", headers=who, timeout=10)
        assert sent.json() == {"sent": True}
        assert requests.get(f"{url}/reports/daily", timeout=10).status_code == 200  # anonymous
        assert requests.get(f"{url}/health", headers={"X-User-Id": "7"}, timeout=10).text == "ok"
        assert proc.interrupt() == 0
    finally:
        proc.kill()
    expected = [
        ("company", "acme", "42", "42", "", "plan=enterprise"),
        ("event", "42", "Sent message", "channel=chat"),
        ("event", "42", "Viewed report", "rows=1"),
        ("user", "42", "", "name=user42"),
    ]
    if instrumented:  # no feature runs for user 7: only the stamped request span tells of them
        expected += [("company", "", "7", "7", "", "plan=free"), ("user", "7", "", "name=user7")]
        expected = [e for e in expected if e[:2] != ("company", "")]
    assert received(dev) == sorted(expected)
    assert not any("Traceback" in line for line in proc.lines), proc.lines


def celery_worker(env: dict[str, str], pool: str) -> Running:
    args = [tool("celery"), "--workdir", "examples", "-A", "celery_app", "worker"]
    args += ["--pool", pool, "--concurrency", "1", "--loglevel", "INFO"]
    args += ["--without-mingle", "--without-gossip", "--hostname", f"{pool}@otel-bucket-tests"]
    return Running(args, env=env)


def test_celery_task_runs_as_the_sender(
    dev: DevServer, env: dict[str, str], tmp_path: Path
) -> None:
    """celery_app.py: the identity around .delay() is in effect in a real worker (solo pool)."""
    celery_env = dict(env, CELERY_BROKER_DIR=str(tmp_path / "broker"))
    worker = celery_worker(celery_env, "solo")
    try:
        worker.expect(r"ready\.", timeout=60)
        sent = run(python("examples/celery_app.py", "42", "acme"), env=celery_env)
        assert sent.returncode == 0, sent.stderr
        assert "as user 42 of acme" in sent.stdout
        worker.expect(r"Task celery_app\.build_report\[.*\] succeeded", timeout=60)
        assert worker.terminate(timeout=60) == 0  # a warm shutdown: the worker flushes at exit
    finally:
        worker.kill()
    assert received(dev) == [
        ("company", "acme", "42", "42", "", ""),
        ("event", "42", "Generated report", "schedule=on demand"),
        ("user", "42", "", ""),
    ]


def test_celery_identity_reaches_a_forked_child(server: CaptureServer, tmp_path: Path) -> None:
    """Prefork pool: tasks sent as two users and one anonymous run as them in the child."""
    celery_env = child_env(
        BUCKET_ENDPOINT=server.url,
        BUCKET_TRACKING_KEY="dev",
        CELERY_BROKER_DIR=str(tmp_path / "broker"),
    )
    worker = celery_worker(celery_env, "prefork")
    try:
        worker.expect(r"ready\.", timeout=60)
        sender = (
            "import celery_app\n"
            "from otel_bucket import identify\n"
            "with identify(user_id='u1', company_id='c1', user_attributes={'plan': 'pro'}):\n"
            "    celery_app.build_report.delay('a')\n"
            "with identify(user_id='u2'):\n"
            "    celery_app.build_report.delay('b')\n"
            "celery_app.build_report.delay('anonymous')\n"
        )
        sent = run(python("-c", sender), env=dict(celery_env, PYTHONPATH=str(EXAMPLES)))
        assert sent.returncode == 0, sent.stderr
        for _ in range(3):
            worker.expect(r"Task celery_app\.build_report\[.*\] succeeded", timeout=60)
        # The child delivers at idle within its schedule delay; wait on the server, no sleep.
        server.wait_for(5, timeout=30)  # two users, one company, two events
        events = sorted((c["event"], c["userId"]) for c in server.calls("event"))
        assert events == [("Generated report", "u1"), ("Generated report", "u2")]
        users = {c["userId"]: c.get("attributes", {}) for c in server.calls("user")}
        assert users == {"u1": {"plan": "pro"}, "u2": {}}
        assert [(c["companyId"], c["userId"]) for c in server.calls("company")] == [("c1", "u1")]
        assert worker.terminate(timeout=60) == 0
    finally:
        worker.kill()
    assert not any(r.path.endswith("/v1/traces") for r in server.requests)
