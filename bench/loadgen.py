"""A load generator for the chat protocol: one process, one selector, 127.0.0.1 only.

It must not be the bottleneck, so it parses almost nothing: deliveries are counted
as newlines per ``recv`` chunk (WebSocket clients: as frame starts, ``{"type"``), a
sender's acknowledgements as occurrences of ``"ref"`` (only the sender's own copy
carries one), and latency is read only from
the send time embedded in a message's text. Every loop is bounded by a deadline.
"""

from __future__ import annotations

import base64
import os
import re
import selectors
import socket
import ssl
import time
from dataclasses import dataclass, field

HOST = "127.0.0.1"
RECV_SIZE = 1 << 18
TEXT = "x" * 40  # with the frame's fields, a message is ~110 bytes on the wire
_STAMP = re.compile(rb'"text": ?"t(\d+) ')
WS_MARK = b'{"type"'  # how every frame the server sends starts (one per WebSocket message)
IRC_MARK = b" PRIVMSG "  # a message delivered to an IRC client
ACK_EVERY = 8  # without echo-message: a PING after this many messages, its PONG the ack


def ws_frames(lines: bytes) -> bytes:
    """JSON lines as masked client text frames (RFC 6455: a client must mask; the
    all-zero key leaves the payload as it is, which keeps this cheap)."""
    out = []
    for line in lines.split(b"\n")[:-1]:
        size = len(line)
        head = bytes((0x81, 0x80 | size)) if size < 126 else \
            bytes((0x81, 0x80 | 126)) + size.to_bytes(2, "big")
        out.append(head + b"\0\0\0\0" + line)
    return b"".join(out)


def ws_handshake(sock: socket.socket, host: str, port: int) -> bytes:
    """The upgrade of ``/ws``, blocking (client side); returns bytes after the head."""
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise BenchError("the server closed during the WebSocket handshake")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise BenchError(f"WebSocket refused: {head[:40]!r}")
    return rest


class BenchError(Exception):
    """A scenario did not finish within its deadline or lost messages."""


@dataclass(eq=False)
class Conn:
    sock: socket.socket
    nick: str
    lines: int = 0  # newlines received
    acks: int = 0  # echoes of our own sends
    replayed: int = 0  # history frames received while registering
    sent: int = 0
    ready: bool = False
    tail: bytes = b""
    ack: bytes = b'"ref"'  # what marks the sender's own copy of its message
    out: bytearray = field(default_factory=bytearray)
    latencies: list = field(default_factory=list)

    def write(self, data: bytes = b"") -> None:
        """Queue and send what the socket takes; a partial send keeps the rest."""
        self.out += data
        if self.out:
            try:
                del self.out[:self.sock.send(self.out)]
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError,
                    ssl.SSLWantReadError):
                pass


