"""Finding servers on the LAN without typing an address: UDP beacons and probes.

A server announces itself every ``BEACON_SECONDS`` to the broadcast address of each
of its IPv4 interfaces, on ``DISCOVERY_PORT``, and answers a finder's probe at once
(to the probe's source). A beacon is one small JSON datagram: name, chat port, TLS
and its certificate fingerprint, users online. It is a hint only: TLS pinning stays
the check of who answers on that port.

``Announcer`` lives in the server's selectors loop (a non-blocking UDP socket, work
bounded per pass, answers rate limited so that a spoofed probe cannot turn the server
into a flood); ``Finder`` is polled by the chat window's ``after()`` loop and by
``main.py --discover``. Finders share ``DISCOVERY_PORT`` (``SO_REUSEADDR``), so every
window on a machine hears every beacon; answers to their probes come to a socket of
their own.
"""

from __future__ import annotations

import json
import re
import socket
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chat.platforms import broadcast_addresses

DISCOVERY_PORT = 7071  # the chat's default port + 1
BEACON_SECONDS = 2.0  # a finder that just started hears a server within this long
INTERFACES_SECONDS = 30.0  # interfaces (a laptop joining a network) are looked up again
MAX_DATAGRAM = 1024  # a beacon is ~250 bytes; anything longer is not ours
ANSWERS_PER_SECOND = 10.0  # probe answers, server-wide (a probe is cheap to spoof)
ANSWER_BURST = 20
DATAGRAMS_PER_PASS = 32  # read per pass of the loop, whatever arrives
MAGIC = "lanchat"  # every datagram carries {"lanchat": 1, ...}
VERSION = 1
SERVER_GONE_SECONDS = 3 * BEACON_SECONDS  # a finder forgets a server silent this long
NAME_CHARS = 64  # a server's name as shown, at most
MAX_SERVERS = 64  # servers a finder keeps at once (more are dropped: a flood of beacons)
SERVERS_PER_HOST = 4  # of them, announced from one address
TLS_NAMES = 256  # names of TLS servers remembered, so a plain twin cannot pass for one
# how the server writes its certificate's SHA-256: sixteen groups of four hex digits
FINGERPRINT = re.compile(r"[0-9A-F]{4}( [0-9A-F]{4}){15}")



def encode(kind: str, **fields: Any) -> bytes:
    return json.dumps({MAGIC: VERSION, "type": kind, **fields},
                      separators=(",", ":")).encode("utf-8")


def decode(data: bytes) -> dict[str, Any] | None:
    """A datagram of ours, or None (anything else on the port is ignored)."""
    if len(data) > MAX_DATAGRAM:
        return None
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(value, dict) or value.get(MAGIC) != VERSION:
        return None
    return value


@dataclass(frozen=True)
class Found:
    """A server a beacon told of."""

    host: str
    port: int
    name: str
    tls: bool
    fingerprint: str
    users: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def line(self) -> str:
        """``HOST:PORT`` first, then the rest: what ``--discover`` prints."""
        tls = f"TLS {self.fingerprint}" if self.tls else "no TLS"
        return f"{self.address}  {self.name}  ({self.users} online, {tls})"


def clean_name(name: str) -> str:
    """A beacon's name as it may be shown: no control or format characters (a newline
    would forge a line of ``--discover``, ESC a terminal sequence, U+202E a reversed
    text), spaces collapsed, at most NAME_CHARS characters."""
    kept = "".join(ch if unicodedata.category(ch)[0] not in "CZ" or ch == " " else " "
                   for ch in name[:4 * NAME_CHARS])
    return " ".join(kept.split())[:NAME_CHARS] or "(no name)"


def parse_beacon(message: dict[str, Any], host: str) -> Found | None:
    port, name = message.get("port"), message.get("name")
    users, fingerprint = message.get("users", 0), message.get("fingerprint") or ""
    if message.get("type") != "beacon" or not isinstance(port, int) or not 0 < port < 65536:
        return None
    if not isinstance(name, str) or not isinstance(users, int) or \
            not isinstance(fingerprint, str):
        return None
    tls = bool(message.get("tls"))
    if fingerprint and not FINGERPRINT.fullmatch(fingerprint):
        return None  # not the server's own way of writing it: not ours
    return Found(host, port, clean_name(name), tls, fingerprint if tls else "",
                 min(max(0, users), 10**6))


