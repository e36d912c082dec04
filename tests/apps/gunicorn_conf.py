"""gunicorn settings for the server tests (the worker class and preload come from the command)."""

from __future__ import annotations

from typing import Any

import otel_bucket


def post_worker_init(worker: Any) -> None:
    """Re-arm the SIGTERM drain: gunicorn set the worker's own signal handlers after the fork."""
    otel_bucket.install()
