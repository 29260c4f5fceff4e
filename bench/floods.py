#!/usr/bin/env python3
"""How long another client waits while the server is flooded: the figures of the flood
tests, beside a quiet server's, in one invocation.

    python bench/floods.py [--runs 3] [-k EXPRESSION]

The flood tests (tests/test_floods.py, the storage faults of tests/test_hardening.py,
the 50 MB upload of tests/test_files.py) assert only what happened: every probe ping
answered, in order, while the flood went on. Each notes its figures (the slowest probe
round trip, the newcomer's wait for `welcome`) in $LANCHAT_FLOOD_REPORT; this script runs
them --runs times, and the same probe against a quiet server in between, and prints the
medians and each flood's figure as a multiple of the quiet one. A run that fails is
reported in the notes, not fatal.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

TESTS = ["tests/test_floods.py", "tests/test_hardening.py::test_a_full_disk_refuses_messages_"
         "and_recovers_by_itself", "tests/test_hardening.py::test_a_database_locked_by_another_"
         "program", "tests/test_files.py::test_a_probe_chats_while_a_50_mb_file_goes_up"]
QUIET_SECONDS = 2.0


def quiet_probe(tmp: Path) -> float:
    """The slowest of a probe's round trips against an idle server, QUIET_SECONDS long."""
    import threading

    from conftest import launch
    from flood import Probe

    server = launch(tmp / f"quiet{os.getpid()}.db")
    try:
        probe = Probe(server.port)
        threading.Event().wait(QUIET_SECONDS)  # the probe pings every 20 ms meanwhile
        return probe.stop()
    finally:
        server.stop()
        for pipe in (server.proc.stdout, server.proc.stderr):
            pipe.close()


def flood_run(report: Path, expression: str | None) -> str:
    """One run of the flood tests; '' when all passed, else pytest's last line."""
    env = dict(os.environ, LANCHAT_FLOOD_REPORT=str(report))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS]
    if expression:
        cmd += ["-k", expression]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode == 0:
        return ""
    tail = [line for line in result.stdout.splitlines() if line.strip()]
    return tail[-1] if tail else f"pytest exited with {result.returncode}"


def read_report(report: Path) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = defaultdict(list)
    if report.exists():
        for line in report.read_text().splitlines():
            test, *pairs = line.split()
            for pair in pairs:
                key, value = pair.split("=")
                figures[f"{test}: {key}"].append(float(value))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("-k", dest="expression", help="only the flood tests pytest -k picks")
    args = parser.parse_args()
    quiet: list[float] = []
    failures: list[str] = []
    figures: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for n in range(args.runs):  # interleaved: both see the machine as it is then
            quiet.append(quiet_probe(tmp))
            report = tmp / f"report{n}.txt"
            failed = flood_run(report, args.expression)
            if failed:
                failures.append(f"run {n + 1}: {failed}")
            for key, values in read_report(report).items():
                figures[key] += values
    base = statistics.median(quiet)
    print(f"\nmedians of {args.runs} run(s), {os.cpu_count()} cores; quiet = the same probe "
          f"against an idle server, {QUIET_SECONDS:g} s, between the runs\n")
    print("| flood: figure | median | quiet probe | multiple |")
    print("| --- | --- | --- | --- |")
    print(f"| quiet server: probe_max | {base * 1000:.1f} ms | | 1.0x |")
    for key in sorted(figures):
        value = statistics.median(figures[key])
        if key.split(": ")[1].startswith(("probe_max", "welcome")):
            print(f"| {key} | {value * 1000:.1f} ms | {base * 1000:.1f} ms | "
                  f"{value / base:.1f}x |")
        else:  # counts, MB, seconds of a whole storm
            print(f"| {key} | {value:,.2f} | | |")
    for failure in failures:
        print(f"\nnot every flood test passed: {failure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
