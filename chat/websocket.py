"""WebSocket, the page's front door: one protocol frame per text message.

Inbound, ``WebSocketReader`` drives wsproto's sans-I/O connection (bytes in, events
out): a text message is one docs/protocol.md frame, parsed by the same strict rules as a
JSON line; pings are answered; a binary message or a broken frame ends the
connection with the close code RFC 6455 names. Outbound, ``WEBSOCKET`` frames whole
JSON lines itself: a server frame is a two-to-ten byte header and the line, unmasked,
so a room's batch is framed once for every WebSocket member (wsproto would build one
frame per call, per member). No I/O here: the server feeds bytes and sends what
``write`` was given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.frame_protocol import CloseReason

from chat.errors import ProtocolError
from chat.events import Event
from chat.protocol import CLOSED, NEED_DATA, decode_frame

TEXT = 0x81  # FIN and the text opcode: every frame the server sends is one of these
CLOSE_NORMAL = b"\x88\x02\x03\xe8"  # a close frame with code 1000, sent when we close
UNSUPPORTED = "This server reads text messages only: one JSON frame per message."
# WebSocket events read per next_event: fragments, control frames and blank messages
# make no frame, so without a bound one 64 KiB read (about 9,000 one-byte fragments)
# would be worked through in one call, holding everyone else's turn.
EVENTS_PER_CALL = 64


def frame_text(payload: bytes) -> bytes:
    """One unmasked, final text frame carrying ``payload`` (RFC 6455 section 5.2)."""
    size = len(payload)
    if size < 126:
        return bytes((TEXT, size)) + payload
    if size < 65536:
        return bytes((TEXT, 126)) + size.to_bytes(2, "big") + payload
    return bytes((TEXT, 127)) + size.to_bytes(8, "big") + payload


class WebSocketCodec:
    """Events as WebSocket text frames, one per JSON line."""

    farewell = CLOSE_NORMAL  # what the server sends before it closes the socket
    marks = False  # its frames are read back (``pieces``)

    @property
    def share_key(self) -> object:
        return self  # one instance for every connection

    def render(self, events: Sequence[Event]) -> list[bytes]:
        """Each event's JSON lines, each line one text frame."""
        out = []
        for event in events:
            lines = event.lines()
            out.append(frame_text(lines[0]) if len(lines) == 1
                       else b"".join([frame_text(line) for line in lines]))
        return out

    def pieces(self, wired: bytes) -> list[tuple[bytes, bytes]]:
        """Its own frames back as (JSON line, frame), for taking back a failed
        commit's messages; other frames (pong, close) carry no line."""
        found: list[tuple[bytes, bytes]] = []
        at, end = 0, len(wired)
        while at + 2 <= end:
            size, head = wired[at + 1] & 0x7F, 2
            if size == 126:
                size, head = int.from_bytes(wired[at + 2:at + 4], "big"), 4
            elif size == 127:
                size, head = int.from_bytes(wired[at + 2:at + 10], "big"), 10
            frame = wired[at:at + head + size]
            line = frame[head:] + b"\n" if wired[at] == TEXT else b""
            found.append((line, frame))
            at += head + size
        return found

    def __repr__(self) -> str:
        return "WEBSOCKET"


WEBSOCKET = WebSocketCodec()


class WebSocketReader:
    """Text messages in, protocol frames out (``next_event``, as ``FrameDecoder``).

    A message longer than ``max_frame`` bytes is dropped as it arrives (never
    buffered whole) and reported once as ``frame_too_long``, like an over-long line.
    Control frames are answered through ``write`` (bytes for the peer's output).
    """

    def __init__(self, trailing: bytes, max_frame: int,
                 write: Callable[[bytes], None]) -> None:
        self.max_frame = max_frame
        self._write = write
        self._conn = Connection(ConnectionType.SERVER)
        self._parts: list[str] = []
        self._size = 0  # bytes of the message being gathered
        self._too_long = False  # dropping the rest of an over-long message
        self._unread = False  # bytes fed since next_event last ran out
        self._ended = False  # closed: by either side, or broken
        self._eof = False  # the peer closed TCP; what it sent before is still read
        self.work = 0  # events read that made no frame: fragments, control frames, blanks
        if trailing:
            self.receive_data(trailing)

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` means it closed the TCP connection."""
        if self._ended:
            return
        if not data:
            self._eof = True  # the messages that came before it are read first
            self._unread = True
            return
        self._conn.receive_data(data)
        self._unread = True

    @property
    def has_frames(self) -> bool:
        return self._unread

    def next_event(self) -> Any:
        """The next frame, ``NEED_DATA``, or ``CLOSED`` once the connection is over
        (its close frame queued). ``ProtocolError`` for a message that is not one
        frame; the connection goes on."""
        if not self._ended:
            for seen, event in enumerate(self._conn.events(), 1):
                if isinstance(event, TextMessage):
                    frame = self._text(event)
                    if frame is not None:
                        return frame
                    self.work += 1  # a fragment, or a blank message
                    if seen >= EVENTS_PER_CALL:
                        return NEED_DATA
                    continue
                self.work += 1  # a control frame
                if isinstance(event, Ping):
                    self._write(self._conn.send(event.response()))
                elif isinstance(event, BytesMessage):
                    self._close(CloseReason.UNSUPPORTED_DATA, UNSUPPORTED)
                    break
                elif isinstance(event, CloseConnection):  # the peer's, or a broken frame
                    if self._conn.state is ConnectionState.REMOTE_CLOSING:
                        self._write(self._conn.send(event.response()))
                    elif event.code != CloseReason.NORMAL_CLOSURE:  # wsproto: ParseFailed
                        self._close(event.code, event.reason)
                    self._ended = True
                    break
                if seen >= EVENTS_PER_CALL:  # fragments, pings, blank messages: a
                    return NEED_DATA  # bounded turn; the rest in the next (_unread)
            else:
                self._ended = self._eof  # every message before the EOF was read
        self._unread = False
        return CLOSED if self._ended else NEED_DATA

    def _text(self, event: TextMessage) -> dict[str, Any] | None:
        if not self._too_long:
            self._size += len(event.data.encode("utf-8", "surrogatepass"))
            if self._size > self.max_frame:
                self._too_long = True
                self._parts.clear()
            else:
                self._parts.append(event.data)
        if not event.message_finished:
            return None
        text, self._parts, self._size = "".join(self._parts), [], 0
        if self._too_long:
            self._too_long = False
            raise ProtocolError("frame_too_long",
                                f"A message may be at most {self.max_frame} bytes.")
        if not text.strip():
            return None  # an empty message is ignored, like an empty line
        return decode_frame(text.encode("utf-8"))

    def _close(self, code: int, reason: str | None) -> None:
        if self._conn.state is ConnectionState.OPEN:
            self._write(self._conn.send(CloseConnection(code=code, reason=reason)))
        self._ended = True
