"""The ``otel-bucket`` command (and ``python -m otel_bucket``): dev, demo, spool, bridge.

The top of the package: it may import everything below it (``bridge``, ``devserver``, ``spool``,
``export`` and the package root); nothing in ``otel_bucket`` imports it. ``main`` is the console
script's entry point (``otel_bucket.cli:main`` in ``pyproject.toml``).
"""

from otel_bucket.cli._main import main

__all__ = ["main"]
