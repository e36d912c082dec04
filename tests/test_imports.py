"""``import otel_bucket`` (and its WSGI/ASGI modules) imports no web framework or task queue."""

from __future__ import annotations

import pytest

from tests._running import python, run

FRAMEWORKS = ("django", "celery", "kombu", "flask", "fastapi", "starlette", "werkzeug")


@pytest.mark.parametrize("module", ["otel_bucket", "otel_bucket.wsgi", "otel_bucket.asgi"])
def test_importing_loads_no_framework(module: str) -> None:
    """A fresh interpreter importing the module has none of the frameworks in sys.modules."""
    code = (
        f"import sys, {module}\n"
        f"loaded = sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)\n"
        "print(loaded)\n"
    )
    result = run(python("-c", code))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "absent"),
    [("django", ("celery", "kombu", "flask", "starlette")), ("celery", ("flask", "starlette"))],
)
def test_integration_modules_import_only_their_framework(
    module: str, absent: tuple[str, ...]
) -> None:
    """otel_bucket.django imports Django but no task queue; otel_bucket.celery no web framework
    (Celery itself may import Django when it is installed)."""
    code = (
        f"import sys, otel_bucket.{module}\n"
        f"assert {module!r} in sys.modules\n"
        f"print(sorted(m for m in {absent!r} if m in sys.modules))\n"
    )
    result = run(python("-c", code))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
