"""Every command README.md, the documentation pages (docs/**/*.md) and examples/README.md show
runs as written, in this environment.

The commands are read from the documents themselves (every ``bash`` block, and every inline code
span that starts with a program name), so a command added to the docs is run here too. Three
things differ from a reader's terminal, and only these:

- Ports: each server gets a free port, and the documented one (8787 for the devserver, 5000 and
  8000 for the apps, 4318 for an OTLP collector) is replaced by it in the commands after it;
  the apps learn theirs from the variables they document (``PORT``, ``GUNICORN_BIND``).
- A command that keeps running (a server, a worker) is started, waited for (the line it prints
  when ready), and stopped with Ctrl-C at the end of its block (``&`` ones at the end of the
  session), each expected to exit 0. The commands after it run while it serves.
- ``pip install -e ".[dev]"`` is what made this environment, and ``pytest`` is this run: both
  are checked, not run again.

Commands run under ``bash`` in a scratch directory holding a link to ``examples/`` (the
devserver's database goes there, not into the repository), with this environment's scripts
first on PATH. A block of README.md or of a page is a session of its own; examples/README.md
is one session, its setup block's server and exports staying for the blocks after it, as in a
reader's terminal.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest
import requests

from tests._capture import CaptureServer
from tests._running import ROOT, Running, child_env, free_port, run

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Serves:
    """A command that keeps running: the line that says it is ready, the port it documents and
    how it learns the one it is given instead ("--port" for an argument, else a variable), a
    line to wait for before Ctrl-C (work it was given), and its exit code on Ctrl-C."""

    ready: str
    port: int = 0
    how: str = ""
    settle: str | None = None
    ctrl_c: int = 0


SERVES: dict[str, Serves] = {
    "otel-bucket devserver": Serves(r"listening on", 8787, "--port"),
    "python -m otel_bucket devserver": Serves(r"listening on", 8787, "--port"),
    "python examples/flask_app.py": Serves(r"Running on http", 5000, "PORT"),
    "python examples/fastapi_app.py": Serves(r"Uvicorn running on", 8000, "PORT"),
    "python examples/django_app.py": Serves(r"Starting development server", 8000, "PORT"),
    "gunicorn -c examples/gunicorn.conf.py": Serves(r"Listening at", 8000, "GUNICORN_BIND"),
    # Celery exits 1 after the warm shutdown Ctrl-C starts (its SIGTERM exits 0).
    "celery --workdir examples -A celery_app worker": Serves(
        r"ready\.", settle=r"Task .* succeeded", ctrl_c=1
    ),
    "otel-bucket bridge": Serves(r"bridge listening on", 4318, "--port"),
}
# What the test checks instead of running, and why.
NOT_RUN = {
    'python -m pip install -e ".[dev]"': "made this environment",
    'python -m pip install -e ".[bridge]"': "the dev extra includes the bridge extra (checked)",
    "pytest": "is this very run",
    'pytest -m "not slow"': "is part of this very run",
    # Placeholders for the reader's own app in the Deployment table; the same set-ups run for
    # real in tests/test_servers.py and tests/test_lifecycle.py.
    "python app.py": "a placeholder for your app",
    "uvicorn app:app": "a placeholder for your app",
    "uvicorn app:app --workers N": "a placeholder for your app",
}
# Commands that need what this machine cannot have, by their first words.
NOT_RUN_PREFIXES = {
    "docker run ": "needs a Docker engine; the spool directory it sets (BUCKET_SPOOL_DIR) is "
    "tested in tests/test_spool_e2e.py",
}
PROGRAMS = ("python", "otel-bucket", "opentelemetry-instrument", "celery", "gunicorn", "uvicorn")
PROGRAMS += ("curl", "pytest", "sqlite3")
OTLP_PORT = 4318
# What one session is: a block of the README and of each page of the documentation site, the
# whole of examples/README.md.
DOCS = {
    "README.md": "block",
    **{str(p.relative_to(ROOT)): "block" for p in sorted((ROOT / "docs").rglob("*.md"))},
    "examples/README.md": "file",
}


@dataclass
class Command:
    text: str
    where: str  # file:line, for messages


@dataclass
class Session:
    """What a reader's terminal holds: exported variables, servers, the ports they were given."""

    scratch: Path
    otlp: CaptureServer
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[int, int] = field(default_factory=dict)
    block_servers: list[tuple[str, Serves, Running]] = field(default_factory=list)
    lasting_servers: list[tuple[str, Serves, Running]] = field(default_factory=list)
    seen: dict[str, Any] = field(default_factory=dict)  # the last devserver's /api/calls
    apps_run: int = 0  # commands run to completion (the examples) while a devserver served

    def __post_init__(self) -> None:
        scripts = str(Path(sys.executable).parent)
        self.env = child_env(PATH=scripts + os.pathsep + os.environ.get("PATH", ""))
        self.env["CELERY_BROKER_DIR"] = str(self.scratch / "celery-broker")
        self.ports[OTLP_PORT] = self.otlp.port

    def localize(self, text: str) -> str:
        for documented, given in self.ports.items():
            text = re.sub(rf"(127\.0\.0\.1|localhost):{documented}\b", rf"\g<1>:{given}", text)
        return text


