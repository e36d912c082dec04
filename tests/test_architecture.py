"""The package keeps its layers (ARCHITECTURE.md): import-linter's contracts, module sizes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "otel_bucket"
MAX_LINES = 400
MAX_TOP_MODULES = 12


def _lint_imports() -> list[str]:
    script = Path(sys.executable).with_name("lint-imports")
    if script.exists():
        return [str(script)]
    found = shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]'")
    return [found]


def test_import_contracts_are_kept() -> None:
    """`lint-imports` finds no circle and no import against the layer order."""
    proc = subprocess.run(
        [*_lint_imports(), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout, proc.stdout


def test_a_broken_contract_fails(tmp_path: Path) -> None:
    """The check is real: a module importing against the layers makes `lint-imports` fail."""
    tree = tmp_path / "tree"
    shutil.copytree(PACKAGE, tree / "otel_bucket", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    upward = tree / "otel_bucket" / "ground" / "_upward.py"
    upward.write_text("from otel_bucket.export import _exporter  # against the layers\n")
    proc = subprocess.run(
        [*_lint_imports(), "--no-cache"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(tree), "PATH": ""},
    )
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "otel_bucket.ground is not allowed to import otel_bucket.export" in proc.stdout


def test_no_module_is_over_400_lines() -> None:
    """Every module of the package has at most 400 lines."""
    long = {
        str(path.relative_to(ROOT)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_top_level_holds_at_most_a_dozen_modules() -> None:
    """``otel_bucket/`` keeps its code in packages: a dozen modules of its own at most."""
    modules = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(modules) <= MAX_TOP_MODULES, modules


def test_every_package_says_what_it_may_import() -> None:
    """Each package's ``__init__`` has a docstring saying what it is and what it imports."""
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        text = init.read_text(encoding="utf-8")
        assert text.startswith('"""'), init
        docstring = text.split('"""')[1]
        assert "import" in docstring, init
