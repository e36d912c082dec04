"""``feature`` keeps the decorated function's static type (ParamSpec), as mypy sees it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ROOT / "tests" / "typing" / "check_feature.py"

WRONG_CALLS = """
from otel_bucket import feature

@feature("Export")
def export(rows: int, *, sep: str = ",") -> str:
    return sep * rows

export("ten")
export(1, sep=2)
export(1, separator=",")
length: int = export(1)
"""


def mypy(*paths: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *map(str, paths)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_feature_keeps_signature_and_return_type() -> None:
    """mypy --strict accepts the typing file: every decorated call keeps its types."""
    proc = mypy(CHECKED)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_rejects_wrongly_typed_calls(tmp_path: Path) -> None:
    """Wrong argument types, unknown keywords and a wrong return use are errors after decoration."""
    wrong = tmp_path / "wrong_calls.py"
    wrong.write_text(WRONG_CALLS)
    proc = mypy(wrong)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 4, proc.stdout
    for line, code in zip(errors, ["arg-type", "arg-type", "call-arg", "assignment"], strict=True):
        assert f"[{code}]" in line, proc.stdout


@pytest.mark.parametrize("name", ["bare", "named", "send", "rows", "stream", "job", "async_job"])
def test_typing_file_defines_what_it_checks(name: str) -> None:
    """The typing file is not vacuous: each checked function is in it."""
    assert f"def {name}(" in CHECKED.read_text()
