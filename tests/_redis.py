"""A Celery broker for the tests: a redis-server started by the test on a Unix socket, or kombu's
filesystem transport when no redis-server is installed (the prefork lifecycle is what is under
test, not the broker)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests._group import Group


@dataclass(frozen=True)
class Broker:
    """Where Celery's messages go: the URL, and the environment the worker needs for it."""

    url: str
    env: dict[str, str] = field(default_factory=dict)


def filesystem_options(folder: str) -> dict[str, str]:
    """kombu's filesystem transport options: every folder it writes under ``folder``."""
    return {
        "data_folder_in": folder,
        "data_folder_out": folder,
        "control_folder": str(Path(folder) / "control"),
    }


@contextmanager
def broker(folder: Path) -> Iterator[Broker]:
    """Start redis-server in ``folder`` (or set up the filesystem transport there)."""
    if shutil.which("redis-server") is None:
        messages = folder / "messages"
        (messages / "control").mkdir(parents=True)
        yield Broker("filesystem://", {"CELERY_FS_FOLDER": str(messages)})
        return
    sock = folder / "redis.sock"
    with redis_server(folder, "--port", "0", "--unixsocket", str(sock)):
        yield Broker(f"redis+socket://{sock}")


@contextmanager
def redis_server(folder: Path, *listen: str) -> Iterator[None]:
    """A redis-server in ``folder``, listening as ``listen`` says (``--port N``), stopped at the
    end; it must be installed (``.ci/run`` installs it)."""
    redis = shutil.which("redis-server")
    assert redis is not None, "redis-server is not installed (apt-get install redis-server)"
    server = Group([redis, *listen, "--save", "", "--appendonly", "no"], cwd=folder)
    try:
        server.expect(r"(?i)ready to accept connections", timeout=20)
        yield
    finally:
        server.stop_group()
