"""The documentation site builds strictly, its configuration page is complete, and the README
is a front page that links into it.

``mkdocs build --strict`` fails on any warning: a broken link or anchor, a page left out of the
navigation, a docstring mkdocstrings cannot render. It builds offline (no plugin fetches).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import otel_bucket
from tests._running import ROOT, child_env, run

DOCS = ROOT / "docs"
README = ROOT / "README.md"
# The two commands CI and the tests run: the README's first lines, exactly.
FIRST_LINES = [
    "# otel-bucket",
    "",
    "```bash",
    'python -m pip install -e ".[dev]" && otel-bucket demo    # the demo, offline, against the'
    " built-in dev server",
    'python -m pip install -e ".[dev]" && pytest              # the tests (lint, format, types'
    " included)",
    "```",
]
VARIABLE = re.compile(r"(OTEL_)?BUCKET_[A-Z0-9_]*[A-Z0-9]")


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """``mkdocs build --strict`` succeeds and logs no warning, the API page included."""
    site = tmp_path / "site"
    env = child_env(NO_MKDOCS_2_WARNING="1")  # Material's notice about its successor
    argv = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    result = run(argv, env=env, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    api = (site / "api" / "index.html").read_text()
    for name in (
        "BucketSpanExporter",
        "install",
        "identify",
        "wsgi.BucketMiddleware",
        "bridge.Bridge",
    ):
        assert f'id="otel_bucket.{name}"' in api, name
    assert (site / "images" / "devpage-overview.png").exists()


def _variables_read() -> set[str]:
    """Every ``BUCKET_*``/``OTEL_BUCKET_*`` string in the package's code that is not the name of
    a public constant (``BUCKET_EVENT`` is a name, not a variable)."""
    found: set[str] = set()
    for path in (ROOT / "otel_bucket").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            value = node.value if isinstance(node, ast.Constant) else None
            if isinstance(value, str) and VARIABLE.fullmatch(value):
                found.add(value)
    return {name for name in found if not hasattr(otel_bucket, name)}


def test_every_variable_the_code_reads_is_on_the_configuration_page() -> None:
    """The configuration reference names each variable the code reads (and reads no stale one)."""
    variables = _variables_read()
    assert {"BUCKET_TRACKING_KEY", "BUCKET_SPOOL_DIR", "OTEL_BUCKET_IDENTITY"} <= variables
    page = (DOCS / "configuration.md").read_text()
    missing = sorted(name for name in variables if f"`{name}`" not in page)
    assert not missing, f"docs/configuration.md does not name {missing}"
    named = {match.group(1) for match in re.finditer(rf"`({VARIABLE.pattern})`", page)}
    assert not {name for name in named if not hasattr(otel_bucket, name)} - variables


def test_the_readme_is_a_front_page() -> None:
    """At most 300 lines, the two commands first, and its links to the docs lead to pages."""
    lines = README.read_text().splitlines()
    assert len(lines) <= 300, len(lines)
    assert lines[: len(FIRST_LINES)] == FIRST_LINES
    links = re.findall(r"\]\((docs/[^)#]+)", README.read_text())
    assert len(links) >= 10, links
    for link in links:
        assert (ROOT / link).exists(), link


def test_every_page_is_in_the_navigation() -> None:
    """Each page of docs/ is listed in mkdocs.yml (a page left out is also a strict warning)."""
    config = (ROOT / "mkdocs.yml").read_text()
    for page in DOCS.rglob("*.md"):
        assert f" {page.relative_to(DOCS)}\n" in config, page
