#!/usr/bin/env python3
"""A/B: this checkout's server against another revision's, interleaved, in one run.

    python bench/ab.py --base REV [--runs 3] [--seconds 3] [--shapes 10:10,500:20]
                       [--irc | --websocket]

REV (a commit, tag or branch of this repository) is checked out into a temporary git
worktree; each run starts both servers in turn (headless, --rate 0, persistence on)
and drives them with the same load generator (bench/loadgen.py), so drift of this
shared machine hits both alike. Prints the median deliveries/s per fan-out shape and
the ratio new/base.
"""

from __future__ import annotations

import argparse
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench")]

from loadgen import Load  # noqa: E402

SHAPES = [(10, 10), (100, 20), (500, 20), (1000, 20)]


def fan_out(main: Path, tmp: Path, clients: int, senders: int, seconds: float,
            irc: bool = False, websocket: bool = False) -> float:
    db = tmp / f"ab{time.monotonic_ns()}.db"
    proc = subprocess.Popen([sys.executable, str(main), "--server", "--headless", "--host",
                             "127.0.0.1", "--port", "0", "--rate", "0", "--quiet",
                             "--max-clients", "20000", "--db", str(db),
                             *(["--irc-port", "0"] if irc else [])],
                            stdout=subprocess.PIPE, text=True, cwd=main.parent)
    assert proc.stdout is not None
    port = int(proc.stdout.readline().rsplit(":", 1)[1])
    if irc:  # its second line: "irc listening on HOST:PORT"
        port = int(proc.stdout.readline().rsplit(":", 1)[1])
    load = Load(port, irc=irc, websocket=websocket)
    try:
        load.connect(clients)
        load.settle()
        return float(load.fan_out(senders, seconds)["deliveries_per_s"])
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
    args = parser.parse_args()
    shapes = [tuple(int(n) for n in shape.split(":")) for shape in args.shapes.split(",")]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        tree = tmp / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q",
                        str(tree), args.base], check=True)
        try:
            mains = {"base": tree / "main.py", "new": ROOT / "main.py"}
            results: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.runs):
                for clients, senders in shapes:
                    for label, main_py in mains.items():
                        rate = fan_out(main_py, tmp, clients, senders, args.seconds,
                                       irc=args.irc, websocket=args.websocket)
                        results.setdefault((f"{clients}:{senders}", label), []).append(rate)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(tree)], check=True)
    print(f"| fan-out | base {args.base} | new | new/base | runs |")
    print("| --- | --- | --- | --- | --- |")
    for clients, senders in shapes:
        shape = f"{clients}:{senders}"
        base = statistics.median(results[(shape, "base")])
        new = statistics.median(results[(shape, "new")])
        print(f"| {shape} | {base / 1e6:.2f} M/s | {new / 1e6:.2f} M/s | {new / base:.2f} "
              f"| {args.runs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
