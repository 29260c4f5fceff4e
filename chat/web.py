"""HTTP on the chat port: the page's files, and the upgrade of ``/ws`` to WebSocket.

A connection whose first byte is a capital letter (a request method) is HTTP; its
``WebDoor`` drives h11's sans-I/O connection: requests in, responses written to the
peer's output. ``GET /`` and the page's other files come from ``Site`` (read into
memory once: a request never touches the file system); ``GET /ws`` with a WebSocket
upgrade switches the connection to ``chat.websocket`` and from then on it carries
protocol frames like any other. Every answer carries a strict Content-Security-Policy:
the page runs only its own script files, and talks only to its own server.

Limits: a request head is at most ``MAX_HEAD`` bytes (431); a connection that has not
said `hello` within ``hello_timeout`` is closed (the hub's timer), which bounds a slow
head too; an upgrade whose ``Origin`` is not the server's own address is refused
(403), so another site open in the same browser cannot talk to the chat as its user.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import h11
from wsproto.utilities import generate_accept_token

from chat.events import Error, Event
from chat.model import Peer
from chat.protocol import CLOSED, NEED_DATA
from chat.websocket import WEBSOCKET, WebSocketReader

# A browser's request head is well under 2 KiB even with cookies of other apps on the
# same address; 16 KiB (h11's own default) leaves room and bounds what a peer makes
# the server hold before it has said anything.
MAX_HEAD = 16 * 1024
WEB_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml",
         ".png": "image/png", ".json": "application/json", ".ico": "image/x-icon"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = [
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
]
WS_PATH = "/ws"
# error frames the hub sends before a connection is a chat (admission): their status
REFUSALS = {"banned": 403, "server_full": 503, "too_many_connections": 503}


def looks_like_http(first: bytes) -> bool:
    """A request line starts with a method in capitals; a JSON frame with "{"."""
    return first[:1].isupper()


class Site:
    """The page's files, read once, by path (``/`` is ``/index.html``)."""

    def __init__(self, root: str = WEB_ROOT) -> None:
        self.files: dict[str, tuple[bytes, str, str]] = {}  # path: (body, type, etag)
        # A cluster node: the other nodes' HOST:PORT, which the page may reach when it
        # moves there (chat.cluster); their origins join CSP's connect-src.
        self.peers: Callable[[], list[str]] | None = None
        if not os.path.isdir(root):
            return
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            kind = TYPES.get(os.path.splitext(name)[1])
            if kind is None or not os.path.isfile(path):
                continue
            with open(path, "rb") as handle:
                body = handle.read()
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            self.files["/" + name] = (body, kind, etag)
        if "/index.html" in self.files:
            self.files["/"] = self.files["/index.html"]

    def get(self, path: str) -> tuple[bytes, str, str] | None:
        return self.files.get(path)

    def security_headers(self) -> list[tuple[str, str]]:
        peers = self.peers() if self.peers is not None else []
        if not peers:
            return SECURITY_HEADERS
        others = " ".join(f"http://{p} https://{p}" for p in peers)
        csp = CSP.replace("connect-src 'self'", f"connect-src 'self' {others}")
        return [("Content-Security-Policy", csp), *SECURITY_HEADERS[1:]]


def plain_response(status: int, text: str, extra: list[tuple[str, str]] | None = None
                   ) -> tuple[list[tuple[str, str]], bytes]:
    body = (text + "\n").encode("utf-8")
    headers = [("Content-Type", "text/plain; charset=utf-8"),
               ("Content-Length", str(len(body))), *SECURITY_HEADERS, *(extra or [])]
    return headers, body