class Announcer:
    """The server's side: beacons on a timer, answers to probes (rate limited)."""

    def __init__(self, describe: Callable[[], dict[str, Any]],
                 clock: Callable[[], float] = time.monotonic,
                 port: int = DISCOVERY_PORT) -> None:
        self.describe = describe  # name, port, tls, fingerprint, users: read at each beacon
        self.clock = clock
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setblocking(False)
        self.sock.bind(("", port))  # probes come to the port every finder knows
        self._targets: list[str] = []
        self._targets_at = -INTERFACES_SECONDS
        self._next_beacon = 0.0
        self._tokens = float(ANSWER_BURST)
        self._stamp = clock()

    def fileno(self) -> int:
        return self.sock.fileno()

    def beacon(self) -> bytes:
        return encode("beacon", **self.describe())

    def tick(self) -> None:
        """Send the beacon when it is due (called every pass; cheap when not)."""
        now = self.clock()
        if now < self._next_beacon:
            return
        self._next_beacon = now + BEACON_SECONDS
        if now - self._targets_at >= INTERFACES_SECONDS:
            self._targets, self._targets_at = broadcast_addresses(), now
        data = self.beacon()
        for target in self._targets:
            self._send(data, (target, self.port))

    def readable(self) -> None:
        """Answer the probes that arrived (at most ``DATAGRAMS_PER_PASS``)."""
        for _ in range(DATAGRAMS_PER_PASS):
            try:
                data, source = self.sock.recvfrom(MAX_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error from an earlier send: nothing to do
                continue
            message = decode(data)
            if message is None or message.get("type") != "probe" or not self._take():
                continue
            self._send(self.beacon(), source)

    def _take(self) -> bool:
        now = self.clock()
        self._tokens = min(ANSWER_BURST, self._tokens + (now - self._stamp) * ANSWERS_PER_SECOND)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _send(self, data: bytes, target: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, target)
        except OSError:  # no route, a full buffer: a beacon is a hint, the next one comes
            pass

    def close(self) -> None:
        self.sock.close()


class Finder:
    """The client's side: hears beacons, may probe, and keeps the servers heard
    from recently. Non-blocking: ``poll`` returns at once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 port: int = DISCOVERY_PORT, probe: bool = True) -> None:
        """``probe``: ask at once (``--discover``); the window only listens, and a
        beacon comes within ``BEACON_SECONDS``."""
        self.clock = clock
        self.port = port
        self.servers: dict[str, tuple[Found, float]] = {}  # address: (found, last heard)
        # names (casefolded) of servers heard with TLS: a plain beacon under one of these
        # names is a twin passing for it, and is not listed
        self.tls_names: dict[str, None] = {}
        self.dropped = 0  # beacons not listed (bounds, twins): --discover says so
        self.listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listen.setblocking(False)
        try:
            self.listen.bind(("", port))  # beacons: every finder on the machine hears them
        except OSError:  # the port is taken by something else: answers to probes still come
            self.listen.close()
            self.listen = None  # type: ignore[assignment]
        self.asker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # probes, answers
        self.asker.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.asker.setblocking(False)
        self.asker.bind(("", 0))
        if probe:
            self.probe()

    def probe(self) -> None:
        data = encode("probe")
        for target in broadcast_addresses():
            try:
                self.asker.sendto(data, (target, self.port))
            except OSError:
                pass

    def poll(self) -> list[Found]:
        """Read what arrived; return the servers heard from within
        ``SERVER_GONE_SECONDS``, by name."""
        now = self.clock()
        for sock in (self.listen, self.asker):
            if sock is None:
                continue
            for _ in range(DATAGRAMS_PER_PASS):
                try:
                    data, (host, _) = sock.recvfrom(MAX_DATAGRAM + 1)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    continue
                message = decode(data)
                found = parse_beacon(message, host) if message is not None else None
                if found is not None:
                    self._heard(found, now)
        for address in [a for a, (_, heard) in self.servers.items()
                        if now - heard > SERVER_GONE_SECONDS]:
            del self.servers[address]
        return sorted((found for found, _ in self.servers.values()),
                      key=lambda f: (f.name.casefold(), f.address))

    def _heard(self, found: Found, now: float) -> None:
        """Keep ``found`` unless it would pass for another server or go past the
        bounds: a server once heard with TLS never turns plain (the address keeps its
        TLS entry, and a plain beacon under its name is not listed)."""
        key = found.name.casefold()
        known = self.servers.get(found.address)
        if not found.tls and (key in self.tls_names or (known and known[0].tls)):
            self.dropped += 1
            return
        if found.tls:
            self.tls_names[key] = None
            while len(self.tls_names) > TLS_NAMES:
                del self.tls_names[next(iter(self.tls_names))]
            for address, (other, _) in list(self.servers.items()):  # twins heard first
                if not other.tls and other.name.casefold() == key:
                    del self.servers[address]
        if known is None and (len(self.servers) >= MAX_SERVERS or sum(
                other.host == found.host for other, _ in self.servers.values())
                >= SERVERS_PER_HOST):
            self.dropped += 1
            return
        self.servers[found.address] = (found, now)

    def close(self) -> None:
        for sock in (self.listen, self.asker):
            if sock is not None:
                sock.close()
