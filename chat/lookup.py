"""Finding a server's address by name without ever waiting: for the chat window.

``socket.getaddrinfo`` blocks until the system's resolver answers, which for a name
no DNS server knows can be many seconds, with the window frozen all along. A
``Lookup`` instead answers what it can at once (an address typed as such, a name in
the hosts file) and otherwise asks the DNS servers of resolv.conf itself, over
non-blocking UDP (A and AAAA, the name as given and then with each search domain),
and names ending in ``.local`` by multicast DNS on the LAN. ``poll()`` never waits:
the caller's loop calls it until it says how it went.

Standard library only; DNS messages as RFC 1035 (and RFC 6762 for ``.local``).
"""

from __future__ import annotations

import ipaddress
import random
import socket
import struct
import time
from collections.abc import Callable

HOSTS_FILE = "/etc/hosts"
RESOLV_CONF = "/etc/resolv.conf"
TIMEOUT_S = 5.0  # after this, a name nobody answered for is "not found"
RESEND_S = 1.0  # a question without an answer is asked again this often
MAX_SERVERS = 3  # resolv.conf's own limit
MDNS = [("224.0.0.251", 5353), ("ff02::fb", 5353)]
A, AAAA = 1, 28
Address = tuple[socket.AddressFamily, str]


def literal(host: str) -> Address | None:
    """``host`` as an address if it is one (no lookup needed)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), host


def in_hosts(name: str, path: str = HOSTS_FILE) -> list[Address]:
    """The hosts file's addresses for ``name`` (case does not matter)."""
    found: list[Address] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                words = line.split("#", 1)[0].split()
                if len(words) >= 2 and name.lower() in (w.lower() for w in words[1:]):
                    address = literal(words[0])
                    if address is not None and address not in found:
                        found.append(address)
    except OSError:
        pass
    return found


def resolv_conf(path: str = RESOLV_CONF) -> tuple[list[tuple[str, int]], list[str]]:
    """(DNS servers as (address, 53), search domains) of resolv.conf."""
    servers: list[tuple[str, int]] = []
    search: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver" and literal(words[1]):
                    servers.append((words[1], 53))
                elif words and words[0] in ("search", "domain"):
                    search = words[1:]
    except OSError:
        pass
    return servers[:MAX_SERVERS], search


def question(query_id: int, name: str, kind: int, unicast_reply: bool = False) -> bytes:
    """A DNS query for ``name``'s records of ``kind``."""
    labels = b"".join(bytes([len(p)]) + p for p in
                      (part.encode("idna") for part in name.rstrip(".").split(".")) if p)
    flags = 0x0100  # recursion desired (mDNS ignores it)
    return (struct.pack("!6H", query_id, flags, 1, 0, 0, 0) + labels + b"\0" +
            struct.pack("!2H", kind, 0x8001 if unicast_reply else 1))


def _skip_name(data: bytes, at: int) -> int:
    """Where the (possibly compressed) name at ``at`` ends."""
    while True:
        length = data[at]
        if length & 0xC0 == 0xC0:
            return at + 2
        if length == 0:
            return at + 1
        at += 1 + length


def answers(data: bytes) -> tuple[int, int, list[Address]] | None:
    """(id, rcode, addresses) of a DNS response, or None if it is not one."""
    try:
        query_id, flags, questions, count = struct.unpack_from("!4H", data)
        if not flags & 0x8000:
            return None  # a question, not an answer
        at = 12
        for _ in range(questions):
            at = _skip_name(data, at) + 4
        found: list[Address] = []
        for _ in range(count):
            at = _skip_name(data, at)
            kind, _cls, _ttl, size = struct.unpack_from("!2HIH", data, at)
            at += 10
            rdata = data[at:at + size]
            at += size
            if kind == A and size == 4:
                found.append((socket.AF_INET, socket.inet_ntop(socket.AF_INET, rdata)))
            elif kind == AAAA and size == 16:
                found.append((socket.AF_INET6, socket.inet_ntop(socket.AF_INET6, rdata)))
        return query_id, flags & 0xF, found
    except (struct.error, IndexError, ValueError):
        return None


