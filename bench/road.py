#!/usr/bin/env python3
"""Instructions per delivery on the hub's road, this checkout against another
revision's, counted by valgrind's callgrind: a number no other load on the machine
changes, for every fan-out shape.

    python bench/road.py --base REV [--shapes 10:10,100:20,500:20,1000:20]

In one process per revision and shape, MEMBERS connections (no sockets: the hub's
own peers) say `hello` into one room; then each round SENDERS of them `send` one
message each and the hub commits the pass (store, then deliver to every member's
output), which is then dropped. Everything before the rounds (imports, hellos) is
the same in a run of ``ROUNDS`` and one of ``2 * ROUNDS`` rounds, so the difference
of their counts is the rounds' own work: parse, post, sequence, store, emit, fan out.
Sockets, door decoding and sending are not on this road (bench/ab.py measures them
whole).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench")]

from revision import callgrind_total, checked_out  # noqa: E402

SHAPES = [(10, 10), (100, 20), (500, 20), (1000, 20)]
TEXT = "the quick brown fox jumps over the lazy dog, again and again"
ROUNDS = 20


def child(root: str, db: str, members: int, senders: int, rounds: int) -> None:
    """The road itself, in the revision at ``root`` (run under callgrind)."""
    sys.path.insert(0, root)
    from chat.config import ServerConfig
    from chat.dispatch import receive
    from chat.hub import Hub
    from chat.store import Store

    config = ServerConfig(host="127.0.0.1", port=0, db=db, rate=0, max_clients=20000,
                          max_per_address=0)
    hub = Hub(config, Store(config.db_path), time.monotonic)
    peers = [hub.open(("127.0.0.1", 1024 + i)) for i in range(members)]
    for i, peer in enumerate(peers):
        receive(hub, peer, {"type": "hello", "proto": 1, "nick": f"u{i}",
                            "rooms": ["general"]})
    hub.commit()
    for peer in peers:
        del peer.out[:]
    for _ in range(rounds):
        for peer in peers[:senders]:
            receive(hub, peer, {"type": "send", "room": "general", "text": TEXT, "ref": "r"})
        hub.commit()
        for peer in peers:
            del peer.out[:]
        hub.dirty.clear()
    fill = getattr(hub.store, "fill", None)  # what was logged, into SQLite (chat.store):
    if fill is not None:                     # counted, as the server pays it too
        fill()
        hub.commit()


def count(root: Path, members: int, senders: int, rounds: int, tmp: Path) -> int:
    out = tmp / f"cg{time.monotonic_ns()}"
    subprocess.run(["valgrind", "-q", "--tool=callgrind", f"--callgrind-out-file={out}",
                    "--dump-instr=no", "--dump-line=no", sys.executable, __file__,
                    "--child", str(root), str(tmp / f"r{time.monotonic_ns()}.db"),
                    str(members), str(senders), str(rounds)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return callgrind_total(out)


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        root, db, members, senders, rounds = sys.argv[2:7]
        child(root, db, int(members), int(senders), int(rounds))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="revision to compare against")
    parser.add_argument("--shapes", default=",".join(f"{c}:{s}" for c, s in SHAPES))
    args = parser.parse_args()
    shapes = [tuple(int(n) for n in shape.split(":")) for shape in args.shapes.split(",")]
    rows = []
    with checked_out(args.base) as (tmp, tree):
        for members, senders in shapes:
            per: dict[str, float] = {}
            for label, root in (("base", tree), ("new", ROOT)):
                short = count(root, members, senders, ROUNDS, tmp)
                long = count(root, members, senders, 2 * ROUNDS, tmp)
                per[label] = (long - short) / (ROUNDS * senders * members)
            rows.append((f"{members}:{senders}", per["base"], per["new"]))
    print("\ninstructions per delivery on the hub's road (callgrind; base/new above 1: "
          "new is cheaper)\n")
    print(f"| fan-out | base {args.base} | new | base/new |")
    print("| --- | --- | --- | --- |")
    for shape, base, new in rows:
        print(f"| {shape} | {base:,.0f} | {new:,.0f} | {base / new:.2f} |")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
