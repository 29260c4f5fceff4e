"""Operator bans by nickname or by address (a host or a network), with expiry.

The hub keeps them in a ``Bans`` table loaded from the store at start; every change
goes to the store first, so a ban outlasts restarts. Addresses are compared as
``ipaddress`` networks (``10.0.0.7`` is ``10.0.0.7/32``; an IPv4-mapped IPv6 peer
address counts as its IPv4 address).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import NamedTuple

from chat.protocol import name_key, normal_nick

KINDS = ("nick", "address")


class Ban(NamedTuple):
    kind: str  # "nick" or "address"
    key: str  # name_key of the nick, or the network in ipaddress's spelling
    value: str  # what the operator gave, normalised (shown in lists)
    reason: str
    created: int  # ms since the epoch
    expires: int | None  # ms since the epoch, None: never

    def active(self, now_ms: int) -> bool:
        return self.expires is None or now_ms < self.expires


def host_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A peer's address as an ``ipaddress`` object (IPv4-mapped IPv6 unwrapped)."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def ban_target(kind: str, value: str) -> tuple[str, str]:
    """(key, normalised value) of a ban; ``ValueError`` with a sentence if invalid."""
    value = value.strip()
    if kind == "nick":
        nick = normal_nick(value)
        if nick is None:
            raise ValueError(f"'{value}' is not a valid nickname.")
        return name_key(nick), nick
    if kind == "address":
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"'{value}' is not an IP address or network.") from None
        if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped:
            mapped = net.network_address.ipv4_mapped
            net = ipaddress.ip_network(f"{mapped}/{max(0, net.prefixlen - 96)}")
        spelled = str(net.network_address) if net.num_addresses == 1 else str(net)
        return str(net), spelled
    raise ValueError(f"A ban is by {' or '.join(KINDS)}, not '{kind}'.")


class Bans:
    """The active bans, by (kind, key)."""

    def __init__(self, bans: Iterable[Ban] = ()) -> None:
        self._bans: dict[tuple[str, str], Ban] = {(b.kind, b.key): b for b in bans}
        self._networks: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}
        self._index()

    def _index(self) -> None:
        self._networks = {key: ipaddress.ip_network(key)
                          for kind, key in self._bans if kind == "address"}

    def __len__(self) -> int:
        return len(self._bans)

    def add(self, ban: Ban) -> None:
        self._bans[(ban.kind, ban.key)] = ban
        self._index()

    def remove(self, kind: str, key: str) -> Ban | None:
        ban = self._bans.pop((kind, key), None)
        self._index()
        return ban

    def listing(self, now_ms: int) -> list[Ban]:
        """Active bans, newest first."""
        return sorted((b for b in self._bans.values() if b.active(now_ms)),
                      key=lambda b: b.created, reverse=True)

    def expired(self, now_ms: int) -> list[Ban]:
        return [b for b in self._bans.values() if not b.active(now_ms)]

    def nick(self, key: str, now_ms: int) -> Ban | None:
        ban = self._bans.get(("nick", key))
        return ban if ban is not None and ban.active(now_ms) else None

    def host(self, host: str, now_ms: int) -> Ban | None:
        if not self._networks:
            return None
        addr = host_address(host)
        if addr is None:
            return None
        for key, net in self._networks.items():
            if addr.version == net.version and addr in net:
                ban = self._bans[("address", key)]
                if ban.active(now_ms):
                    return ban
        return None