def _strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a ``#`` outside quotes, after a space)."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].strip()
    return line.strip()


def bash_blocks(path: Path) -> list[list[Command]]:
    """The commands of every ```bash block, continuation lines joined, comments dropped."""
    blocks: list[list[Command]] = []
    lines = path.read_text().splitlines()
    inside, pending, start = False, "", 0
    for number, line in enumerate(lines, 1):
        if line.strip().startswith("```"):
            if not inside and line.strip() == "```bash":
                inside, pending = True, ""
                blocks.append([])
            else:
                inside = False
            continue
        if not inside:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].strip() + " "
            continue
        text = _strip_comment(pending + line.strip())
        pending = ""
        if text:
            blocks[-1].append(Command(" ".join(text.split()), f"{path.relative_to(ROOT)}:{start}"))
    return blocks


def inline_commands(path: Path) -> list[Command]:
    """Inline code spans outside code blocks that are commands: a program name and arguments."""
    found: list[Command] = []
    inside = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith("```"):
            inside = not inside
            continue
        if inside:
            continue
        for span in re.findall(r"`([^`]+)`", line):
            words = span.split()
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]
            if (len(words) >= 2 and words[0] in PROGRAMS) or span == "pytest":
                found.append(Command(" ".join(span.split()), f"{path.relative_to(ROOT)}:{number}"))
    return found


def sessions() -> Iterator[tuple[str, list[list[Command]]]]:
    for name, unit in DOCS.items():
        path = ROOT / name
        blocks = bash_blocks(path) + [[c] for c in inline_commands(path)]
        if unit == "file":
            yield name, blocks
        else:
            for index, block in enumerate(blocks):
                if block:
                    yield f"{name} #{index + 1} ({block[0].where})", [block]


SESSIONS = list(sessions())


def _assignments(text: str) -> tuple[str, str]:
    """``VAR=value`` words leading ``text`` (as the shell takes them), and the command after."""
    words = text.split(" ")
    count = 0
    while count < len(words) and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[count]):
        count += 1
    return " ".join(words[:count]), " ".join(words[count:])


def _server_of(text: str) -> str | None:
    command = _assignments(text)[1]
    for prefix in SERVES:
        if command == prefix or command.startswith(prefix + " "):
            return prefix
    return None


def _installed_here() -> None:
    """`pip install -e ".[dev]"` made this environment: otel-bucket from this tree, dev extra."""
    dist = distribution("otel-bucket")
    assert Path(dist.locate_file("")).exists()
    import otel_bucket

    assert Path(otel_bucket.__file__).resolve().is_relative_to(ROOT)
    for module in ("django", "celery", "flask", "fastapi", "gunicorn", "hypothesis"):
        __import__(module)
    import otel_bucket.bridge  # the bridge extra (dev includes it)


def _start(session: Session, command: Command, prefix: str, lasting: bool) -> None:
    serves = SERVES[prefix]
    documented, how = serves.port, serves.how
    text, env = command.text, dict(session.env)
    if documented:
        given = free_port()
        session.ports[documented] = given
        if how == "--port":
            text = re.sub(r"--port \d+", f"--port {given}", text)
            if "--port" not in text:
                text += f" --port {given}"
        elif how == "GUNICORN_BIND":
            env[how] = f"127.0.0.1:{given}"
        else:
            env[how] = str(given)
    assignments, command_text = _assignments(session.localize(text))
    proc = Running(
        ["bash", "-c", f"{assignments} exec {command_text}".strip()], env=env, cwd=session.scratch
    )
    try:
        proc.expect(serves.ready, timeout=60)
    except BaseException:
        proc.kill()
        raise
    (session.lasting_servers if lasting else session.block_servers).append((text, serves, proc))


