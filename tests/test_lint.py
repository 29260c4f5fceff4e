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


def test_requirements_txt_pins_what_pyproject_depends_on():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert sorted(pins) == sorted(project["dependencies"])
    assert project["requires-python"] == ">=3.11"
    assert "pytest" not in " ".join(project["dependencies"])  # tests apart
