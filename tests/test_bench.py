"""A short smoke run of bench/run so the benchmark never rots (no timed assertions)."""

from __future__ import annotations

import shutil
import subprocess
import sys

from conftest import ROOT


def test_bench_run_quick_prints_every_row():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "run"), "--quick"],
                            capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert result.returncode == 0, (result.returncode, result.stdout[-2000:], result.stderr[-3000:])
    table = result.stdout
    rows = ["fan-out 10:10", "fan-out 50:10", "latency 10 clients", "connect storm",
            "server RSS at", "resume: 10 clients x 50 missed"]
    if shutil.which("Xvfb") and shutil.which("xdotool"):  # the window rows need both
        rows += ["server window fan-out", "server window: slowest click"]
    for row in rows:
        assert f"| {row}" in table, table
