"""Real servers stopped as production stops them: every event made before the stop arrives.

Each test starts the server itself (its own process group), makes N feature calls through it,
stops it with the signal a supervisor sends, and counts the events the capture server on
127.0.0.1 accepted. The endpoint takes 0.2 s per call, so events are still queued or in flight
when the signal comes: without a drain at each process's end, they would be lost.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests._capture import CaptureServer, Reply
from tests._group import Group, wait_for_events
from tests._redis import broker, filesystem_options
from tests._running import child_env, python, run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX servers and signals"),
]

URL = r"(http://127\.0\.0\.1:\d+)"


@pytest.fixture
def slow(server: CaptureServer) -> CaptureServer:
    """The Bucket endpoint: answers every call after 0.2 s."""
    server.default = Reply(delay=0.2)
    return server


@pytest.fixture
def env(slow: CaptureServer, tmp_path: Path) -> dict[str, str]:
    """The environment of a server under test: the slow endpoint as its Bucket endpoint."""
    return child_env(
        BUCKET_ENDPOINT=slow.url, BUCKET_TRACKING_KEY="k", XDG_RUNTIME_DIR=str(tmp_path)
    )


def tool(name: str) -> str:
    """A console script installed beside this interpreter."""
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        pytest.fail(f"{name} is not installed: python -m pip install -e '.[dev]'")
    return found


def serve(args: list[str], env: dict[str, str], ready: list[str]) -> tuple[Group, str]:
    """Start a server; wait for its URL and then for each ``ready`` line, in order."""
    proc = Group(args, env=env)
    try:  # a loaded machine may take a while to start workers
        url = proc.expect(URL, timeout=60).group(1)
        for line in ready:
            proc.expect(line, timeout=60)
    except BaseException:
        proc.stop_group()
        raise
    return proc, url


def make_calls(url: str, count: int) -> None:
    """``count`` requests, each one feature call for its own user; all answered."""
    for i in range(count):
        reply = requests.get(f"{url}/work", params={"user": f"u{i}"}, timeout=10)
        assert reply.text == "ok"


def calls_in_flight(proc: Group, url: str, count: int) -> list[Future[str]]:
    """``count`` requests at once, each waiting 1 s in the app before its feature call; return
    when the server has them all (each printed ``working``), so a stop now finds them in flight.
    """
    pool = ThreadPoolExecutor(count)
    params = [{"user": f"u{i}", "wait": "1"} for i in range(count)]
    answers = [
        pool.submit(lambda p: requests.get(f"{url}/work", params=p, timeout=30).text, p)
        for p in params
    ]
    pool.shutdown(wait=False)
    for _ in range(count):
        proc.expect(r"^working u\d+$")
    return answers


def stop(proc: Group, signum: int = signal.SIGTERM, *, group: bool = False) -> int:
    """Send ``signum`` to the server's main process (or, as a terminal's Ctrl-C does, to its
    whole process group); its exit status (bounded wait)."""
    try:
        if group:
            os.killpg(proc.proc.pid, signum)
        else:
            proc.signal(signum)
        return proc.wait(60)
    finally:
        proc.stop_group()


N = 10
STARTED = r"Application startup complete"


def test_uvicorn_single_process(env: dict[str, str], slow: CaptureServer) -> None:
    """``uvicorn app:app`` (install() runs inside uvicorn's own signal capture), SIGTERM: every
    event arrives, and uvicorn still ends the way it does (re-raising SIGTERM)."""
    args = [tool("uvicorn"), "tests.apps.asgi:app", "--host", "127.0.0.1", "--port", "0"]
    proc, url = serve(args, env, [])
    make_calls(url, N)
    assert stop(proc) == -signal.SIGTERM
    assert len(slow.calls("event")) == N


def test_uvicorn_run_after_install(env: dict[str, str], slow: CaptureServer) -> None:
    """``python app.py`` calling ``uvicorn.run`` after install() (examples/fastapi_app.py):
    uvicorn saves our handler, restores it after its graceful shutdown and re-raises."""
    code = (
        "import uvicorn; from tests.apps.asgi import app; "
        "uvicorn.run(app, host='127.0.0.1', port=0)"
    )
    proc, url = serve(python("-c", code), env, [])
    make_calls(url, N)
    assert stop(proc) == -signal.SIGTERM
    assert len(slow.calls("event")) == N


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_uvicorn_with_two_workers(signum: int, env: dict[str, str], slow: CaptureServer) -> None:
    """``uvicorn --workers 2``, SIGTERM or Ctrl-C to the parent (which sends SIGTERM to each
    worker): the events of both workers arrive."""
    args = [tool("uvicorn"), "tests.apps.asgi:app", "--host", "127.0.0.1", "--port", "0"]
    proc, url = serve([*args, "--workers", "2"], env, [STARTED, STARTED])
    make_calls(url, N)
    assert stop(proc, signum) == 0
    assert len(slow.calls("event")) == N
    assert len(re.findall(r"Finished server process", "\n".join(proc.lines))) == 2


IN_FLIGHT = {  # options, the signal, sent to the whole group (a terminal's Ctrl-C), the status
    "uvicorn, SIGTERM": ([], signal.SIGTERM, False, -signal.SIGTERM),
    "uvicorn, Ctrl-C": ([], signal.SIGINT, True, 0),
    # install() inside uvicorn's signal capture, as in any uvicorn before 0.47
    "uvicorn --factory, SIGTERM": (["--factory"], signal.SIGTERM, False, -signal.SIGTERM),
    "uvicorn --workers 2, SIGTERM": (["--workers", "2"], signal.SIGTERM, False, 0),
    "uvicorn --workers 2, Ctrl-C": (["--workers", "2"], signal.SIGINT, True, 0),
}


@pytest.mark.parametrize("how", IN_FLIGHT)
def test_uvicorn_requests_in_flight_at_the_stop(
    how: str, env: dict[str, str], slow: CaptureServer
) -> None:
    """Stopped while 20 requests are still running: uvicorn finishes them, and their events,
    made after the signal, arrive too. A ``--workers`` worker imports the app (so install()
    runs) while uvicorn holds the signals, and uvicorn then restores the default handler and
    raises SIGTERM again, which used to end the worker before any of those was sent."""
    options, signum, group, status = IN_FLIGHT[how]
    app = "tests.apps.asgi:create" if "--factory" in options else "tests.apps.asgi:app"
    args = [tool("uvicorn"), app, "--host", "127.0.0.1", "--port", "0", *options]
    env = dict(env, INSTALL_IN_FACTORY="1" if "--factory" in options else "0")
    proc, url = serve(args, env, [STARTED] * ("--workers" in options and 2))
    try:
        answers = calls_in_flight(proc, url, 20)
    except BaseException:
        proc.stop_group()
        raise
    assert stop(proc, signum, group=group) == status
    assert [answer.result(timeout=30) for answer in answers] == ["ok"] * 20
    assert len(slow.calls("event")) == 20


def test_gunicorn_sync_workers(env: dict[str, str], slow: CaptureServer) -> None:
    """gunicorn with two sync workers, SIGTERM to the master."""
    args = [tool("gunicorn"), "-w", "2", "-b", "127.0.0.1:0", "tests.apps.wsgi:app"]
    proc, url = serve(args, env, [r"Booting worker", r"Booting worker"])
    make_calls(url, N)
    assert stop(proc) == 0
    assert len(slow.calls("event")) == N


def test_gunicorn_recycled_sync_workers(env: dict[str, str], slow: CaptureServer) -> None:
    """``--max-requests 5``: a sync worker is replaced after 5 requests, and exits normally; the
    two recycled workers of 12 requests delivered their events at their end."""
    args = [tool("gunicorn"), "-w", "1", "--max-requests", "5", "-b", "127.0.0.1:0"]
    proc, url = serve([*args, "tests.apps.wsgi:app"], env, [r"Booting worker"])
    make_calls(url, 12)
    assert stop(proc) == 0
    assert len(slow.calls("event")) == 12
    assert sum("Autorestarting worker" in line for line in proc.lines) == 2


@pytest.mark.parametrize("preload", [False, True])
def test_gunicorn_uvicorn_workers(preload: bool, env: dict[str, str], slow: CaptureServer) -> None:
    """gunicorn with two ``UvicornWorker``s, SIGTERM to the master: the workers end by a
    re-raised SIGTERM. Without preload the app's install() arms each worker; with preload_app,
    ``post_worker_init`` calling install() again (tests/apps/gunicorn_conf.py) re-arms it after
    gunicorn reset the worker's signals."""
    args = [tool("gunicorn"), "-k", "uvicorn.workers.UvicornWorker", "-w", "2"]
    args += ["-b", "127.0.0.1:0", "tests.apps.asgi:app"]
    if preload:
        args += ["--preload", "-c", "tests/apps/gunicorn_conf.py"]
    proc, url = serve(args, env, [STARTED, STARTED])
    make_calls(url, N)
    assert stop(proc) == 0
    assert len(slow.calls("event")) == N


# -- Celery ------------------------------------------------------------------------------------


@pytest.fixture
def celery_env(env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """The worker's environment, with a broker started for this test."""
    with broker(tmp_path) as found:
        yield dict(env, CELERY_BROKER_URL=found.url, **found.env)


def send_tasks(celery_env: dict[str, str], count: int) -> None:
    """Queue ``count`` ``tasks.work`` tasks, one user each, from a plain Celery client."""
    from celery import Celery

    client = Celery("client", broker=celery_env["CELERY_BROKER_URL"])
    if "CELERY_FS_FOLDER" in celery_env:
        client.conf.broker_transport_options = filesystem_options(celery_env["CELERY_FS_FOLDER"])
    try:
        for i in range(count):
            client.send_task("tasks.work", args=[f"u{i}"])
    finally:
        client.close()


def celery_worker(celery_env: dict[str, str], *options: str) -> Group:
    """A prefork worker with two children, ready to consume."""
    args = python("-m", "celery", "-A", "tests.apps.tasks", "worker", "-P", "prefork", "-c", "2")
    args += ["-l", "INFO", "-n", "lifecycle@localhost", "--without-heartbeat", "--without-gossip"]
    args += ["--without-mingle", *options]
    proc = Group(args, env=celery_env)
    try:
        proc.expect(r"lifecycle@localhost ready", timeout=60)
    except BaseException:
        proc.stop_group()
        raise
    return proc


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGQUIT], ids=["warm", "cold"])
def test_celery_prefork_shutdown(
    signum: int, celery_env: dict[str, str], slow: CaptureServer
) -> None:
    """Celery prefork (-c 2), warm (SIGTERM) or cold (SIGQUIT) shutdown right after the tasks
    ran: the pool children drain at their end (worker_process_shutdown), before billiard's
    os._exit()."""
    proc = celery_worker(celery_env)
    try:
        send_tasks(celery_env, 30)
        for _ in range(30):
            proc.expect(r"Task tasks\.work\[.*\] succeeded", timeout=60)
    except BaseException:
        proc.stop_group()
        raise
    # Celery's own exit code: 0 for a warm shutdown; a cold one sets EX_FAILURE (1) in its
    # SIGQUIT handler (celery.apps.worker), and ends with 0 or 1 by where the signal finds its
    # main loop. Either way the worker ended itself: no signal death, no hang.
    status = stop(proc, signum)
    assert status in ((0,) if signum == signal.SIGTERM else (0, 1)), (status, proc.lines)
    assert len(slow.calls("event")) == 30


