"""This machine's addresses, for the server window to show which one clients type."""

from __future__ import annotations

import ipaddress
import socket

# A documentation address (RFC 5737): connecting a UDP socket to it picks the
# interface of the default route and sends nothing.
_PROBE = ("192.0.2.1", 9)


def lan_addresses() -> list[str]:
    """Non-loopback IPv4 addresses of this machine, best guess first."""
    found: list[str] = []
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(_PROBE)
        found.append(probe.getsockname()[0])
    except OSError:
        pass
    finally:
        probe.close()
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        infos = []
    for info in infos:
        found.append(str(info[4][0]))
    unique = []
    for address in found:
        ip = ipaddress.ip_address(address)
        if not (ip.is_loopback or ip.is_unspecified) and address not in unique:
            unique.append(address)
    return unique


def addresses_to_show(host: str) -> list[str]:
    """What clients should type for a server listening on ``host``."""
    if host in ("0.0.0.0", "", "::"):
        return lan_addresses() or ["127.0.0.1"]
    return [host]
