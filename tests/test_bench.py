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


def test_the_floor_server_relays_as_the_load_generator_expects(tmp_path):
    """bench/floor.py's server (with its fdatasync'd log) serves bench/loadgen.py: every
    member gets every message, the sender's copy with its ref (no timing checked)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from floor import start_floor
    from loadgen import Load
    proc, port = start_floor(tmp_path, True, [], None)
    try:
        load = Load(port)
        load.connect(5, timeout=30)
        result = load.fan_out(2, 0.3)  # raises when a member misses a message
        assert result["messages"] > 0 and result["deliveries"] == 5 * result["messages"]
        load.close()
        logged = [p for p in tmp_path.iterdir() if p.name.startswith("floor")]
        assert logged and logged[0].stat().st_size > 0  # what it stored before sending
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