def test_celery_recycled_children(celery_env: dict[str, str], slow: CaptureServer) -> None:
    """``--max-tasks-per-child=10``, worker left running: 50 tasks end five children, and each
    one delivered its events at its end."""
    proc = celery_worker(celery_env, "--max-tasks-per-child", "10")
    try:
        send_tasks(celery_env, 50)
        assert wait_for_events(slow, 50, timeout=60) == 50
    finally:
        stop(proc)
    assert len(slow.calls("event")) == 50


# -- development servers with a reloader -------------------------------------------------------

RELOADERS = {  # the command, a path that makes one feature call, the reloader's name
    "django runserver": (
        ["python", "examples/django_app.py", "runserver", "127.0.0.1:0"],
        "/reports/weekly",
        "Django's autoreloader",
    ),
    "flask run --reload": (
        ["flask", "--app", "examples/flask_app", "run", "--reload", "--port", "0"],
        "/export",
        "Werkzeug's reloader",
    ),
}


@pytest.mark.parametrize("name", RELOADERS)
def test_reloader_ctrl_c(name: str, slow: CaptureServer, tmp_path: Path) -> None:
    """Django's ``runserver`` (its autoreloader is the default) or ``flask run --reload``,
    Ctrl-C to the process group as a terminal sends it: the reloader kills its child 0.25 s
    later, too soon for a drain against an endpoint 0.2 s away. Each event arrived or waits in
    the spool, one ERROR line says so, and the next process (``otel-bucket spool flush``)
    delivers the rest."""
    command, path, reloader = RELOADERS[name]
    spool = tmp_path / "spool"
    env = child_env(
        BUCKET_ENDPOINT=slow.url,
        BUCKET_TRACKING_KEY="k",
        BUCKET_SPOOL_DIR=str(spool),
        OTEL_INSTRUMENT_DJANGO="0",
    )
    program = python(*command[1:]) if command[0] == "python" else [tool(command[0]), *command[1:]]
    proc, url = serve(program, env, [])
    try:
        for user in range(1, 6):
            headers = {"X-User-Id": str(user), "X-Company-Id": "acme"}
            assert requests.get(url + path, headers=headers, timeout=10).status_code == 200
    except BaseException:
        proc.stop_group()
        raise
    assert stop(proc, signal.SIGINT, group=True) == 0
    flushed = run([tool("otel-bucket"), "spool", "--dir", str(spool), "flush"], env=env)
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    users = sorted(call["userId"] for call in slow.calls("event"))
    assert sorted(set(users)) == ["1", "2", "3", "4", "5"], (users, proc.lines)
    errors = [line for line in proc.lines if "Ctrl-C" in line and "spool" in line]
    assert len(errors) == 1, proc.lines
    assert re.search(rf"{reloader} .* \d+ call\(s\) .* kept in the spool", errors[0])