def _stop(session: Session, servers: list[tuple[str, Serves, Running]]) -> None:
    """Ctrl-C each server, last started first; a devserver is asked what it got before."""
    try:
        while servers:
            text, serves, proc = servers[-1]
            if serves.settle is not None:
                proc.expect(serves.settle, timeout=60)
            if serves.port == 8787:
                url = f"http://127.0.0.1:{session.ports[8787]}/api/calls?limit=1000"
                session.seen = requests.get(url, timeout=10).json()
                assert session.seen["counts"]["rejected"] == 0, session.seen["rejections"]
            code = proc.interrupt(timeout=60)
            servers.pop()
            assert code == serves.ctrl_c, f"{text!r} exited {code} on Ctrl-C: {proc.lines[-30:]}"
            assert not any("Traceback" in line for line in proc.lines), proc.lines
    finally:
        for _, _, proc in servers:
            proc.kill()


def _export(session: Session, text: str) -> None:
    for word in shlex.split(session.localize(text))[1:]:
        name, _, value = word.partition("=")
        session.env[name] = value


def _run(session: Session, command: Command) -> None:
    text = command.text
    if any(text.startswith(prefix) for prefix in NOT_RUN_PREFIXES):
        return
    for skipped in NOT_RUN:
        if text == skipped or text.startswith(skipped + " && "):
            if skipped.startswith("python -m pip"):
                _installed_here()
            text = text[len(skipped) :].removeprefix(" && ")
            break
    if not text:
        return
    if text in NOT_RUN:  # "... && pytest": this run is that command
        return
    if text.startswith("export "):
        _export(session, text)
        return
    lasting = text.endswith(" &")
    text = text.removesuffix(" &")
    prefix = _server_of(text)
    if prefix is not None:
        _start(session, Command(text, command.where), prefix, lasting)
        return
    assert not lasting, f"{command.where}: {text!r} runs in the background: add it to SERVES"
    if 8787 in session.ports:
        session.apps_run += 1
    argv = ["bash", "-c", session.localize(text)]
    result = run(argv, env=session.env, timeout=120, cwd=session.scratch)
    output = result.stdout + result.stderr
    code = result.returncode
    assert code == 0, f"{command.where}: {text!r} exited {code}:\n{output}"
    assert "Traceback" not in output, f"{command.where}: {text!r}:\n{output}"
    if text.startswith("curl "):
        assert result.stdout.strip(), f"{command.where}: {text!r} got an empty answer"


@pytest.mark.parametrize(("name", "blocks"), SESSIONS, ids=[name for name, _ in SESSIONS])
def test_documented_commands_run_as_written(
    name: str, blocks: list[list[Command]], tmp_path: Path
) -> None:
    """Each command of the session runs and exits 0 (servers: ready, then a clean Ctrl-C)."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    otlp = CaptureServer()
    session = Session(tmp_path, otlp)
    try:
        for block in blocks:
            try:
                for command in block:
                    _run(session, command)
            finally:
                _stop(session, session.block_servers)
    finally:
        try:
            _stop(session, session.lasting_servers)
        finally:
            otlp.close()
    if session.apps_run:  # what ran beside a devserver sent it events, all accepted
        assert session.seen["counts"]["event"] > 0, session.seen
    if name == "examples/README.md":  # the whole tour: every example's events arrived
        calls = session.seen["calls"]
        events = {(c["event"], c["user_id"]) for c in calls if c["method"] == "event"}
        assert events >= {
            ("Exported CSV", "42"),
            ("Mentioned someone", "42"),
            ("Viewed report", "42"),
            ("Shared report", "42"),
            ("Sent message", "42"),
            ("Generated report", "42"),
        }
        assert any(r.path == "/v1/traces" for r in otlp.requests)  # the OTLP command's spans


def test_the_documents_show_commands() -> None:
    """The reader is not vacuous: it finds the commands this test is about."""
    texts = {c.text for _, blocks in SESSIONS for block in blocks for c in block}
    assert "python examples/quickstart.py" in texts
    assert any(t.startswith("OTEL_TRACES_EXPORTER=console,bucket") for t in texts)
    assert any(t.startswith("curl ") for t in texts)
    assert any(_server_of(t.removesuffix(" &")) == "otel-bucket devserver" for t in texts)
    assert "otel-bucket demo" in texts
