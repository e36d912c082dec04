"""Shared fixtures: a clean environment, a capturing server on 127.0.0.1, real providers."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from tests._capture import CaptureServer


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No BUCKET_* or OTEL_* variable from the machine leaks into a test, and no test writes
    to (or sends from) the user's real spool: tests of the spool name their own directory."""
    for name in list(os.environ):
        if name.startswith(("BUCKET_", "OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BUCKET_SPOOL_DIR", "off")


@pytest.fixture
def server() -> Iterator[CaptureServer]:
    """A scriptable HTTP server on 127.0.0.1 recording what it receives."""
    srv = CaptureServer()
    yield srv
    srv.close()


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that something else is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]
