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


def join_address(host: str, port: int) -> str:
    """``host:port`` as people type it (``[v6]:port``); ``split_address`` reads it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_address(text: str, default_port: int) -> tuple[str, int]:
    """A server address as people paste it: ``host``, ``host:port``, ``[v6]:port`` or
    a bare IPv6 address; ``ValueError`` with a sentence for people when it is none."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (end + 1 < len(text) and text[end + 1] != ":"):
            raise ValueError("An IPv6 address goes in brackets: [::1]:7070.")
        host, port_text = text[1:end], text[end + 2:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    host = host.strip()
    if not host or any(ch.isspace() or ch in "/@" for ch in host):
        raise ValueError("Type the server's address as the server window shows it, "
                         "for example 192.168.1.20:7070.")
    if not port_text:
        return host, default_port
    digits = len(port_text) <= 5 and port_text.isascii() and port_text.isdigit()
    if not digits or not 1 <= int(port_text) <= 65535:
        raise ValueError("The port (after the ':') is a number from 1 to 65535.")
    return host, int(port_text)
