"""ruff and mypy, configured in pyproject.toml, are clean: part of every test run."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.parametrize("tool", [["ruff", "check", "."], ["mypy"]], ids=["ruff", "mypy"])
def test_linters_are_clean(tool):
    result = subprocess.run([sys.executable, "-m", *tool], capture_output=True, text=True,
                            cwd=ROOT, timeout=240)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
