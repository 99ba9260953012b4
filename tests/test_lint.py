"""The linter and the type checker pass (README, *Development*; issue 15).

- `ruff check tui_billing tests bench`: the rules of [tool.ruff] in pyproject.toml;
- `ruff format --check tui_billing tests bench`: the code is laid out as the formatter lays it out;
- `mypy tui_billing`: the whole package, the pure core (money, billing, risk,
  workflow and the core modules they build on) strictly ([tool.mypy]).

Both are in the test extras, so a missing one fails here rather than being
skipped.  mypy keeps its cache in .mypy_cache: about 20 s the first time,
under a second after that.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_check_passes():
    run = _run("ruff", "check", "--no-fix", "tui_billing", "tests", "bench")
    assert run.returncode == 0, f"ruff check failed:\n{run.stdout}\n{run.stderr}"


def test_ruff_format_leaves_everything_as_it_is():
    run = _run("ruff", "format", "--check", "tui_billing", "tests", "bench")
    assert run.returncode == 0, f"ruff format --check: run `ruff format tui_billing tests bench`:\n{run.stdout}"


def test_mypy_passes():
    run = _run("mypy", "tui_billing")
    assert run.returncode == 0, f"mypy failed:\n{run.stdout}\n{run.stderr}"
    assert "Success: no issues found" in run.stdout, run.stdout
