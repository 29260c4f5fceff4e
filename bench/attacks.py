#!/usr/bin/env python3
"""How long a probe waits while one hostile connection floods a door: each attack
beside a quiet run of the same probe, in one invocation.

    python bench/attacks.py [--seconds 5] [--runs 3] [--only SASL]

A probe (a registered client in no room) pings every 20 ms; meanwhile one attack runs
from the bench's own threads: a WebSocket sending one-byte fragments, blank messages or
pings before `hello`; an IRC connection sending lines the door answers itself (MODE,
CAP, unknown and empty lines); four connections repeating a search that matches
everything; SASL guesses from four addresses. The table gives the probe's p50 and
slowest round trip, medians of --runs, and the slowest as a multiple of the quiet run.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from flood import Probe, fill_history  # noqa: E402
from wsproto import ConnectionType  # noqa: E402
from wsproto.connection import Connection  # noqa: E402
from wsproto.events import Message, Ping  # noqa: E402

Attack = Callable[[int, int, threading.Event], None]  # (port, irc port, stop)


def server(tmp: Path, *extra: str) -> tuple[subprocess.Popen, int, int]:
    db = tmp / f"a{time.monotonic_ns()}.db"
    if "--search-history" in extra:
        fill_history(db, "general", 100_000, "the same words in every message of this room")
        extra = tuple(a for a in extra if a != "--search-history")
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--server", "--headless",
                             "--host", "127.0.0.1", "--port", "0", "--irc-port", "0",
                             "--db", str(db), "--quiet", "--no-announce", *extra],
                            stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline().rsplit(":", 1)[1])
    irc = int(proc.stdout.readline().rsplit(":", 1)[1])
    return proc, port, irc


def blast(port: int, stop: threading.Event, first: bytes, chunk: bytes,
          source: str = "127.0.0.1") -> None:
    """One connection: ``first``, then ``chunk`` again and again; reconnect if closed."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5,
                                          source_address=(source, 0)) as sock:
                sock.sendall(first)
                sock.settimeout(0.2)
                while not stop.is_set():
                    try:
                        sock.sendall(chunk)
                    except TimeoutError:
                        continue  # the server reads us at its pace: TCP pushes back
                    try:
                        while sock.recv(65536):
                            pass
                    except (TimeoutError, BlockingIOError):
                        pass
        except OSError:
            stop.wait(0.01)


def websocket(make: Callable[[Connection], bytes]) -> Attack:
    def attack(port: int, irc: int, stop: threading.Event) -> None:
        client = Connection(ConnectionType.CLIENT)
        head = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) + b"\r\n\r\n")
        chunk = b"".join(make(client) for _ in range(2000))
        blast(port, stop, head, chunk)
    return attack


def irc_lines(port: int, irc: int, stop: threading.Event) -> None:
    blast(irc, stop, b"", b"MODE x\r\nCAP LS\r\nFROB\r\n\r\n" * 2000)


def searches(port: int, irc: int, stop: threading.Event) -> None:
    hello = b'{"type":"hello","nick":"seek%d","proto":1}\n'
    ask = b'{"type":"search","query":"same words"}\n' * 50
    threads = [threading.Thread(target=blast, args=(port, stop, hello % n, ask))
               for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def sasl(port: int, irc: int, stop: threading.Event) -> None:
    guess = base64.b64encode(b"owner\0owner\0wrong guess").decode()
    first = (f"CAP LS 302\r\nNICK g\r\nUSER g 0 * :g\r\nCAP REQ :sasl\r\n"
             f"AUTHENTICATE PLAIN\r\nAUTHENTICATE {guess}\r\n").encode()
    threads = [threading.Thread(target=blast, args=(irc, stop, first, b"\r\n", f"127.0.0.{n}"))
               for n in range(2, 6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


ATTACKS: dict[str, tuple[Attack | None, tuple[str, ...]]] = {
    "quiet (no attack)": (None, ()),
    "WebSocket 1-byte fragments": (websocket(
        lambda c: c.send(Message(data=" ", message_finished=False))), ()),
    "WebSocket blank messages": (websocket(lambda c: c.send(Message(data="  "))), ()),
    "WebSocket pings": (websocket(lambda c: c.send(Ping(b"x"))), ()),
    "IRC MODE/CAP/unknown/empty lines": (irc_lines, ()),
    "4 searches matching everything": (searches, ("--search-history",)),
    "SASL guesses from 4 addresses": (sasl, ()),
}


def owner(port: int) -> None:
    from wire import connect

    wire = connect(port, "owner", rooms=[])
    wire.send(type="register", password="correct horse")
    wire.until("registered")
    wire.close()


def one_run(tmp: Path, attack: Attack | None, extra: tuple[str, ...],
            seconds: float) -> tuple[float, float]:
    proc, port, irc = server(tmp, *extra)
    stop = threading.Event()
    try:
        owner(port)
        probe = Probe(port)
        runner = None
        if attack is not None:
            runner = threading.Thread(target=attack, args=(port, irc, stop), daemon=True)
            runner.start()
        stop.wait(seconds)  # the attack and the probe run meanwhile
        stop.set()
        if runner is not None:
            runner.join(30)
        probe.stop()
        return statistics.median(probe.rtts), max(probe.rtts)
    finally:
        stop.set()
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="", metavar="WORD",
                        help="only the attacks whose name has WORD (the quiet run always)")
    args = parser.parse_args()
    figures: dict[str, list[tuple[float, float]]] = {
        name: [] for name, (attack, _) in ATTACKS.items()
        if attack is None or args.only.lower() in name.lower()}
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as name:
        for _ in range(args.runs):  # interleaved: every row sees the machine as it is
            for label in figures:
                attack, extra = ATTACKS[label]
                try:
                    figures[label].append(one_run(Path(name), attack, extra, args.seconds))
                except Exception as exc:  # reported, not fatal
                    failures.append(f"{label}: {type(exc).__name__} {exc}"[:120])
    quiet = statistics.median(m for _, m in figures["quiet (no attack)"] or [(0, 1)])
    print(f"\nmedians of {args.runs} run(s) of {args.seconds:g} s, {os.cpu_count()} cores; "
          "probe pings every 20 ms\n")
    print("| attack | probe p50 | probe max | max vs quiet |")
    print("| --- | --- | --- | --- |")
    for label, runs in figures.items():
        if not runs:
            print(f"| {label} | refused | | |")
            continue
        p50 = statistics.median(p for p, _ in runs)
        top = statistics.median(m for _, m in runs)
        print(f"| {label} | {p50 * 1000:.1f} ms | {top * 1000:.1f} ms | {top / quiet:.1f}x |")
    for failure in failures:
        print(f"\nnot measured: {failure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
