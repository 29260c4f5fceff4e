#!/usr/bin/env python3
"""The floor: the least CPython can spend on a chat message, beside lanchat.

    python bench/floor.py [--runs 3] [--seconds 3] [--shapes 10:10,100:20,500:20,1000:20]
    python bench/floor.py --serve [--fsync DIR] [--rows]   (one floor server; its port)

A floor server is one `selectors` loop over non-blocking sockets doing a chat
server's unavoidable work and nothing more: read what arrived, split it into lines,
make each line a `message` frame (the sender's nickname spliced in; the sender's own
copy keeps its `ref`), join the pass's frames once and append them to every member's
output buffer (a sender's own copy of the batch joined for it), and send once per
member per pass. No JSON is read, nothing is checked, there are no rooms, limits or
timers. With ``--fsync DIR`` it also appends the pass's lines to a file in DIR and
fdatasyncs it once per pass before sending: the least that storing before delivering
can cost. With ``--rows`` as well, every message also becomes a row of lanchat's own
`messages` table (chat.store's schema, WAL, synchronous=FULL), inserted in one
transaction a second or every LOG_ROWS rows, as lanchat fills SQLite from its log: the
least that keeping every message where history and search read it costs (its text
sliced out of the line, not parsed). It speaks just enough of the protocol for
bench/loadgen.py (`hello` -> `welcome` and `history_end`).

The measurement starts lanchat (headless, --rate 0, every message stored before it is
delivered), the floor, the floor with fsync and the floor with fsync and rows, each
fresh, interleaved run by run, the server on CPU 0 and the load generator on CPU 1
(bench/versus.py's ``measure``), and prints per fan-out shape the server CPU seconds
per million deliveries (medians) and lanchat's as a multiple of each floor.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench")]

RECV = 1 << 18
WELCOME = b'{"type":"welcome","proto":1}\n{"type":"history_end","room":"general"}\n'
REF = b',"ref"'
TEXT = b'"text":"'
ROW_SECONDS = 1.0  # chat.store: the hub fills SQLite from the log once a second...
ROW_BATCH = 20_000  # ...or when this many are logged (chat.store.LOG_ROWS)
INSERT = "INSERT INTO messages (ts, room, sender, text) VALUES (?, ?, ?, ?)"


def rows_db(directory: str) -> sqlite3.Connection:
    """lanchat's database, as chat.store opens it, for the floor's rows."""
    sys.path.insert(0, str(ROOT))
    from chat.store import SCHEMA
    db = sqlite3.connect(os.path.join(directory, f"floor{os.getpid()}.db"),
                         isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    return db


def serve(fsync_dir: str | None, keep_rows: bool = False) -> None:
    """Run one floor server on 127.0.0.1 (an ephemeral port, printed) until killed."""
    sel = selectors.DefaultSelector()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    listener.setblocking(False)
    sel.register(listener, selectors.EVENT_READ, None)
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    log = None
    if fsync_dir is not None:
        log = os.open(os.path.join(fsync_dir, f"floor{os.getpid()}.log"),
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    db = rows_db(fsync_dir) if keep_rows and fsync_dir is not None else None
    rows: list[tuple[int, str, str, str]] = []
    filled = time.monotonic()
    members: dict[socket.socket, list] = {}  # sock -> [nick head, out, tail, nick]
    while True:
        said: list[tuple[socket.socket, bytes, bytes]] = []  # (sender, own, other)
        for key, _ in sel.select(ROW_SECONDS if rows else None):
            sock = key.fileobj
            if sock is listener:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                members[conn] = [b"", bytearray(), b"", ""]
                sel.register(conn, selectors.EVENT_READ, None)
                continue
            state = members[sock]  # type: ignore[index]
            try:
                data = sock.recv(RECV)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                sock.close()  # type: ignore[union-attr]
                del members[sock]  # type: ignore[arg-type]
                continue
            lines = (state[2] + data).split(b"\n")
            state[2] = lines.pop()
            for line in lines:
                if not state[0]:  # the hello: its nickname, and the welcome
                    start = line.index(b'"nick":"') + 8
                    nick = line[start:line.index(b'"', start)]
                    state[0] = b'{"type":"message","from":"' + nick + b'",'
                    state[3] = nick.decode()
                    state[1] += WELCOME
                    continue
                own = state[0] + line[1:] + b"\n"  # the sender's copy, with its ref
                cut = line.find(REF)
                said.append((sock, own,  # type: ignore[arg-type]
                             own if cut < 0 else state[0] + line[1:cut] + b"}\n"))
                if db is not None:
                    start = line.find(TEXT) + 8
                    rows.append((time.time_ns() // 1_000_000, "general", state[3],
                                 line[start:line.find(b'"', start)].decode()))
        if said:
            # the pass's messages joined once; a sender's copy of the batch differs
            batch = b"".join(other for _, _, other in said)
            if log is not None:
                os.write(log, batch)
                os.fdatasync(log)
            senders = {sender for sender, _, _ in said}
            for member, state in members.items():
                if member in senders:
                    state[1] += b"".join(own if sender is member else other
                                         for sender, own, other in said)
                elif state[0]:
                    state[1] += batch
        if rows and (len(rows) >= ROW_BATCH or time.monotonic() - filled >= ROW_SECONDS):
            assert db is not None
            db.execute("BEGIN IMMEDIATE")
            db.executemany(INSERT, rows)
            db.execute("COMMIT")
            rows, filled = [], time.monotonic()
        for member, state in members.items():
            out = state[1]
            if out:
                try:
                    del out[:member.send(out)]
                except BlockingIOError:
                    pass
                except OSError:
                    out.clear()


def start_floor(tmp: Path, fsync: bool, pin: list[str], preexec,
                keep_rows: bool = False) -> tuple:
    import subprocess
    command = [*pin, sys.executable, str(Path(__file__).resolve()), "--serve"]
    if fsync or keep_rows:
        command += ["--fsync", str(tmp)]
    if keep_rows:
        command.append("--rows")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, preexec_fn=preexec)
    assert proc.stdout is not None
    port = int(proc.stdout.readline().rsplit(":", 1)[1])
    return proc, port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fsync", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--rows", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--shapes", default="10:10,100:20,500:20,1000:20",
                        help="clients:senders, comma-separated (default: %(default)s)")
    args = parser.parse_args()
    if args.serve:
        try:
            serve(args.fsync, args.rows)
        except KeyboardInterrupt:
            pass
        return 0
    import versus  # the same servers, pinning and measurement as the versus table
    shapes = [tuple(int(n) for n in shape.split(":")) for shape in args.shapes.split(",")]
    if not versus.can_pin():
        print("needs two CPUs and taskset", file=sys.stderr)
        return 2
    kinds = ["lanchat", "floor", "floor-fsync", "floor-rows"]
    os.sched_setaffinity(0, {versus.LOAD_CPU})
    results: dict[tuple, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as name:
        for _ in range(args.runs):
            for shape in shapes:
                for kind in kinds:
                    results.setdefault((shape, kind), []).append(
                        versus.measure(kind, Path(name), *shape, args.seconds))
    print(f"medians of {args.runs} run(s) of {args.seconds:g} s: server CPU s per M "
          "deliveries (M deliveries/s)")
    print("| fan-out | lanchat | floor | floor + fsync | floor + fsync + rows | "
          "lanchat / floor | lanchat / floor + fsync | lanchat / floor + fsync + rows |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for shape in shapes:
        cpu = {k: statistics.median(c for _, c in results[(shape, k)]) for k in kinds}
        rate = {k: statistics.median(r for r, _ in results[(shape, k)]) for k in kinds}
        cells = [f"{cpu[k]:.2f} ({rate[k] / 1e6:.2f})" for k in kinds]
        print(f"| {shape[0]}:{shape[1]} | " + " | ".join(cells) +
              f" | {cpu['lanchat'] / cpu['floor']:.1f}x | "
              f"{cpu['lanchat'] / cpu['floor-fsync']:.1f}x | "
              f"{cpu['lanchat'] / cpu['floor-rows']:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
