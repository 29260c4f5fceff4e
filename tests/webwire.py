"""Blocking test clients for the web front door: raw HTTP, and WebSocket (wsproto).

``WebWire`` speaks the protocol over ``/ws`` with the same methods as ``Wire``
(``send``, ``next``, ``until``, ``barrier``, ``hello``, ...), so a test reads the same
whichever door a client came in by. Every wait has a deadline.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections import deque
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from tests.wire import DEFAULT_TIMEOUT, Wire


def open_socket(port: int, tls: bool = False) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEFAULT_TIMEOUT)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock)
    return sock


EOF_MARK = b"<EOF>"


def read_all(sock: socket.socket, timeout: float = DEFAULT_TIMEOUT,
             mark_eof: bool = False) -> bytes:
    """Everything the server sends until it closes (or the deadline); with
    ``mark_eof``, ``EOF_MARK`` is appended when it closed."""
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except (ConnectionResetError, ssl.SSLError):
            chunk = b""
        if not chunk:
            return data + EOF_MARK if mark_eof else data
        data += chunk
    return data


def http_get(port: int, path: str = "/", headers: dict[str, str] | None = None,
             method: str = "GET", tls: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One request with Connection: close; (status, headers lower-cased, body)."""
    sock = open_socket(port, tls)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    raw = read_all(sock)
    sock.close()
    return parse_response(raw)


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


class WebWire(Wire):
    """A WebSocket client of ``/ws`` with ``Wire``'s methods."""

    def __init__(self, port: int, *, tls: bool = False, origin: str | None = None,
                 path: str = "/ws") -> None:
        self.sock = open_socket(port, tls)
        self.buf = b""
        self.frames: deque[dict[str, Any]] = deque()
        self.eof = False
        self.close_code: int | None = None
        self.ws = WSConnection(ConnectionType.CLIENT)
        extra = [("Origin", origin)] if origin else []
        self.sock.sendall(self.ws.send(Request(host=f"127.0.0.1:{port}", target=path,
                                               extra_headers=extra)))
        self.rejected: int | None = None
        deadline = time.monotonic() + DEFAULT_TIMEOUT
        self.accepted = False
        while not self.accepted and self.rejected is None:
            if not self._fill(deadline):
                raise AssertionError("no answer to the WebSocket handshake")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_text(self, text: str) -> None:
        self.sock.sendall(self.ws.send(Message(data=text)))

    def send(self, **frame: Any) -> None:
        self.send_text(json.dumps(frame))

    def _take(self, data: bytes) -> None:
        """WebSocket events out of bytes received; text messages are frames."""
        if self.ws.state is ConnectionState.CLOSED:
            return  # after the closing handshake: nothing more to read as frames
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = True
            elif isinstance(event, (RejectConnection, RejectData)):
                if isinstance(event, RejectConnection):
                    self.rejected = event.status_code
            elif isinstance(event, TextMessage):
                self.buf += event.data.encode()
                if event.message_finished:
                    self.frames.append(json.loads(self.buf))
                    self.buf = b""
            elif isinstance(event, BytesMessage):
                raise AssertionError("the server sent a binary message")
            elif isinstance(event, Ping):
                self.sock.sendall(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                try:
                    self.sock.sendall(self.ws.send(event.response()))
                except (OSError, Exception):
                    pass
