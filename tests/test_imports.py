"""``import otel_bucket`` (and its WSGI/ASGI modules) imports no web framework or task queue; every
public import path and entry point imports."""

from __future__ import annotations

import re

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


# Every public import path: the regrouping of the private modules (ARCHITECTURE.md) keeps them.
PUBLIC_MODULES = (
    "otel_bucket",
    "otel_bucket.wsgi",
    "otel_bucket.asgi",
    "otel_bucket.django",
    "otel_bucket.celery",
    "otel_bucket.bridge",
    "otel_bucket.devserver",
    "otel_bucket.cli",
)


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_public_module_imports_with_its_names(module: str) -> None:
    """Each public module imports, and every name in its ``__all__`` is there."""
    code = (
        f"import importlib\n"
        f"m = importlib.import_module({module!r})\n"
        "missing = [n for n in getattr(m, '__all__', ()) if not hasattr(m, n)]\n"
        "print(missing)\n"
    )
    result = run(python("-c", code))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_package_root_exports_its_public_api() -> None:
    """``from otel_bucket import ...`` gives every public name, as before the regrouping."""
    import otel_bucket

    assert sorted(otel_bucket.__all__) == [
        "BUCKET_ATTRIBUTES_PREFIX",
        "BUCKET_COMPANY_ID",
        "BUCKET_COMPANY_PREFIX",
        "BUCKET_EVENT",
        "BUCKET_USER_PREFIX",
        "BucketCall",
        "BucketSpanExporter",
        "BucketSpanProcessor",
        "ENDUSER_ID",
        "ExporterStats",
        "Settings",
        "USER_ID",
        "__version__",
        "feature",
        "flush",
        "identify",
        "install",
        "set_event_attributes",
        "track",
    ]
    for name in otel_bucket.__all__:
        assert getattr(otel_bucket, name) is not None, name


def _entry_points() -> dict[str, str]:
    """``name = "module:attribute"`` lines of pyproject's scripts and exporter entry points."""
    from tests._running import ROOT

    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    points: dict[str, str] = {}
    for table in ("[project.scripts]", "[project.entry-points.opentelemetry_traces_exporter]"):
        body = text.split(table, 1)[1].split("\n[", 1)[0]
        for name, target in re.findall(r'^([\w-]+) = "([\w.]+:\w+)"$', body, flags=re.M):
            points[name] = target
    assert points, "no entry point found in pyproject.toml"
    return points


@pytest.mark.parametrize(("name", "target"), sorted(_entry_points().items()))
def test_entry_points_resolve(name: str, target: str) -> None:
    """The console script (``otel-bucket``) and the exporter entry point name real objects."""
    import importlib

    module, _, attribute = target.partition(":")
    assert callable(getattr(importlib.import_module(module), attribute)), name


def test_python_dash_m_runs_the_command() -> None:
    """``python -m otel_bucket --version`` runs the ``otel-bucket`` command."""
    result = run(python("-m", "otel_bucket", "--version"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("otel-bucket ")
