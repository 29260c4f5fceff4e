#!/usr/bin/env python3
"""Fan-out over a cluster: the same clients on one node, or spread over two nodes.

    python bench/cluster.py [--runs 3] [--seconds 3] [--clients 1000] [--senders 20]

Every client is in one room; the senders keep 64 messages each in flight; the figure
is messages delivered per second to all clients (every one is checked to arrive).
Shapes, each started fresh (a new redis-server in a temp dir, new nodes, new
databases), interleaved run by run, medians and min-max printed:

* one node: a plain server (no Redis): the baseline;
* one node through Redis: the same with --redis (what the cluster path costs);
* two nodes: half of the clients (and half of the senders) on each.

All on 127.0.0.1. On a two-core machine the nodes, Redis and the load generator
share the cores: the figures say what that costs, not what separate machines give.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests"), str(ROOT)]

from loadgen import Load  # noqa: E402
from redisproc import RedisServer  # noqa: E402

# bench/run (a script without .py) holds the server starter the other benches use
_loader = importlib.machinery.SourceFileLoader("bench_run", str(ROOT / "bench" / "run"))
_run = importlib.util.module_from_spec(importlib.util.spec_from_loader("bench_run", _loader))
_loader.exec_module(_run)
Server, quick_close = _run.Server, _run.quick_close


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def shape(nodes: int, redis: bool, clients: int, senders: int,
          seconds: float) -> tuple[float, float, float]:
    """Deliveries/s; then CPU seconds per million deliveries: the busiest node's, and
    Redis's."""
    with tempfile.TemporaryDirectory() as tmp:
        store = RedisServer(Path(tmp)) if redis else None
        extra = ("--redis", store.url) if store is not None else ()
        servers = [Server("ours", Path(tmp), *extra) for _ in range(nodes)]
        load = Load(servers[0].port)
        try:
            per_node = clients // nodes
            for n, server in enumerate(servers):
                load.connect(per_node, port=server.port, prefix=f"n{n}u")
            # senders alternate between the nodes: conns[:senders] picks them
            by_node = [load.conns[n * per_node:(n + 1) * per_node] for n in range(nodes)]
            load.conns = [c for group in zip(*by_node, strict=True) for c in group]
            load.settle()
            pids = [server.proc.pid for server in servers]
            before = [cpu_seconds(pid) for pid in pids]
            redis_before = cpu_seconds(store.proc.pid) if store is not None else 0.0
            result = load.fan_out(senders, seconds)
            delivered = sum(c.lines for c in load.conns) / 1e6  # every message, checked
            busiest = max(cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True))
            redis_cpu = cpu_seconds(store.proc.pid) - redis_before if store is not None else 0
            return result["deliveries_per_s"], busiest / delivered, redis_cpu / delivered
        finally:
            quick_close(load)
            for server in servers:
                server.stop()
            if store is not None:
                store.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=20)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    shapes = [("one node", 1, False), ("one node through Redis", 1, True),
              ("two nodes through Redis", 2, True)]
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _, _ in shapes}
    for _ in range(args.runs):
        for name, nodes, redis in shapes:
            results[name].append(shape(nodes, redis, args.clients, args.senders,
                                       args.seconds))
    base = statistics.median(r[0] for r in results["one node"])
    print(f"fan-out {args.clients}:{args.senders}, {args.runs} runs of {args.seconds:g} s "
          "(deliveries/s: median, min-max, against one node; CPU seconds per million "
          "deliveries: the busiest node, Redis)")
    print(f"{'shape':<26} {'median':>10} {'min-max':>17} {'vs one node':>12} "
          f"{'node CPU':>9} {'Redis CPU':>10}")
    for name, runs in results.items():
        rates = [r[0] for r in runs]
        median = statistics.median(rates)
        print(f"{name:<26} {median / 1e6:>8.2f} M {min(rates) / 1e6:>7.2f}-"
              f"{max(rates) / 1e6:.2f} M {median / base:>11.2f}x "
              f"{statistics.median(r[1] for r in runs):>8.2f}s "
              f"{statistics.median(r[2] for r in runs):>9.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