class HttpRefusal:
    """The codec of an HTTP connection that is refused before it is a chat (a ban,
    too many connections): the hub's ``Error`` becomes a status and its sentence."""

    farewell = b""
    marks = False  # it never carries a message

    @property
    def share_key(self) -> object:
        return self  # one instance for every connection

    def pieces(self, wired: bytes) -> list[tuple[bytes, bytes]]:
        return [(b"", wired)]

    def render(self, events: Sequence[Event]) -> list[bytes]:
        out = []
        for event in events:
            if not isinstance(event, Error):
                out.append(b"")
                continue
            status = REFUSALS.get(event.code, 400)
            headers, body = plain_response(status, event.message, [("Connection", "close")])
            head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
            head += [f"{name}: {value}" for name, value in headers]
            out.append(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        return out


HTTP_REFUSAL = HttpRefusal()


def same_origin(origin: str, host: str) -> bool:
    """Whether the page that opens a WebSocket came from this server: its ``Origin``
    names the address the browser asked for (``Host``)."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    default = 443 if parts.scheme == "https" else 80
    try:
        wanted = urlsplit("//" + host)
        wanted_port = wanted.port
    except ValueError:
        return False
    if wanted.hostname is None:
        return False
    return (parts.hostname.lower() == wanted.hostname.lower()
            and (port or default) == (wanted_port or default))


class WebDoor:
    """One HTTP connection: page requests, then perhaps the WebSocket it becomes.

    It has the interface of ``FrameDecoder`` (``receive_data``, ``has_frames``,
    ``next_event``): HTTP requests are answered inside ``next_event`` (which returns
    ``NEED_DATA`` for them), WebSocket messages come out as frames.
    """

    def __init__(self, peer: Peer, site: Site, max_frame: int,
                 clock: Callable[[], float]) -> None:
        self.peer = peer
        self.site = site
        self.max_frame = max_frame
        self.clock = clock
        self._http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self._ws: WebSocketReader | None = None
        self._asked: h11.Request | None = None  # read up to its body's end, then answered
        self._unread = False
        self._ended = False
        self._head = 0  # bytes of the request head being received
        self._carry = b""  # the last bytes received, for a blank line across reads
        self._too_big = False
        self._served = 0  # requests answered (each is work the loop charges)
        # what the loop charges: requests answered, then the WebSocket's own work
        self.work = 0
        peer.door = "http"

    def receive_data(self, data: bytes) -> None:
        if self._ws is not None:
            self._ws.receive_data(data)
            return
        if self._ended:
            return
        self._measure(data)
        try:
            self._http.receive_data(data)
        except h11.RemoteProtocolError:  # bytes after the peer's own EOF
            self._ended = True
        self._unread = True

    @property
    def has_frames(self) -> bool:
        return self._ws.has_frames if self._ws is not None else self._unread

    def next_event(self) -> Any:
        ws = self._ws
        if ws is not None:
            try:
                return ws.next_event()
            finally:
                self.work = self._served + ws.work
        if not self._ended:
            try:
                self._next_request()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                self._refuse(status, HTTPStatus(status).phrase)
        self.work = self._served
        if self._ws is not None:  # upgraded: what came with the upgrade is frames
            return self.next_event()
        if self._ended:
            return CLOSED
        return NEED_DATA

    # ------------------------------------------------------------ HTTP

    def _next_request(self) -> None:
        """Read events up to the end of one request and answer it (or up to the end
        of what is buffered)."""
        http = self._http
        while not self._ended:
            if http.our_state is h11.DONE and http.their_state is h11.DONE:
                http.start_next_cycle()
            if self._too_big:
                self._refuse(431, "The request head is too large.")
                return
            event = http.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                self._unread = False
                return
            if isinstance(event, h11.ConnectionClosed):
                self._ended = True
                return
            if isinstance(event, h11.Request):
                self._asked = event
                if event.method not in (b"GET", b"HEAD"):  # its body is never read
                    self._refuse(405, "Only GET and HEAD are served here.",
                                 [("Allow", "GET, HEAD")])
                    return
            elif isinstance(event, h11.EndOfMessage) and self._asked is not None:
                request, self._asked = self._asked, None
                self._served += 1
                self._request(request)
                return

    def _measure(self, data: bytes) -> None:
        """Count head bytes as they come (h11's own limit only counts a head that is
        still incomplete): every stretch up to a blank line is at most ``MAX_HEAD``.
        Linear in what arrives; a GET body, which means nothing here, counts as head."""
        joined = self._carry + data  # the carry was counted already
        parts = joined.split(b"\r\n\r\n")
        first = self._head + len(parts[0]) - len(self._carry)
        if len(parts) == 1:
            self._head = first
        else:
            if first > MAX_HEAD or any(len(part) > MAX_HEAD for part in parts[1:-1]):
                self._too_big = True
            self._head = len(parts[-1])
        if self._head > MAX_HEAD:
            self._too_big = True
        self._carry = joined[-3:]  # a blank line may straddle two reads

    def _request(self, request: h11.Request) -> None:
        method = request.method.decode("ascii")
        target = request.target.decode("ascii", "replace")
        path = target.split("?", 1)[0]
        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in request.headers}
        if path == WS_PATH:
            self._upgrade(headers)
            return
        found = self.site.get(path)
        if found is None:
            self._respond(404, *plain_response(404, "Not found."))
            return
        body, kind, etag = found
        common = [("Content-Type", kind), ("ETag", etag), ("Cache-Control", "no-cache"),
                  *self.site.security_headers()]
        if headers.get("if-none-match") == etag:
            self._respond(304, common, b"")
            return
        self._respond(200, [*common, ("Content-Length", str(len(body)))],
                      b"" if method == "HEAD" else body)

    def _upgrade(self, headers: dict[str, str]) -> None:
        connection = {part.strip().lower() for part in headers.get("connection", "").split(",")}
        key = headers.get("sec-websocket-key", "")
        if headers.get("upgrade", "").lower() != "websocket" or "upgrade" not in connection:
            self._refuse(426, "This address is the chat's WebSocket: open / in a browser.",
                         [("Upgrade", "websocket")])
            return
        if headers.get("sec-websocket-version") != "13" or not key:
            self._refuse(400, "A WebSocket version 13 handshake is needed.",
                         [("Sec-WebSocket-Version", "13")])
            return
        origin = headers.get("origin")
        if origin is not None and not same_origin(origin, headers.get("host", "")):
            self._refuse(403, "This page may only be used from the chat server's own "
                              "address.")
            return
        accept = generate_accept_token(key.encode("ascii", "replace")).decode("ascii")
        response = h11.InformationalResponse(status_code=101, headers=[
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept)])
        self.peer.queue_wire(self._http.send(response) or b"")
        trailing, closed = self._http.trailing_data
        peer = self.peer
        peer.codec, peer.door = WEBSOCKET, "web"
        peer.started = self.clock()  # `hello` is due within hello_timeout from now
        self._ws = WebSocketReader(bytes(trailing), self.max_frame, peer.queue_wire)
        if closed:
            self._ws.receive_data(b"")

    def _respond(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        http = self._http
        reason = HTTPStatus(status).phrase.encode("ascii")
        out = http.send(h11.Response(status_code=status, headers=headers, reason=reason)) or b""
        if body:
            out += http.send(h11.Data(data=body)) or b""
        out += http.send(h11.EndOfMessage()) or b""
        self.peer.queue_wire(out)
        if http.our_state is h11.MUST_CLOSE:
            self._ended = True

    def _refuse(self, status: int, text: str,
                extra: list[tuple[str, str]] | None = None) -> None:
        """Answer ``status`` and end the connection (after the answer is sent)."""
        headers, body = plain_response(status, text, [("Connection", "close"),
                                                      *(extra or [])])
        http = self._http
        if http.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                self._respond(status, headers, body)
            except h11.LocalProtocolError:
                pass
        self._ended = True

