"""A short smoke run of bench/run so the benchmark never rots (no timed assertions)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time

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


def test_the_floor_with_rows_keeps_every_message_in_lanchats_table(tmp_path):
    """bench/floor.py's floor-rows server: what it relays also becomes rows of
    lanchat's `messages` table, each sender's texts all there (no timing checked)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from floor import start_floor
    from loadgen import TEXT, Load
    proc, port = start_floor(tmp_path, False, [], None, keep_rows=True)
    try:
        load = Load(port)
        load.connect(4, timeout=30)
        result = load.fan_out(2, 0.3)
        load.close()
        [path] = [p for p in tmp_path.iterdir() if p.name.endswith(".db")]
        db = sqlite3.connect(path)
        deadline = time.monotonic() + 30  # it fills once a second
        count = 0
        while count < result["messages"] and time.monotonic() < deadline:
            count = db.execute("SELECT count(*) FROM messages").fetchone()[0]
            time.sleep(0.05)
        assert count == result["messages"]
        assert db.execute("SELECT DISTINCT room, text FROM messages").fetchall() == [
            ("general", TEXT)]
        assert db.execute("SELECT count(DISTINCT sender) FROM messages").fetchone()[0] == 2
        db.close()
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
