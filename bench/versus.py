#!/usr/bin/env python3
"""lanchat against ngIRCd and a thread-per-client relay, with the same load generator.

    python bench/versus.py [--runs 3] [--seconds 3] [--shapes 10:10,100:20,500:20,1000:20]

Each server runs pinned to CPU 0 and the load generator (bench/loadgen.py) to CPU 1,
so a server's speed is one core's. Servers, each started fresh for every measurement,
interleaved run by run so that drift of this shared machine hits all alike:

- lanchat over JSON lines (headless, --rate 0, every message committed to SQLite
  before it is delivered), and the same server over IRC (--irc-port);
- ngIRCd (Debian's `ngircd`, with its own config here: penalties off, no connection
  limits, no DNS or ident lookups): stores nothing;
- the thread-per-client relay (bench/threaded_relay.py): stores nothing;
- the floor with fsync (bench/floor.py): the least a CPython selectors loop can spend
  on the same messages, an fdatasync'd append per pass included; and the same floor
  that also keeps every message as a row of lanchat's SQLite table (floor-rows). The
  last columns are lanchat's CPU per delivery as a multiple of each.

IRC clients do not ask for echo-message (ngIRCd has none): a sender's acks are the
PONGs of a PING after every 8 messages, and a message reaches the members but its
sender. Prints, per fan-out shape, deliveries/s and the server's CPU seconds (user +
system, from /proc) per million deliveries: medians, and the spread of the runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench")]

from loadgen import Load  # noqa: E402

SHAPES = [(10, 10), (100, 20), (500, 20), (1000, 20)]
SERVER_CPU, LOAD_CPU = 0, 1
TICK = os.sysconf("SC_CLK_TCK")
NGIRCD_CONF = """[Global]
    Name = bench.local
    Info = bench
    Listen = 127.0.0.1
    Ports = {port}
    MotdPhrase = bench
    PidFile = {dir}/ngircd.pid
[Limits]
    MaxConnections = 0
    MaxConnectionsIP = 0
    MaxJoins = 0
    MaxPenaltyTime = 0
    PingTimeout = 600
    PongTimeout = 600
[Options]
    DNS = no
    Ident = no
    PAM = no
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {port}") from None
            time.sleep(0.05)  # polling the port, bounded by the deadline


def room_for(clients: int) -> Callable[[], None]:
    """Run in the server's process before it starts: descriptors for ``clients``
    sockets and some more, not many more (ngIRCd's cost per connection grows with
    the limit: it closes every descriptor up to it in each helper it forks)."""
    def limit() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = clients + 256
        if hard != resource.RLIM_INFINITY:
            want = min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, 1024), hard))
    return limit


def start(kind: str, tmp: Path, clients: int) -> tuple[subprocess.Popen, int, bool]:
    """A fresh server of ``kind``: (its process, the port to load, speaks IRC)."""
    pin = ["taskset", "-c", str(SERVER_CPU)]
    if kind.startswith("lanchat"):
        irc = kind == "lanchat-irc"
        proc = subprocess.Popen(
            [*pin, sys.executable, str(ROOT / "main.py"), "--server", "--headless",
             "--host", "127.0.0.1", "--port", "0", "--rate", "0", "--quiet",
             "--max-clients", "20000", "--db", str(tmp / f"v{time.monotonic_ns()}.db"),
             *(["--irc-port", "0"] if irc else [])],
            stdout=subprocess.PIPE, text=True, preexec_fn=room_for(clients))
        assert proc.stdout is not None
        port = int(proc.stdout.readline().rsplit(":", 1)[1])
        if irc:
            port = int(proc.stdout.readline().rsplit(":", 1)[1])
        return proc, port, irc
    if kind.startswith("floor"):
        from floor import start_floor
        proc, port = start_floor(tmp, kind == "floor-fsync", pin, room_for(clients),
                                 keep_rows=kind == "floor-rows")
        return proc, port, False
    port = free_port()
    if kind == "ngircd":
        conf = tmp / "ngircd.conf"
        conf.write_text(NGIRCD_CONF.format(port=port, dir=tmp))
        proc = subprocess.Popen([*pin, "ngircd", "--nodaemon", "--config", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=room_for(clients))
        wait_port(port, proc)
        return proc, port, True
    proc = subprocess.Popen([*pin, sys.executable, str(ROOT / "bench" / "threaded_relay.py"),
                             str(port)], stdout=subprocess.PIPE, text=True,
                            preexec_fn=room_for(clients))
    assert proc.stdout is not None
    proc.stdout.readline()  # "listening on ..."
    return proc, port, False


def measure(kind: str, tmp: Path, clients: int, senders: int,
            seconds: float) -> tuple[float, float]:
    """(deliveries/s, server CPU seconds per million deliveries) of one run."""
    proc, port, irc = start(kind, tmp, clients)
    load = Load(port, irc=irc, echo=not irc)
    try:
        load.connect(clients, timeout=180)  # ngIRCd registers clients slowly
        load.settle()
        before = cpu_seconds(proc.pid)
        result = load.fan_out(senders, seconds)
        used = cpu_seconds(proc.pid) - before
        delivered = result["deliveries_per_s"] * seconds
        return result["deliveries_per_s"], used / (delivered / 1e6)
    finally:
        for conn in load.conns:  # RST: no TIME_WAIT left behind
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        load.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def can_pin() -> bool:
    count = os.cpu_count()
    return count is not None and count >= 2 and shutil.which("taskset") is not None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--shapes", default=",".join(f"{c}:{s}" for c, s in SHAPES),
                        help="clients:senders, comma-separated (default: %(default)s)")
    args = parser.parse_args()
    shapes = [tuple(int(n) for n in shape.split(":")) for shape in args.shapes.split(",")]
    if not can_pin():
        print("needs two CPUs and taskset", file=sys.stderr)
        return 2
    kinds = ["lanchat", "lanchat-irc", "threaded", "floor-fsync", "floor-rows"]
    if shutil.which("ngircd"):
        kinds.insert(2, "ngircd")
    else:
        print("ngircd is not installed (apt install ngircd): its column is left out",
              file=sys.stderr)
    os.sched_setaffinity(0, {LOAD_CPU})
    results: dict[tuple[tuple[int, int], str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as name:
        for _ in range(args.runs):
            for shape in shapes:
                for kind in kinds:
                    results.setdefault((shape, kind), []).append(
                        measure(kind, Path(name), *shape, args.seconds))
    print(f"medians of {args.runs} run(s) of {args.seconds:g} s; server on CPU "
          f"{SERVER_CPU}, load generator on CPU {LOAD_CPU}; M deliveries/s (min-max), "
          "then server CPU s per M deliveries")
    print("| fan-out | " + " | ".join(kinds) + " | lanchat CPU / floor-fsync's | lanchat CPU / "
          "floor-rows' |")
    print("| --- |" + " --- |" * (len(kinds) + 2))
    for shape in shapes:
        cells = []
        for kind in kinds:
            runs = results[(shape, kind)]
            rates = [r for r, _ in runs]
            cpu = statistics.median(c for _, c in runs)
            cells.append(f"{statistics.median(rates) / 1e6:.2f} ({min(rates) / 1e6:.2f}-"
                         f"{max(rates) / 1e6:.2f}); {cpu:.2f} s")
        floor = statistics.median(c for _, c in results[(shape, "floor-fsync")])
        rows = statistics.median(c for _, c in results[(shape, "floor-rows")])
        mine = statistics.median(c for _, c in results[(shape, "lanchat")])
        print(f"| {shape[0]}:{shape[1]} | " + " | ".join(cells) +
              f" | {mine / floor:.1f}x | {mine / rows:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
