#!/usr/bin/env python3
"""A/B: this checkout's server against another revision's, interleaved, in one run.

    python bench/ab.py --base REV [--runs 3] [--seconds 3] [--shapes 10:10,500:20]
                       [--irc | --websocket] [--callgrind]

REV (a commit, tag or branch of this repository) is checked out into a temporary git
worktree; each run starts both servers in turn (headless, --rate 0, persistence on)
and drives them with the same load generator (bench/loadgen.py), so drift of this
shared machine hits both alike; the two go first in turn, run after run. Where the
machine allows (Linux, two cores or more) the server runs on one core and the load
generator on another, so neither takes the other's core. Prints the median
deliveries/s per fan-out shape, the ratio of the medians new/base and the range of
the runs' own ratios (each run's new against the base beside it); on Linux also the
server's CPU time per delivery (user + system, read from /proc before and after the
load, drain included), which a busy or stolen core disturbs far less than a rate.
With --callgrind the servers run under valgrind's callgrind and the table gives the
instructions each executed per delivery during the load (counters zeroed after the
clients settle; 16 messages in flight per sender instead of 64): a count that no
other load on the machine changes.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench")]

from loadgen import Load  # noqa: E402
from revision import callgrind_total, checked_out  # noqa: E402

SHAPES = [(10, 10), (100, 20), (500, 20), (1000, 20)]


def cores() -> tuple[set[int], set[int]] | None:
    """(the server's core, the load generator's) when this machine can pin them."""
    try:
        mine = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None
    return ({mine[-1]}, set(mine[:-1])) if len(mine) >= 2 else None


PINNED = cores()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def instructions(pid: int, out: Path) -> int:
    """Instructions callgrind counted in ``pid`` since its counters were last zeroed."""
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    dumps = sorted(out.parent.glob(out.name + ".*"), key=lambda p: p.stat().st_mtime)
    return callgrind_total(dumps[-1])


def fan_out(main: Path, tmp: Path, clients: int, senders: int, seconds: float,
            irc: bool = False, websocket: bool = False,
            callgrind: bool = False) -> tuple[float, float | None]:
    """(deliveries per second, server CPU seconds per delivery or None); with
    ``callgrind``, instructions per delivery in place of CPU seconds."""
    db = tmp / f"ab{time.monotonic_ns()}.db"
    out = tmp / f"cg{time.monotonic_ns()}.out"
    under = ["valgrind", "-q", "--tool=callgrind", f"--callgrind-out-file={out}",
             "--dump-instr=no", "--dump-line=no"] if callgrind else []
    proc = subprocess.Popen([*under, sys.executable, str(main), "--server", "--headless", "--host",
                             "127.0.0.1", "--port", "0", "--rate", "0", "--quiet",
                             "--max-clients", "20000", "--db", str(db),
                             *(["--irc-port", "0"] if irc else []),
                             *(["--hello-timeout", "600", "--ping-interval", "3600"]
                               if callgrind else [])],
                            stdout=subprocess.PIPE, text=True, cwd=main.parent,
                            preexec_fn=None if PINNED is None or callgrind else
                            lambda: os.sched_setaffinity(0, PINNED[0]))
    assert proc.stdout is not None
    port = int(proc.stdout.readline().rsplit(":", 1)[1])
    if irc:  # its second line: "irc listening on HOST:PORT"
        port = int(proc.stdout.readline().rsplit(":", 1)[1])
    load = Load(port, irc=irc, websocket=websocket)
    try:
        if callgrind:  # some 50 times slower: fewer hellos and messages in flight
            load.connect(clients, timeout=900, in_flight=50)
            load.settle(timeout=900)
        else:
            load.connect(clients)
            load.settle()
        if callgrind:
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        before = cpu_seconds(proc.pid)
        figures = load.fan_out(senders, seconds, **({"window": 16} if callgrind else {}))
        after = cpu_seconds(proc.pid)
        cpu = None if before is None or after is None else \
            (after - before) / figures["deliveries"]
        if callgrind:
            cpu = instructions(proc.pid, out) / figures["deliveries"]
        return float(figures["deliveries_per_s"]), cpu
    finally:
        for conn in load.conns:  # RST: no TIME_WAIT left behind
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        load.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        proc.stdout.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="revision to compare against")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--shapes", default=",".join(f"{c}:{s}" for c, s in SHAPES),
                        help="clients:senders, comma-separated (default: %(default)s)")
    door = parser.add_mutually_exclusive_group()
    door.add_argument("--irc", action="store_true", help="the clients speak IRC")
    door.add_argument("--websocket", action="store_true",
                      help="the clients come through the page's door (/ws)")
    parser.add_argument("--callgrind", action="store_true",
                        help="count the servers' instructions per delivery (valgrind)")
    args = parser.parse_args()
    shapes = [tuple(int(n) for n in shape.split(":")) for shape in args.shapes.split(",")]
    if PINNED is not None and not args.callgrind:  # (counted instructions need no pins)
        os.sched_setaffinity(0, PINNED[1])
    with checked_out(args.base) as (tmp, tree):
        mains = {"base": tree / "main.py", "new": ROOT / "main.py"}
        results: dict[tuple[str, str], list[float]] = {}
        cpus: dict[tuple[str, str], list[float]] = {}
        for run in range(args.runs):
            for clients, senders in shapes:
                for label, main_py in (list(mains.items())[::1 - 2 * (run % 2)]):
                    rate, cpu = fan_out(main_py, tmp, clients, senders, args.seconds,
                                        irc=args.irc, websocket=args.websocket,
                                        callgrind=args.callgrind)
                    results.setdefault((f"{clients}:{senders}", label), []).append(rate)
                    if cpu is not None:
                        cpus.setdefault((f"{clients}:{senders}", label), []).append(cpu)
    pinned = "unpinned" if PINNED is None or args.callgrind else \
        f"server on core {min(PINNED[0])}, load on {sorted(PINNED[1])}"
    door = "IRC" if args.irc else "WebSocket" if args.websocket else "JSON lines"
    print(f"\n{door}, medians of {args.runs} runs of {args.seconds:g} s, {pinned}\n")
    print(f"| fan-out | base {args.base} | new | new/base | runs' ratios |")
    print("| --- | --- | --- | --- | --- |")
    for clients, senders in shapes:
        shape = f"{clients}:{senders}"
        base = statistics.median(results[(shape, "base")])
        new = statistics.median(results[(shape, "new")])
        ratios = [n / b for n, b in zip(results[(shape, "new")], results[(shape, "base")])]
        print(f"| {shape} | {base / 1e6:.2f} M/s | {new / 1e6:.2f} M/s | {new / base:.2f} "
              f"| {min(ratios):.2f}-{max(ratios):.2f} |")
    if cpus:
        what = "instructions" if args.callgrind else "CPU"
        print(f"\nserver {what} per delivery (lower is better; base/new above 1: new is "
              "cheaper)\n")
        print(f"| fan-out | base {args.base} | new | base/new | runs' ratios |")
        print("| --- | --- | --- | --- | --- |")
        for clients, senders in shapes:
            shape = f"{clients}:{senders}"
            base_runs, new_runs = cpus[(shape, "base")], cpus[(shape, "new")]
            base = statistics.median(base_runs)
            new = statistics.median(new_runs)
            ratios = [b / n for n, b in zip(new_runs, base_runs)]
            shown = (f"{base:,.0f} | {new:,.0f}" if args.callgrind else
                     f"{base * 1e6:.2f} µs | {new * 1e6:.2f} µs")
            print(f"| {shape} | {shown} | {base / new:.2f} "
                  f"| {min(ratios):.2f}-{max(ratios):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
