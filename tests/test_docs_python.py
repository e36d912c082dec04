"""Every Python block of README.md and of the documentation pages (docs/**/*.md) runs as
written, against the dev server.

Each block runs as a program of its own (a fresh interpreter, in a scratch directory) in the
environment a reader sets up as the docs say: ``BUCKET_ENDPOINT`` naming a dev server started
for the test, ``BUCKET_TRACKING_KEY``, and what the block's ``# placeholder:`` comments ask for
(``EMAIL_HASH_KEY``; a redis-server where ``localhost:6379`` is written, on a port of its own as
``tests/test_docs_commands.py`` gives servers theirs). Where a block is a part of a program (the
routes of an app whose middleware it sets up, the request that calls a handler), ``AROUND``
holds what comes before and after it in that program: the block itself is never changed. The
program must exit 0 with nothing on stderr (no traceback, no warning from otel-bucket or
OpenTelemetry), and the dev server must have accepted exactly the calls the block promises.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from otel_bucket.devserver import DevServer
from tests._redis import redis_server
from tests._running import ROOT, child_env, free_port, python, run

pytestmark = pytest.mark.slow  # each block runs in an interpreter of its own

EMAIL_HASH_KEY = "a-secret-of-yours"
INSTALL = "from otel_bucket import install\n\ninstall()\n"


@dataclass(frozen=True)
class Around:
    """What comes before and after a block in the program it is part of, what the dev server
    then holds (see ``summary``), and a pattern its standard output must match."""

    before: str = ""
    after: str = ""
    calls: frozenset[str] = frozenset()
    stdout: str = ""


AROUND: dict[str, Around] = {
    "front#1": Around(  # the README's example
        calls=frozenset({"user 42", "company acme 42 plan=enterprise", "event 42 Exported report"}),
    ),
    "setup#1": Around(),
    "setup#2": Around(),
    "feature#1": Around(
        before=INSTALL,
        after="""
import asyncio

from otel_bucket import identify

with identify(user_id="42", company_id="acme"):
    print(export_csv([{"id": "1", "total": "3"}]))
    asyncio.run(send_message("thanks @ada"))
""",
        calls=frozenset(
            {
                "user 42",
                "company acme 42",
                "event 42 export_csv rows=1",
                "event 42 Sent message position=popover,version=3",
                "event 42 Mentioned someone mentions=1",
            }
        ),
        stdout=r"^1,3$",
    ),
    "identify#1": Around(
        before=INSTALL,
        after="nightly_export()\n",
        calls=frozenset(
            {
                "user 42 name=Ada Lovelace",
                "company acme 42 plan=enterprise",
                "event 42 Viewed dashboard",
            }
        ),
    ),
    "integrations#1": Around(),  # Django settings: a module the project imports
    "integrations#2": Around(  # FastAPI: a login that fills the session, a route with a feature
        before=INSTALL,
        after="""
import asyncio

import httpx
from fastapi import Request

from otel_bucket import feature


@feature("Viewed report")
def view_report() -> None: ...


@app.post("/login/{user_id}")
async def login(user_id: str, request: Request) -> None:
    request.session["user_id"] = user_id


@app.get("/report")
def report() -> None:
    view_report()


async def visit() -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        assert (await client.get("/report")).status_code == 200  # anonymous: nothing sent
        assert (await client.post("/login/42")).status_code == 200
        assert (await client.get("/report")).status_code == 200


asyncio.run(visit())
""",
        calls=frozenset({"user 42", "event 42 Viewed report"}),
    ),
    "integrations#3": Around(  # Flask behind a proxy naming the user
        before=INSTALL,
        after="""
from otel_bucket import feature


@feature("Viewed report")
def view_report() -> None: ...


@app.get("/report")
def report() -> str:
    view_report()
    return "ok"


assert app.test_client().get("/report", headers={"X-Forwarded-User": "42"}).text == "ok"
""",
        calls=frozenset({"user 42", "event 42 Viewed report"}),
    ),
    "integrations#4": Around(  # a worker (in this process) runs the task the block sent
        after="""
import threading

from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun

ran = threading.Event()
task_postrun.connect(lambda **_: ran.set(), weak=False)
with start_worker(app, pool="solo", perform_ping_check=False):
    assert ran.wait(30)
""",
        calls=frozenset({"user 42", "company acme 42", "event 42 Exported report"}),
    ),
    "before-send#1": Around(
        after="""
from otel_bucket import feature, identify


@feature("Health check")
def health() -> None: ...


@feature("Exported report")
def export_report() -> None: ...


with identify(user_id="42"):
    health()
    export_report()
""",
        calls=frozenset({"user 42", "event 42 Exported report"}),
    ),
    "before-send#2": Around(
        after="""
from otel_bucket import identify, track

with identify(user_id="42", user_attributes={"email": " Ada@Example.com"}):
    track("Signed in")
""",
        calls=frozenset(
            {
                "user 42 email="
                + hmac.new(EMAIL_HASH_KEY.encode(), b"ada@example.com", "sha256").hexdigest(),
                "event 42 Signed in",
            }
        ),
    ),
    "before-send#3": Around(
        after="""