class Lookup:
    """The addresses of one name, found without blocking; see the module's text.

    ``poll()`` returns None while looking, then a list (empty: not found)."""

    def __init__(self, name: str, *, servers: list[tuple[str, int]] | None = None,
                 search: list[str] | None = None, hosts_file: str = HOSTS_FILE,
                 timeout: float = TIMEOUT_S, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.name = name.rstrip(".")
        self.clock = clock
        self.deadline = clock() + timeout
        self.result: list[Address] | None = None
        self.socks: list[socket.socket] = []
        self.pending: dict[int, int] = {}  # query id -> kind, for the current name
        self.answered: set[int] = set()  # kinds answered for the current name
        self.found: list[Address] = []
        self.sent_at = 0.0
        self.names: list[str] = []
        self.targets: list[tuple[str, int]] = []
        self.mdns = self.name.lower().endswith(".local")
        given = literal(self.name)
        hosts = [] if given else in_hosts(self.name, hosts_file)
        if given is not None or hosts or self.name.lower() == "localhost":
            self._done([given] if given else hosts or [(socket.AF_INET, "127.0.0.1")])
            return
        if self.mdns:  # the LAN's own names: asked of everyone on it
            self.targets, self.names = list(MDNS) if servers is None else servers, [self.name]
        else:
            conf_servers, conf_search = resolv_conf()
            self.targets = conf_servers if servers is None else servers
            domains = conf_search if search is None else search
            self.names = [self.name] + ([f"{self.name}.{d}" for d in domains]
                                        if "." not in self.name else [])
        if not self.targets:
            self.result = []
            return
        self._ask()

    def _ask(self) -> None:
        """Ask (again) every server about the current name, A and AAAA."""
        self.close_sockets()
        self.pending.clear()
        for host, port in self.targets:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                sock = socket.socket(family, socket.SOCK_DGRAM)
            except OSError:
                continue
            sock.setblocking(False)
            self.socks.append(sock)
            for kind in (A, AAAA):
                query_id = random.randrange(1 << 16)
                while query_id in self.pending:  # each question its own id
                    query_id = random.randrange(1 << 16)
                self.pending[query_id] = kind
                try:
                    sock.sendto(question(query_id, self.names[0], kind, self.mdns),
                                (host, port))
                except OSError:
                    pass  # no route to that server (IPv6 on an IPv4-only LAN...)
        self.sent_at = self.clock()

    def poll(self) -> list[Address] | None:
        """Read whatever answers came (never waits); the result once known."""
        if self.result is not None:
            return self.result
        for sock in list(self.socks):
            for _ in range(16):  # bounded: a flood of datagrams cannot hold the caller
                try:
                    data = sock.recv(4096)
                except OSError:  # nothing more now (or that server is unreachable)
                    break
                self._take(data)
                if self.result is not None:
                    return self.result
        now = self.clock()
        if now >= self.deadline:
            self._done(self.found)
        elif now - self.sent_at >= RESEND_S:
            self._ask()
        return self.result

    def _take(self, data: bytes) -> None:
        parsed = answers(data)
        if parsed is None:
            return
        query_id, rcode, found = parsed
        kind = self.pending.pop(query_id, None)
        if kind is None or rcode not in (0, 3):  # not ours, or a server failure: wait
            return
        self.answered.add(kind)
        self.found += [f for f in found if f not in self.found]
        if any(family == socket.AF_INET for family, _ in self.found):
            self._done(self.found)  # an IPv4 address: enough for a LAN server
        elif self.answered >= {A, AAAA}:  # both answered for this name
            if self.found:
                self._done(self.found)
            elif len(self.names) > 1:  # no such name: with the next search domain
                self.names.pop(0)
                self.answered.clear()
                self._ask()
            else:
                self._done([])

    def _done(self, found: list[Address]) -> None:
        # IPv4 first: on a LAN, v4 is what a chat server's window shows
        self.result = sorted(found, key=lambda a: a[0] != socket.AF_INET)
        self.close_sockets()

    def close_sockets(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks.clear()
