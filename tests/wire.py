"""A blocking test client that speaks raw frames, with deadlines on every wait.

Tests may block (the server may not). ``barrier()`` sends a `ping` and returns every
frame that came before its `pong`: the server answers in order, so whatever it had
queued for this client before handling the ping has arrived by then.
"""

from __future__ import annotations

import itertools
import json
import selectors
import socket
import ssl
import time
from collections import deque
from typing import Any

DEFAULT_TIMEOUT = 30.0  # a deadline for a busy machine; waits end as soon as the condition holds
_tokens = itertools.count(1)


class Wire:
    def __init__(self, port: int, host: str = "127.0.0.1", *, tls: bool = False,
                 cafile: str | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=DEFAULT_TIMEOUT)
        if tls or cafile:  # TLS; the certificate is checked only against a cafile
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            if cafile:
                ctx.load_verify_locations(cafile)
            else:
                ctx.verify_mode = ssl.CERT_NONE
            self.sock = ctx.wrap_socket(self.sock)
        self.buf = b""
        self.frames: deque[dict[str, Any]] = deque()
        self.eof = False

    # sending
    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, **frame: Any) -> None:
        self.send_raw(json.dumps(frame).encode() + b"\n")

    # receiving
    def _fill(self, deadline: float) -> bool:
        """Read once; False at EOF or when the deadline passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.eof:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError:
            return False
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return False
        self._take(data)
        return True

    def _take(self, data: bytes) -> None:
        """Frames out of bytes received (JSON lines here)."""
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        self.frames.extend(json.loads(line) for line in lines if line)

    def next(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not self.frames:
            if not self._fill(deadline):
                raise AssertionError(f"no frame within {timeout}s (eof={self.eof})")
        return self.frames.popleft()

    def until(self, kind: str, timeout: float = DEFAULT_TIMEOUT,
              **fields: Any) -> dict[str, Any]:
        """Skip frames until one of ``kind`` whose fields match."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.next(max(0.0, deadline - time.monotonic()))
            if frame["type"] == kind and all(frame.get(k) == v for k, v in fields.items()):
                return frame

    def barrier(self, timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
        token = f"b{next(_tokens)}"
        self.send(type="ping", token=token)
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            frame = self.next(max(0.0, deadline - time.monotonic()))
            if frame == {"type": "pong", "token": token}:
                return seen
            seen.append(frame)

    def closed(self, timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
        """Wait for EOF; return the frames that came before it."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if not self._fill(deadline) and not self.eof:
                raise AssertionError(f"connection still open after {timeout}s")
        frames = list(self.frames)
        self.frames.clear()
        return frames

    def error(self, code: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        frame = self.next(timeout)
        assert frame["type"] == "error" and frame["code"] == code, frame
        assert isinstance(frame["message"], str) and frame["message"]
        return frame

    # sessions
    def hello(self, nick: str, **fields: Any) -> list[dict[str, Any]]:
        """Register and read through the last room's `history_end`."""
        self.send(type="hello", nick=nick, proto=1, **fields)
        frames = [self.next()]
        assert frames[0]["type"] == "welcome", frames[0]
        rooms = fields.get("rooms", ["general"])
        for _ in rooms:
            while True:
                frames.append(self.next())
                if frames[-1]["type"] == "history_end":
                    break
        return frames

    def close(self) -> None:
        self.sock.close()


def connect(port: int, nick: str | None = None, *, tls: bool = False,
            **fields: Any) -> Wire:
    wire = Wire(port, tls=tls)
    if nick is not None:
        wire.hello(nick, **fields)
    return wire


def crowd(port: int, *nicks: str, **fields: Any) -> list[Wire]:
    """Register several users, then drain what each saw of the others joining."""
    wires = [connect(port, nick, **fields) for nick in nicks]
    for wire in wires:
        wire.barrier()
    return wires


HELLO = b'{"type":"hello","nick":"%s","proto":1}\n'


class Crowd:
    """Many raw non-blocking clients driven by one selector, collecting message ids."""

    def __init__(self, port: int | dict[str, int], nicks: list[str]) -> None:
        """``port``: of the one server, or each nick's (servers of a cluster)."""
        self.sel = selectors.DefaultSelector()
        self.socks: dict[str, socket.socket] = {}
        self.buf: dict[str, bytes] = {}
        self.ids: dict[str, list[int]] = {}
        self.ready: set[str] = set()
        for nick in nicks:
            where = port if isinstance(port, int) else port[nick]
            sock = socket.create_connection(("127.0.0.1", where), timeout=5)
            sock.sendall(HELLO % nick.encode())
            sock.setblocking(False)
            self.sel.register(sock, selectors.EVENT_READ, nick)
            self.socks[nick], self.buf[nick], self.ids[nick] = sock, b"", []

    def pump(self, until, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, "crowd timed out"
            for key, _ in self.sel.select(0.2):
                nick = key.data
                data = self.socks[nick].recv(1 << 20)
                *lines, self.buf[nick] = (self.buf[nick] + data).split(b"\n")
                for line in lines:
                    if b'"history_end"' in line:
                        self.ready.add(nick)
                    elif b'"type":"message"' in line:
                        self.ids[nick].append(json.loads(line)["id"])

    def one_order(self, senders: list[str], per_sender: int) -> None:
        """Once all are in, ``senders`` all write ``per_sender`` messages at once;
        every client must get every message, in one order, once."""
        self.pump(lambda: len(self.ready) == len(self.socks), timeout=30)
        for s in senders:
            frames = b"".join(b'{"type":"send","room":"general","text":"%s %d"}\n'
                              % (s.encode(), i) for i in range(per_sender))
            self.socks[s].setblocking(True)
            self.socks[s].sendall(frames)
            self.socks[s].setblocking(False)
        total = len(senders) * per_sender
        self.pump(lambda: all(len(v) >= total for v in self.ids.values()), timeout=60)
        first = next(iter(self.ids.values()))
        assert len(first) == total == len(set(first))
        assert first == sorted(first)
        assert all(ids == first for ids in self.ids.values())

    def close(self) -> None:
        for sock in self.socks.values():
            sock.close()
        self.sel.close()
