"""A blocking raw IRC client for tests, with deadlines on every wait."""

from __future__ import annotations

import time

from chat.irc import split_line
from tests.wire import DEFAULT_TIMEOUT, Wire


class IrcWire(Wire):
    """``Wire``'s connection and reading, with IRC lines instead of JSON frames."""

    def __init__(self, port: int, tls: bool = False) -> None:
        super().__init__(port, tls=tls)  # the test checks the gateway, not the certificate
        self.lines: list[str] = []  # received, not yet looked at
        self.seen: list[str] = []  # every line looked at (and skipped) by until

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(f"{line}\r\n" for line in lines).encode())

    def _take(self, data: bytes) -> None:
        self.buf += data
        *lines, self.buf = self.buf.split(b"\r\n")
        self.lines.extend(line.decode() for line in lines)

    def until(self, command: str, *params: str,
              timeout: float = DEFAULT_TIMEOUT) -> list[str]:
        """Skip lines until one with ``command`` whose first params match; return
        [the whole line, its source, its params...]."""
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

    def until_any(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        """The next line, whatever it is."""
        deadline = time.monotonic() + timeout
        while not self.lines:
            if not self._fill(deadline):
                raise AssertionError(f"no line within {timeout}s (eof={self.eof})")
        line = self.lines.pop(0)
        self.seen.append(line)
        return line

    def register(self, nick: str, caps: str = "") -> None:
        if caps:
            self.send("CAP LS 302", f"NICK {nick}", f"USER {nick} 0 * :{nick}",
                      f"CAP REQ :{caps}", "CAP END")
        else:
            self.send(f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        self.until("001", nick)

