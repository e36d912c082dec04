"""The package's version, from its installed metadata (``0`` in a bare source tree)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["VERSION", "tracer_version"]

try:
    VERSION = version("otel-bucket")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    VERSION = "0"


def tracer_version() -> str:
    """The version our tracer and meter report: the package's."""
    return VERSION