class Load:
    """N clients of one server; some of them send."""

    def __init__(self, port: int, host: str = HOST, *, tls: bool = False,
                 websocket: bool = False, irc: bool = False, echo: bool = True) -> None:
        self.addr = (host, port)
        self.websocket = websocket  # every client over /ws instead of JSON lines
        self.irc = irc  # every client speaks IRC (the server's --irc-port)
        # IRC without echo-message (servers that lack it): a sender does not get its
        # own message; a PING after every ACK_EVERY messages stands for the acks
        self.echo = echo or not irc
        self.mark = WS_MARK if websocket else IRC_MARK if irc else b"\n"
        self.tls: ssl.SSLContext | None = None
        if tls:  # the bench measures the server: no certificate check
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            self.tls.check_hostname = False
            self.tls.verify_mode = ssl.CERT_NONE
        self.sel = selectors.DefaultSelector()
        self.conns: list[Conn] = []
        self.track_latency = False

    # ---------------------------------------------------------- connecting

    def connect(self, count: int, *, rooms: list[str] | None = None, since: int | None = None,
                prefix: str = "u", timeout: float = 60.0, in_flight: int = 500,
                port: int | None = None) -> float:
        """Connect ``count`` clients, each sending `hello`; return the seconds it took
        until all are registered (and past `history_end` of every room). ``port``:
        another server than the load's own (nodes of a cluster)."""
        addr = self.addr if port is None else (self.addr[0], port)
        rooms = ["general"] if rooms is None else rooms
        extra = b',"since":%d' % since if since is not None else b""
        room_list = ",".join(f'"{r}"' for r in rooms).encode()
        start = time.monotonic()
        deadline = start + timeout
        pending: list[Conn] = []
        made = 0
        ends_needed = len(rooms)
        while made < count or pending:
            while made < count and len(pending) < in_flight:
                sock = socket.create_connection(addr, timeout=timeout)
                if self.tls is not None:
                    sock = self.tls.wrap_socket(sock)  # a blocking handshake: client side
                early = ws_handshake(sock, *addr) if self.websocket else b""
                sock.setblocking(False)
                nick = f"{prefix}{len(self.conns)}"
                hello = b'{"type":"hello","nick":"%s","proto":1,"rooms":[%s]%s}\n' % (
                    nick.encode(), room_list, extra)
                if self.irc:  # echo-message: a sender sees its own message (its ack)
                    joins = "".join(f"JOIN #{r}\r\n" for r in rooms)
                    lines = f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n"
                    if self.echo:
                        lines = f"CAP REQ :echo-message\r\n{lines}CAP END\r\n"
                    sock.send(f"{lines}{joins}".encode())
                else:
                    sock.send(self.frame(hello))
                ack = b'"ref"' if not self.irc else b":%s!" % nick.encode() if self.echo \
                    else b" PONG "
                conn = Conn(sock, nick, tail=early, ack=ack)
                self.conns.append(conn)
                self.sel.register(sock, selectors.EVENT_READ, conn)
                pending.append(conn)
                made += 1
            self._pump(0.05, deadline)
            pending = [c for c in pending if not self._registered(c, ends_needed)]
        return time.monotonic() - start

    def frame(self, lines: bytes) -> bytes:
        """Client frames (JSON lines) as this load's clients send them."""
        return ws_frames(lines) if self.websocket else lines

    def _registered(self, conn: Conn, ends_needed: int) -> bool:
        if not conn.ready and self.irc:
            if conn.tail.count(b" 366 ") >= ends_needed:  # end of NAMES: joined
                conn.ready, conn.tail = True, b""
        elif not conn.ready:
            text = conn.tail
            if b'"welcome"' in text and text.count(b'"history_end"') >= ends_needed:
                conn.ready = True
                conn.replayed = text.count(b'"history":true')
                conn.tail = b""
        return conn.ready

    # ---------------------------------------------------------- the pump

    def _pump(self, wait: float, deadline: float) -> int:
        """Read what arrived (waiting at most ``wait``); return lines read."""
        if time.monotonic() > deadline:
            raise BenchError("deadline passed")
        got = 0
        track = self.track_latency
        for key, _ in self.sel.select(wait):
            conn = key.data
            try:
                data = conn.sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                    ssl.SSLWantWriteError):
                continue
            if not data:
                raise BenchError(f"{conn.nick} was disconnected by the server")
            now = time.monotonic_ns()
            if not conn.ready:
                n = data.count(self.mark)
                conn.lines += n
                got += n
                conn.tail += data  # registration frames: kept until parsed once
                continue
            both = conn.tail + data
            if self.mark == b"\n":
                n = data.count(b"\n")
            else:  # the mark may straddle two reads: count it across the seam
                n = both.count(self.mark) - conn.tail.count(self.mark)
            conn.lines += n
            got += n
            conn.acks += both.count(conn.ack) - conn.tail.count(conn.ack)
            conn.tail = data[-8:]
            if track:
                conn.latencies.extend(now - int(t) for t in _STAMP.findall(data))
        return got

    def settle(self, quiet: float = 0.3, timeout: float = 60.0) -> None:
        """Read until nothing arrives for ``quiet`` seconds (joins of late comers)."""
        deadline = time.monotonic() + timeout
        while self._pump(quiet, deadline):
            pass

    def reset_counts(self) -> None:
        for conn in self.conns:
            conn.lines = conn.acks = conn.sent = 0
            conn.latencies = []

    # ---------------------------------------------------------- scenarios

    def fan_out(self, senders: int, seconds: float, window: int = 64) -> dict:
        """Senders keep ``window`` messages in flight; count deliveries for
        ``seconds``; then stop and check every member got every message."""
        talkers = self.conns[:senders]
        frame = self.frame(b'{"type":"send","room":"general","text":"%s","ref":"r"}\n'
                           % TEXT.encode())
        if self.irc:
            frame = b"PRIVMSG #general :%s\r\n" % TEXT.encode()
        step = 1  # messages per write, and per ack
        if not self.echo:
            step = ACK_EVERY
            frame = frame * ACK_EVERY + b"PING :a\r\n"
        self.reset_counts()
        start = time.monotonic()
        end = start + seconds
        deadline = end + 60
        while time.monotonic() < end:
            for conn in talkers:
                room = (window - (conn.sent - conn.acks * step)) // step
                if room > 0:
                    conn.write(frame * room)
                    conn.sent += room * step
                elif conn.out:
                    conn.write()
            self._pump(0.002, deadline)
        measured = sum(c.lines for c in self.conns)
        elapsed = time.monotonic() - start
        total = sum(c.sent for c in talkers)
        want = total * (len(self.conns) if self.echo else len(self.conns) - 1)
        while sum(c.lines for c in self.conns) < want:
            for conn in talkers:
                conn.write()
            self._pump(0.05, deadline)
        got = sum(c.lines for c in self.conns)
        if got != want:
            raise BenchError(f"delivered {got}, expected {want}")
        return {"deliveries_per_s": measured / elapsed, "messages": total, "deliveries": got}

    def paced(self, rate: float, seconds: float, senders: int | None = None) -> dict:
        """``rate`` messages per second in total, spread over the senders;
        latency from the embedded send time to each receipt."""
        talkers = self.conns[:senders or len(self.conns)]
        self.reset_counts()
        self.track_latency = True
        start = time.monotonic()
        deadline = start + seconds + 60
        sent = 0
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate)
            while sent < due:
                conn = talkers[sent % len(talkers)]
                conn.write(b'{"type":"send","room":"general","text":"t%d %s"}\n'
                           % (time.monotonic_ns(), TEXT.encode()))
                conn.sent += 1
                sent += 1
            self._pump(0.0005, deadline)
        want = sent * len(self.conns)
        while sum(len(c.latencies) for c in self.conns) < want:
            for conn in talkers:
                conn.write()
            self._pump(0.05, deadline)
        self.track_latency = False
        lat = sorted(x for c in self.conns for x in c.latencies)
        q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] / 1e6  # noqa: E731
        return {"p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": lat[-1] / 1e6, "messages": sent}

    def burst(self, count: int, timeout: float = 60.0) -> None:
        """The first client sends ``count`` messages and waits for every echo."""
        conn = self.conns[0]
        conn.acks = 0
        conn.write(b'{"type":"send","room":"general","text":"%s","ref":"r"}\n'
                   % TEXT.encode() * count)
        deadline = time.monotonic() + timeout
        while conn.acks < count:
            conn.write()
            self._pump(0.01, deadline)

    def wait_lines(self, expected_each: int, timeout: float) -> float:
        """Seconds until every connection has read ``expected_each`` lines."""
        start = time.monotonic()
        deadline = start + timeout
        while any(c.lines < expected_each for c in self.conns):
            self._pump(0.01, deadline)
        return time.monotonic() - start

    def close(self) -> None:
        for conn in self.conns:
            conn.sock.close()
        self.sel.close()
        self.conns = []
