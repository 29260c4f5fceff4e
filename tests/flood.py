"""Helpers for flood tests: a probe that pings the server from its own thread, many
raw clients on one selector, a database filled before the server starts.

Threads are fine in tests (only the server may not use them): the probe measures
how long the server takes to answer one client while the test floods it.
"""

from __future__ import annotations

import os
import selectors
import socket
import struct
import threading
import time
from pathlib import Path

from wire import Wire, connect

from chat.store import Store

# A file: each test appends its figures (bench/floods.py reads them). Tests assert what
# happened (answered, in order, while the flood went on), never how fast: a loaded
# machine is slower, not wrong; the figures are the benchmark's.
REPORT = os.environ.get("LANCHAT_FLOOD_REPORT")


class Probe:
    """A registered client in no room that pings every 20 ms and keeps each round
    trip and when it ended; ``stop`` checks every ping was answered, in order, and
    returns the slowest round trip (a figure for the report)."""

    def __init__(self, port: int) -> None:
        self.wire = connect(port, "probe", rooms=[])
        self.rtts: list[float] = []
        self.answered: list[float] = []  # when each pong came (time.monotonic())
        self.failure: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        count = 0
        while not self._stop.is_set():
            count += 1
            token = f"probe{count}"
            started = time.monotonic()
            try:
                self.wire.send(type="ping", token=token)
                pong = self.wire.next(timeout=60)
                if pong != {"type": "pong", "token": token}:  # nothing else is sent to it
                    raise AssertionError(f"{pong} instead of the pong of {token}")
            except Exception as exc:  # reported by stop()
                self.failure = repr(exc)
                return
            self.answered.append(time.monotonic())
            self.rtts.append(self.answered[-1] - started)
            self._stop.wait(0.02)  # pacing, not synchronisation

    def answered_between(self, start: float, end: float) -> int:
        """How many pings were answered between two moments (time.monotonic())."""
        return sum(start <= t <= end for t in self.answered)

    def stop(self) -> float:
        deadline = time.monotonic() + 30
        while len(self.rtts) < 3 and self.failure is None and time.monotonic() < deadline:
            self._thread.join(0.02)  # a few round trips at least, however short the test
        self._stop.set()
        self._thread.join(15)
        assert self.failure is None, self.failure
        assert len(self.rtts) >= 3, self.rtts
        self.wire.close()
        return max(self.rtts)


def welcome_time(port: int, nick: str, **fields) -> float:
    """Seconds from a new connection's `hello` to its `welcome`."""
    started = time.monotonic()
    wire = Wire(port)
    try:
        wire.send(type="hello", nick=nick, proto=1, **fields)
        wire.until("welcome", timeout=60)
        return time.monotonic() - started
    finally:
        wire.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def fill_history(db: Path, room: str, count: int, text: str) -> None:
    """``count`` messages in ``room``, written before the server starts."""
    store = Store(str(db))
    for i in range(count):
        store.add(1_700_000_000_000 + i, "filler", f"{i} {text}", room_key=room,
                  room_name=room)
        if i % 5000 == 4999:
            store.commit()
    store.close()


class Swarm:
    """Many raw clients on one selector: ``hello`` each, drain what they get, and
    note which were welcomed. Their bytes are not parsed beyond the first line."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sel = selectors.DefaultSelector()
        self.socks: list[socket.socket] = []
        self.first: dict[socket.socket, bytes] = {}
        self.welcomed: set[socket.socket] = set()
        self.refused: set[socket.socket] = set()
        self.closed: set[socket.socket] = set()

    def add(self, hello: bytes, source: str = "127.0.0.1") -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30,
                                        source_address=(source, 0))
        sock.sendall(hello)
        sock.setblocking(False)
        self.sel.register(sock, selectors.EVENT_READ)
        self.socks.append(sock)
        self.first[sock] = b""
        return sock

    def pump(self, seconds: float = 0.05) -> None:
        deadline = time.monotonic() + seconds
        while True:
            for key, _ in self.sel.select(max(0.0, deadline - time.monotonic())):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(1 << 20)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.sel.unregister(sock)
                    self.closed.add(sock)
                    continue
                if sock in self.first:
                    head = self.first[sock] + data
                    if b"\n" in head:
                        line = head.split(b"\n", 1)[0]
                        del self.first[sock]
                        if b'"welcome"' in line:
                            self.welcomed.add(sock)
                        else:
                            self.refused.add(sock)
                    else:
                        self.first[sock] = head
            if time.monotonic() >= deadline:
                return

    def pump_until(self, condition, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "swarm: condition not met in time"
            self.pump()

    def reset_all(self) -> None:
        """Every connection ends with a reset (no FIN, no `bye`)."""
        for sock in self.socks:
            if sock not in self.closed:
                self.sel.unregister(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        self.socks.clear()

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.sel.close()


def raise_fd_limit(wanted: int) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(wanted, soft)), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < wanted:
        import pytest

        pytest.skip(f"needs {wanted} open files (ulimit -n)")


def can_mount() -> bool:
    return os.geteuid() == 0


class Attackers:
    """Connections from several loopback addresses that keep sending ``line`` (a
    guess, say) from their own thread: a new connection for each one closed, the
    same line again after each answer that keeps the connection. ``setup`` goes
    first on each connection, with ``{n}`` replaced by a counter."""

    def __init__(self, port: int, line: bytes, addresses: list[str], per_address: int,
                 setup: bytes = b"") -> None:
        self.port, self.line, self.setup = port, line, setup
        self.sel = selectors.DefaultSelector()
        self.sent = 0
        self.failure: str | None = None
        self._stop = threading.Event()
        self._slots = [a for a in addresses for _ in range(per_address)]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _open(self, address: str) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10,
                                        source_address=(address, 0))
        self.opened = getattr(self, "opened", 0) + 1
        sock.sendall(self.setup.replace(b"{n}", b"%d" % self.opened) + self.line)
        sock.setblocking(False)
        self.sent += 1
        self.sel.register(sock, selectors.EVENT_READ, address)

    def _run(self) -> None:
        try:
            for address in self._slots:
                self._open(address)
            while not self._stop.is_set():
                for key, _ in self.sel.select(0.05):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        data = sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if data:
                        try:
                            sock.sendall(self.line)  # answered and still open: again
                            self.sent += 1
                        except OSError:
                            data = b""
                    if not data:
                        self.sel.unregister(sock)
                        sock.close()
                        self._open(key.data)
        except Exception as exc:  # reported by stop()
            self.failure = repr(exc)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(15)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.sel.close()
        assert self.failure is None, self.failure
        return self.sent


def report(test: str, **figures: float) -> None:
    """Append this test's figures (seconds, counts) to $LANCHAT_FLOOD_REPORT, if set:
    what the closing note of a change quotes; nothing when unset."""
    if REPORT:
        with open(REPORT, "a") as out:
            out.write(test + " " + " ".join(f"{k}={v:.4f}" for k, v in figures.items())
                      + "\n")