from otel_bucket import identify, track

with identify(user_id="7", company_id="acme-staff"):
    track("Exported report")
with identify(user_id="42", company_id="globex"):
    track("Exported report")
""",
        calls=frozenset({"user 7", "user 42", "company globex 42", "event 42 Exported report"}),
    ),
    "metrics#1": Around(stdout=r'"name": "otel_bucket\.queue\.capacity"'),
    "deployment#1": Around(  # the platform invokes the handler
        after='print(handler({"user_id": "42", "company_id": "acme", "invoice_id": "7"}, None))\n',
        calls=frozenset({"user 42", "company acme 42", "event 42 Generated invoice"}),
    ),
}
# Blocks the test does not run, and why: none today. A block that cannot run as written goes
# here, named, so that it is a decision and not an accident.
NOT_RUN: dict[str, str] = {}


@dataclass(frozen=True)
class Block:
    name: str  # section#n (the page's name until its first section marker)
    where: str  # file:line, for messages
    code: str


# The README and every page of the documentation site.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of ``path``, named by their section and rank in it."""
    blocks: list[Block] = []
    section, rank, inside, start, lines = path.stem, 0, False, 0, []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        marker = re.match(r"<!-- section: (\S+) -->", line)
        if marker:
            section, rank = marker.group(1), 0
        elif line.strip() == "```python":
            inside, start, lines = True, number, []
        elif inside and line.strip() == "```":
            inside, rank = False, rank + 1
            where = f"{path.relative_to(ROOT)}:{start}"
            blocks.append(Block(f"{section}#{rank}", where, "\n".join(lines) + "\n"))
        elif inside:
            lines.append(line)
    return blocks


BLOCKS = [block for page in PAGES for block in python_blocks(page)]


def summary(method: str, body: dict[str, object]) -> str:
    """One call as text: ``event 42 Name k=v``, ``user 42 k=v``, ``company acme 42 k=v``."""
    attributes = body.get("attributes") or {}
    assert isinstance(attributes, dict)
    words = [method]
    if method == "company":
        words.append(str(body["companyId"]))
    words.append(str(body["userId"]))
    if method == "event":
        words.append(str(body["event"]))
    if attributes:
        words.append(",".join(f"{k}={v}" for k, v in sorted(attributes.items())))
    return " ".join(words)


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevServer]:
    server = DevServer(port=0, db_path=tmp_path / "dev.sqlite3").start()
    yield server
    server.stop()


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_python_block_runs_as_written(block: Block, dev: DevServer, tmp_path: Path) -> None:
    """The block, inside the program ``AROUND`` says it is part of, exits 0 with a clean stderr,
    and the dev server got exactly the calls it promises."""
    if block.name in NOT_RUN:
        pytest.skip(NOT_RUN[block.name])
    around = AROUND[block.name]
    code = block.code
    env = child_env(
        BUCKET_ENDPOINT=dev.url,
        BUCKET_TRACKING_KEY="dev",
        BUCKET_SPOOL_DIR=str(tmp_path / "spool"),
        EMAIL_HASH_KEY=EMAIL_HASH_KEY,
    )
    program = tmp_path / "program.py"
    if "localhost:6379" in code:
        port = free_port()
        code = code.replace("localhost:6379", f"127.0.0.1:{port}")
        with redis_server(tmp_path, "--port", str(port), "--bind", "127.0.0.1"):
            program.write_text(around.before + code + around.after)
            result = run(python(str(program)), env=env, cwd=tmp_path)
    else:
        program.write_text(around.before + code + around.after)
        result = run(python(str(program)), env=env, cwd=tmp_path)
    where = f"{block.where} ({block.name})"
    assert result.returncode == 0, f"{where}:\n{result.stderr}"
    assert result.stderr == "", f"{where}:\n{result.stderr}"
    assert re.search(around.stdout, result.stdout, re.MULTILINE), f"{where}:\n{result.stdout}"
    snapshot = dev.snapshot(limit=100)
    assert snapshot.counts["rejected"] == 0, snapshot.rejections
    assert {summary(call.method, call.body) for call in snapshot.calls} == around.calls, where


def test_every_block_is_accounted_for() -> None:
    """The reader finds the blocks, each one is run (or named in NOT_RUN with why), and every
    placeholder says what to put there."""
    names = [block.name for block in BLOCKS]
    assert len(names) == len(set(names)) >= 13
    read = {block.where.split(":")[0] for block in BLOCKS}
    assert {"README.md", "docs/getting-started.md", "docs/integrations.md"} <= read, read
    assert set(names) == set(AROUND) | set(NOT_RUN)
    for block in BLOCKS:
        for line in block.code.splitlines():
            if "placeholder" in line:
                assert re.search(r"# placeholder: \w", line), f"{block.where}: {line}"


def test_the_hash_recipe_is_what_the_test_expects() -> None:
    """The expected digest above is the recipe's: HMAC-SHA256 of the trimmed, lowercased email."""
    digest = hmac.new(EMAIL_HASH_KEY.encode(), b"ada@example.com", hashlib.sha256).hexdigest()
    assert any(digest in call for call in AROUND["before-send#2"].calls)
