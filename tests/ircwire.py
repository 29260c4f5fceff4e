"""A blocking raw IRC client for tests, with deadlines on every wait."""

from __future__ import annotations

import socket
import ssl
import time

from chat.irc import split_line

DEFAULT_TIMEOUT = 5.0


class IrcWire:
    def __init__(self, port: int, tls: bool = False) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEFAULT_TIMEOUT)
        if tls:  # the test checks the gateway, not the certificate
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.sock = ctx.wrap_socket(self.sock)
        self.buf = b""
        self.lines: list[str] = []  # received, not yet looked at
        self.seen: list[str] = []  # every line looked at (and skipped) by until
        self.eof = False

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(f"{line}\r\n" for line in lines).encode())

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.eof:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        *lines, self.buf = self.buf.split(b"\r\n")
        self.lines.extend(line.decode() for line in lines)
        return True

    def until(self, command: str, *params: str, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
        """Skip lines until one with ``command`` whose first params match; return its
        (tags, source, command, params) split, as params list with source first."""
        deadline = time.monotonic() + timeout
        while True:
            while self.lines:
                line = self.lines.pop(0)
                self.seen.append(line)
                tags, source, cmd, args = split_line(line)
                if cmd == command and args[:len(params)] == list(params):
                    return [line, source or "", *args]
            if not self._fill(deadline):
                raise AssertionError(f"no {command} {params} within {timeout}s "
                                     f"(eof={self.eof})")

    def register(self, nick: str, caps: str = "") -> None:
        if caps:
            self.send("CAP LS 302", f"NICK {nick}", f"USER {nick} 0 * :{nick}",
                      f"CAP REQ :{caps}", "CAP END")
        else:
            self.send(f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        self.until("001", nick)

    def close(self) -> None:
        self.sock.close()
