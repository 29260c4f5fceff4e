"""What differs between Linux, macOS and Windows, in one place, each with a fallback.

- **Open files.** POSIX has a per-process limit (``resource``), lifted to its hard
  value at start. Windows has none of that kind; there the loop's ``select()`` is the
  bound: it watches at most ``SELECT_SOCKETS`` sockets (Python's build of it), and
  ``connection_limit`` says how many clients fit beside the listeners.
- **Interface addresses** (where discovery beacons go): ``psutil.net_if_addrs`` on
  every platform (a well-kept library with wheels for all three; it reads the
  system's own tables, nothing waits on the network); 255.255.255.255 if it fails.
- **The operator console's input.** ``selectors`` watches a terminal or a pipe on
  POSIX; on Windows it watches sockets only, so standard input is read by
  ``PolledInput`` each pass without waiting (``msvcrt`` for a console,
  ``PeekNamedPipe`` for a pipe).
- **Stop signals.** SIGINT everywhere, SIGTERM on POSIX, SIGBREAK (Ctrl+Break) on
  Windows.

Nothing else in the product imports a platform-only module.
"""

from __future__ import annotations

import ipaddress
import os
import selectors
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

WINDOWS = sys.platform == "win32"
# Python's select() on Windows is built with FD_SETSIZE 512: more sockets than that in
# one call fail, so a loop that uses it must never hold more.
SELECT_SOCKETS = 512
RESERVED_SOCKETS = 16  # listeners, discovery, Redis, the console: beside the clients


def raise_open_files_limit() -> int:
    """Lift the soft open-files limit to the hard one; return the new soft limit
    (where there is no such limit, what the selector can hold)."""
    if resource is None:
        return SELECT_SOCKETS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def selector_capacity(selector: selectors.BaseSelector) -> int | None:
    """The most sockets ``selector`` can watch at once, or None for no fixed bound
    (epoll, kqueue, poll: the open-files limit is the bound)."""
    if isinstance(selector, selectors.SelectSelector) and WINDOWS:
        return SELECT_SOCKETS
    if isinstance(selector, selectors.SelectSelector):
        return getattr(os, "FD_SETSIZE", 1024)  # POSIX select: descriptors below 1024
    return None


def connection_limit(selector: selectors.BaseSelector, wanted: int) -> int:
    """``wanted`` clients, or fewer where the selector cannot hold them."""
    capacity = selector_capacity(selector)
    if capacity is None:
        return wanted
    return max(1, min(wanted, capacity - RESERVED_SOCKETS))


def broadcast_addresses() -> list[str]:
    """The IPv4 broadcast address of each interface that is up (not loopback), from
    its address and netmask; 255.255.255.255 where interfaces cannot be listed."""
    try:
        import psutil

        stats = psutil.net_if_stats()
        interfaces = psutil.net_if_addrs()
    except (ImportError, OSError, RuntimeError):
        return ["255.255.255.255"]
    found: list[str] = []
    for name, addresses in interfaces.items():
        if name in stats and not stats[name].isup:
            continue
        for address in addresses:
            if address.family != socket.AF_INET or not address.netmask:
                continue
            try:
                network = ipaddress.IPv4Interface(f"{address.address}/{address.netmask}")
            except ValueError:
                continue
            if network.ip.is_loopback or network.network.prefixlen >= 31:
                continue
            text = str(network.network.broadcast_address)
            if text not in found:
                found.append(text)
    return found


def stop_signals() -> list[int]:
    """The signals that ask a headless server to stop, as this platform has them."""
    names = ("SIGINT", "SIGBREAK") if WINDOWS else ("SIGINT", "SIGTERM")
    return [getattr(signal, name) for name in names if hasattr(signal, name)]


def on_stop_signals(stop: Callable[[], None]) -> None:
    for number in stop_signals():
        signal.signal(number, lambda *_: stop())


class PolledInput:
    """Standard input read without waiting where ``selectors`` cannot watch it
    (Windows): ``read()`` returns what is there now (None: nothing yet; b"": the end).
    A console gives what was typed, echoed, a line at a time; a pipe what it holds."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._line = ""
        import msvcrt  # Windows only: this class is made there alone

        self._msvcrt: Any = msvcrt
        self._console = os.isatty(fd)

    def read(self) -> bytes | None:
        if self._console:
            return self._read_console()
        return self._read_pipe()

    def _read_console(self) -> bytes | None:
        msvcrt = self._msvcrt
        for _ in range(256):  # bounded: one pass never types a novel
            if not msvcrt.kbhit():
                return None
            char = msvcrt.getwche()
            if char in ("\r", "\n"):
                msvcrt.putwch("\n")
                line, self._line = self._line, ""
                return (line + "\n").encode()
            if char == "\x1a":  # Ctrl+Z: the end of input
                return b""
            if char == "\b":
                self._line = self._line[:-1]
            else:
                self._line += char
        return None

    def _read_pipe(self) -> bytes | None:
        import ctypes
        from ctypes import wintypes

        handle = self._msvcrt.get_osfhandle(self.fd)
        available = wintypes.DWORD(0)
        peek = ctypes.windll.kernel32.PeekNamedPipe  # type: ignore[attr-defined]
        if not peek(handle, None, 0, None, ctypes.byref(available), None):
            return b""  # the writer is gone
        if not available.value:
            return None
        return os.read(self.fd, min(available.value, 64 * 1024))
