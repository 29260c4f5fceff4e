"""The wire protocol of docs/protocol.md, without any I/O.

Bytes go in (``FrameDecoder.receive_data``), frames come out (``next_event``), and
``encode`` turns a frame into bytes. ``parse_request`` validates every client frame
type and returns a normalised request or raises ``ProtocolError`` with the code the
protocol names. This module imports neither ``socket`` nor ``selectors``; the server,
the client core and the tests all use it the same way.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from chat.errors import ProtocolError

MAX_FRAME = 16 * 1024  # docs/protocol.md: default client frame limit, "\n" included
MAX_TEXT = 4000  # docs/protocol.md: default message text limit, in code points
MAX_REF = 64  # docs/protocol.md: longest `ref` a client may send
MAX_NICK = 24  # docs/protocol.md: nickname length in code points
MAX_ROOM = 32  # docs/protocol.md: room name length in code points
HISTORY_LIMIT_MAX = 200  # docs/protocol.md: `history` requests ask for 1..200 messages
HISTORY_LIMIT_DEFAULT = 50
MAX_SEARCH = 1000  # characters of a `search` query on the wire (its first 200 are read)
MAX_TAGS = 4094  # bytes of client tags (docs/protocol.md), as IRCv3 allows a client
MAX_ISON = 64  # names per `ison` request (docs/protocol.md)
MAX_AWAY = 200  # characters of an away message (docs/protocol.md)
MAX_REALNAME = 100  # characters of a hello's `user` and `realname`
TAG_KEY = re.compile(r"\+(?:[A-Za-z0-9.-]+/)?[A-Za-z0-9-]+")
# Message ids in requests (`since`, `before`): SQLite keeps signed 64-bit integers, so a
# larger one can name no message; outside 0..MAX_ID it is `bad_field`.
MAX_ID = 2 ** 63 - 1
RESERVED_NICKS = frozenset({"server", "system"})  # compared after casefold
# Letters of other scripts (and Latin small capitals) that look like the letters of
# the reserved names, after NFKC and casefold (which already take fullwidth and other
# compatibility forms to plain letters): from Unicode's confusables (UTS #39), for the
# letters e m r s t v y. Cherokee is listed in both cases: its casefold goes upward.
LOOKALIKES = str.maketrans({
    "е": "e", "ҽ": "e", "ε": "e", "ᴇ": "e", "ꬲ": "e", "℮": "e", "Ꭼ": "e", "ꭼ": "e",
    "м": "m", "ᴍ": "m", "μ": "m", "Ꮇ": "m", "ꮇ": "m",
    "г": "r", "ᴦ": "r", "ⲅ": "r", "ʀ": "r", "ꭇ": "r", "ꭈ": "r", "Ꭱ": "r", "ꭱ": "r",
    "ꮁ": "r",
    "ѕ": "s", "ꜱ": "s", "ꓢ": "s", "Ꮪ": "s", "ꮪ": "s", "ƽ": "s",
    "т": "t", "τ": "t", "ᴛ": "t", "Ꭲ": "t", "ꭲ": "t",
    "ѵ": "v", "ν": "v", "ᴠ": "v", "Ꮩ": "v", "ꮩ": "v", "٧": "v", "۷": "v",
    "у": "y", "ү": "y", "γ": "y", "υ": "y", "ʏ": "y", "ყ": "y", "Ꭹ": "y", "ꭹ": "y",
})
NAME_PUNCTUATION = frozenset("_-.")
# Nicknames also take IRC's special characters (RFC 2812: `[]\\^{}|` and the
# backtick), so that `ivy|away` and `[bot]` are nicknames in every door. They are
# compared by casefold only (IRC's CASEMAPPING=ascii: `[` and `{` stay two letters).
NICK_PUNCTUATION = NAME_PUNCTUATION | frozenset("[]\\^{}|`")
DEFAULT_ROOM = "general"

# Server frames can be far longer than client frames (a `users` roster of a
# thousand nicks, a history message near `max_frame`), so clients buffer more.
CLIENT_MAX_FRAME = 4 * 1024 * 1024

LINES_PER_CALL = 64  # blank lines skipped per next_event (a bounded turn)
NEED_DATA = object()  # next_event(): no complete frame buffered yet
CLOSED = object()  # next_event(): the peer closed and every frame was consumed

_TOO_LONG = object()  # queued in place of a line that passed max_frame
# Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F; "\t" and "\n" pass.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_string = json.encoder.encode_basestring  # a str as JSON, as _ENCODER writes it
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_SCAN = _DECODER.scan_once  # type: ignore[attr-defined]  # (value, end) or StopIteration
JsonObject = dict[str, Any]  # a frame as JSON reads it (checked by parse_request)


# ---------------------------------------------------------------- framing

class FrameDecoder:
    """Splits a byte stream into frames (dicts with a string ``type``).

    A line longer than ``max_frame`` (its "\\n" included) is discarded up to the next
    "\\n" and reported once as ``frame_too_long``; at most ``max_frame`` bytes of an
    unfinished line are ever buffered, so a peer that never sends "\\n" costs a
    bounded amount of memory.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._partial = bytearray()
        self._lines: deque[Any] = deque()
        self._discarding = False
        self._eof = False
        self.work = 0  # lines read that made no frame (blank ones): the loop charges them

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` means the peer closed (EOF)."""
        if not data:
            self._eof = True
            return
        if self._discarding:
            newline = data.find(b"\n")
            if newline < 0:
                return
            self._discarding = False
            data = data[newline + 1:]
        parts = data.split(b"\n")
        if len(parts) > 1:
            limit = self.max_frame  # a line plus its "\n" may be max_frame bytes
            first = bytes(self._partial) + parts[0] if self._partial else parts[0]
            self._partial.clear()
            lines = self._lines
            for line in (first, *parts[1:-1]):
                lines.append(line if len(line) < limit else _TOO_LONG)
        self._partial += parts[-1]
        if len(self._partial) >= self.max_frame:
            self._lines.append(_TOO_LONG)
            self._partial.clear()
            self._discarding = True

    @property
    def has_frames(self) -> bool:
        """Whether complete lines are waiting for ``next_event``."""
        return bool(self._lines)

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished frame held back (bounded by ``max_frame``)."""
        return len(self._partial)

    def next_event(self) -> Any:
        """Return the next frame, ``NEED_DATA`` or ``CLOSED``.

        Raises ``ProtocolError`` (``bad_frame`` or ``frame_too_long``) for a bad
        line; the line is consumed, so the next call goes on with the next one.
        """
        lines = self._lines
        blank = 0
        while lines:
            line = lines.popleft()
            if line is _TOO_LONG:
                raise ProtocolError(
                    "frame_too_long", f"A frame may be at most {self.max_frame} bytes.")
            if line.endswith(b"\r"):
                line = line[:-1]
            if line:
                return decode_frame(line)
            self.work += 1
            blank += 1
            if blank == LINES_PER_CALL:
                return NEED_DATA  # blank lines: a bounded turn, the rest in the next
        return CLOSED if self._eof else NEED_DATA


def decode_frame(line: bytes) -> JsonObject:
    """Parse one line (without its terminator) as a frame, strictly."""
    try:
        text = line.decode("utf-8")
        value = None
        if text[:1] == "{":  # the common case, an object and nothing around it: the
            try:             # scanner itself, without decode's two whitespace matches
                value, end = _SCAN(text, 0)
            except StopIteration:
                value = None
            else:
                if end != len(text):
                    value = None  # something after it: decode says what
        if value is None:
            value = _DECODER.decode(text)  # the rest, and every error's message
    except UnicodeDecodeError:
        raise ProtocolError("bad_frame", "A frame must be valid UTF-8.") from None
    except (ValueError, RecursionError):  # JSONDecodeError, NaN, huge ints, deep nesting
        raise ProtocolError("bad_frame", "A frame must be one JSON object.") from None
    if not isinstance(value, dict):
        raise ProtocolError("bad_frame", "A frame must be a JSON object.")
    if not isinstance(value.get("type"), str):
        raise ProtocolError("bad_frame", "A frame needs a string field 'type'.")
    return value


def encode(frame: JsonObject) -> bytes:
    """One frame as bytes on the wire: compact JSON, UTF-8, "\\n"-terminated."""
    return (_ENCODER.encode(frame) + "\n").encode("utf-8")


def encode_message(msg_id: int, ts: int, place: str, where: str, sender: str,
                   text: str) -> bytes:
    """``encode`` of a plain message frame (``place``: "room" or "to"), the same bytes
    written straight from a template: the one frame every message costs."""
    return b'{"type":"message","id":%d,"ts":%d,"%s":%s,"from":%s,"text":%s}\n' % (
        msg_id, ts, place.encode(), json_name(where), json_name(sender),
        _string(text).encode("utf-8"))


@lru_cache(maxsize=4096)  # the same few rooms and nicknames, in every message
def json_name(name: str) -> bytes:
    """A room name or nickname as a JSON string, in UTF-8."""
    return _string(name).encode("utf-8")


def with_ref(data: bytes, ref: str) -> bytes:
    """``encode(frame)`` of a frame with ``ref`` added last, from its bytes without it
    (the sender's copy of what everyone gets, without encoding the frame twice)."""
    return b"%s,\"ref\":%s}\n" % (data[:-2], _string(ref).encode("utf-8"))


# ---------------------------------------------------------------- names and text

def _is_clean(value: str) -> bool:
    """False when the string carries a lone surrogate (it is not valid Unicode)."""
    if value.isascii():  # the common case, without encoding it
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _normal_name(raw: str, max_len: int,
                 punctuation: frozenset[str] = NAME_PUNCTUATION) -> str | None:
    name = unicodedata.normalize("NFC", raw)
    if not 1 <= len(name) <= max_len:
        return None
    if all(ch.isalnum() or ch in punctuation for ch in name):
        return name
    return None


@lru_cache(maxsize=4096)  # names repeat (every send names its room): a pure function
def name_key(name: str) -> str:
    """The key two names are compared by: NFC, casefolded, NFC again."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def looks_reserved(nick: str) -> bool:
    """Whether ``nick`` is, or looks like, a reserved name: compatibility forms
    (fullwidth letters), letters of other scripts that look Latin, and "rn" for "m"
    all count, so that nobody can pose as the operator."""
    if name_key(nick) in RESERVED_NICKS:
        return True
    skeleton = unicodedata.normalize("NFKC", nick).casefold()
    skeleton = skeleton.translate(LOOKALIKES).replace("rn", "m")
    return skeleton in RESERVED_NICKS


@lru_cache(maxsize=4096)
def normal_nick(raw: str) -> str | None:
    """The NFC spelling of a valid nickname, or None when it is not valid."""
    nick = _normal_name(raw, MAX_NICK, NICK_PUNCTUATION)
    if nick is None or looks_reserved(nick):
        return None
    return nick


@lru_cache(maxsize=4096)
def normal_room(raw: str) -> str | None:
    """The NFC spelling of a valid room name, or None when it is not valid."""
    return _normal_name(raw, MAX_ROOM)


def check_text(text: str, max_text: int) -> None:
    """Raise ``bad_text``/``text_too_long`` unless ``text`` may be sent as is."""
    if not (text.isascii() or _is_clean(text)):
        raise ProtocolError("bad_text", "The text carries an invalid Unicode escape.")
    if not text.isprintable() and _CONTROL.search(text):  # (printable: no Cc at all)
        raise ProtocolError("bad_text", "The text may not carry control characters.")
    length = len(text.strip())
    if length == 0:
        raise ProtocolError("bad_text", "The text is empty.")
    if length > max_text:
        raise ProtocolError("text_too_long", f"A text may be at most {max_text} characters.")


# ---------------------------------------------------------------- request fields

def _field(frame: JsonObject, name: str, kind: type, *, required: bool) -> Any:
    if name not in frame and not required:
        return None
    value = frame.get(name)
    # bool is a subclass of int, but `true` is not an integer on the wire.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        wanted = {str: "a string", int: "an integer", bool: "true or false",
                  list: "a list"}[kind]
        raise ProtocolError("bad_field", f"'{name}' must be {wanted}.")
    if isinstance(value, str) and not (value.isascii() or _is_clean(value)):
        raise ProtocolError("bad_field", f"'{name}' carries an invalid Unicode escape.")
    return value


def _room(frame: JsonObject, name: str = "room") -> str:
    room = normal_room(_field(frame, name, str, required=True))
    if room is None:
        raise ProtocolError("bad_room", f"Room names are 1 to {MAX_ROOM} letters, "
                                        "digits, '_', '-' or '.'.")
    return room


def _nick(frame: JsonObject, name: str = "nick") -> str:
    nick = normal_nick(_field(frame, name, str, required=True))
    if nick is None:
        raise ProtocolError("bad_nick", f"Nicknames are 1 to {MAX_NICK} letters, digits "
                                        "or _-.[]\\^{}|` and not a reserved name.")
    return nick


def check_ref(frame: JsonObject) -> str | None:
    """The frame's ``ref``, or None; ``bad_field`` (without ref) when it is not valid."""
    if "ref" not in frame:
        return None
    ref = frame["ref"]
    if not isinstance(ref, str) or len(ref) > MAX_REF or not (ref.isascii() or
                                                              _is_clean(ref)):
        raise ProtocolError("bad_field", f"'ref' must be a string of at most {MAX_REF} "
                                         "characters.")
    return ref


# ---------------------------------------------------------------- requests
#
# Each client frame type is parsed once, at the door, into one of these: the handlers
# read typed fields, never the frame. Names are in NFC, defaults filled in.

@dataclass(slots=True)
class Hello:
    nick: str
    password: str | None
    rooms: list[str]  # valid names, each room once; [] joins none
    since: int | None
    client: str | None
    nick_password: str | None
    user: str | None = None  # *added:* IRC's user name and real name (WHOIS, WHO)
    realname: str | None = None
    features: frozenset[str] = frozenset()  # *added:* frames asked for ("owners")


@dataclass(slots=True)
class Send:
    room: str | None  # one of room and to
    to: str | None
    text: str
    action: bool
    notice: bool
    tags: dict[str, str] | None
    reply_to: int | None = None  # *added:* the id of the message it answers


@dataclass(slots=True)
class Change:
    """*Added:* `edit`, `delete` and `react`: a change to the message ``id``."""

    kind: str  # "edit", "delete", "react" or "unreact"
    id: int
    text: str = ""  # the new text (edit) or the emoji (react)


@dataclass(slots=True)
class MarkRead:
    """*Added:* `mark_read`: one has read ``room`` (or the conversation with ``to``)
    up to the message ``id``."""

    room: str | None
    to: str | None
    id: int | None  # None with ``ts`` None: a question (what is the marker now?)
    ts: int | None = None  # instead of ``id``: read up to this time (IRC's MARKREAD)


@dataclass(slots=True)
class TagMsg:
    room: str | None
    to: str | None
    tags: dict[str, str]


@dataclass(slots=True)
class InRoom:
    """`join`, `who` and `typing`: a room's name and nothing else."""

    room: str


@dataclass(slots=True)
class Join:
    """`join`; *added:* `since` (only messages after it are replayed) and `replay`
    (false: none, only `history_end`)."""

    room: str
    since: int | None = None
    replay: bool = True
    key: str | None = None  # *added:* the room's key, when it has one


@dataclass(slots=True)
class TopicSet:
    """`topic`: set (``topic``: "" clears it) or, without ``topic``, ask."""

    room: str
    topic: str | None


@dataclass(slots=True)
class ModeSet:
    """`mode`: a room's roles and settings changed (``changes``: (mode, on, arg)), or,
    without ``changes``, asked for (`room_info`)."""

    room: str
    changes: list[tuple[str, bool, str | None]] | None


@dataclass(slots=True)
class KickOut:
    """`kick`: ``nick`` out of ``room`` (not off the server), with ``reason``."""

    room: str
    nick: str
    reason: str | None


@dataclass(slots=True)
class Invite:
    room: str
    nick: str


@dataclass(slots=True)
class Part:
    room: str
    message: str | None


@dataclass(slots=True)
class Nick:
    nick: str
    nick_password: str | None


@dataclass(slots=True)
class Named:
    """`whois`, `whowas`: a nickname."""

    nick: str


@dataclass(slots=True)
class Who:
    """`who`: a room's roster; *added:* ``details`` (each member's user name, real
    name, away and roles: IRC's WHO)."""

    room: str | None  # one of room and mask
    details: bool = False
    mask: str | None = None  # *added:* users matching it (nickname glob: * and ?)


@dataclass(slots=True)
class Monitor:
    """`monitor`: follow nicknames coming online and going offline."""

    add: list[str]
    remove: list[str]
    clear: bool
    status: bool


@dataclass(slots=True)
class Oper:
    """`oper`: sign in as the server's operator."""

    name: str
    password: str


@dataclass(slots=True)
class Kill:
    """`kill`: the server's operator closes a user's connection."""

    nick: str
    reason: str | None


@dataclass(slots=True)
class Wallops:
    text: str


@dataclass(slots=True)
class Away:
    text: str  # "" when back


@dataclass(slots=True)
class Ison:
    nicks: list[str]


@dataclass(slots=True)
class Password:
    """`register`: the password of the account to make."""

    password: str


@dataclass(slots=True)
class Nothing:
    """`unregister`: no fields."""


@dataclass(slots=True)
class History:
    room: str | None  # one of room and peer (the frame's `with`)
    peer: str | None
    before: int | None
    after: int | None
    around: int | None
    before_ts: int | None
    after_ts: int | None
    around_ts: int | None
    oldest: bool
    limit: int


@dataclass(slots=True)
class Token:
    """`ping` and `pong`."""

    token: str | None


@dataclass(slots=True)
class Bye:
    reason: str | None


@dataclass(slots=True)
class Search:
    query: str


@dataclass(slots=True)
class Upload:
    room: str | None
    to: str | None
    name: str
    size: int
    sha256: str
    mime: str


@dataclass(slots=True)
class Chunk:
    upload: str
    offset: int
    data: str


@dataclass(slots=True)
class Download:
    file: str
    offset: int


@dataclass(slots=True)
class Rooms:
    after: str | None


Request = (Hello | Send | TagMsg | InRoom | Join | Part | Nick | Named | Away | Ison | Password
           | Nothing | History | Token | Bye | Search | Upload | Chunk | Download | Rooms
           | TopicSet | ModeSet | KickOut | Invite | Who | Oper | Kill | Wallops | Monitor
           | Change | MarkRead)


def _parse_hello(frame: JsonObject, max_text: int) -> Request:
    # The version is checked first: a later version may change the other fields.
    if _field(frame, "proto", int, required=True) != 1:
        raise ProtocolError("bad_proto", "This server speaks protocol version 1.")
    raw_nick = _field(frame, "nick", str, required=True)
    password = _field(frame, "password", str, required=False)
    raw_rooms = _field(frame, "rooms", list, required=False)
    since = _field(frame, "since", int, required=False)
    client = _field(frame, "client", str, required=False)
    nick_password = _field(frame, "nick_password", str, required=False)
    if raw_rooms is None:
        raw_rooms = [DEFAULT_ROOM]
    if not all(isinstance(r, str) and _is_clean(r) for r in raw_rooms):
        raise ProtocolError("bad_field", "'rooms' must be a list of strings.")
    if since is not None and not 0 <= since <= MAX_ID:
        raise ProtocolError("bad_field", f"'since' must be a message id (0 to {MAX_ID}).")
    nick = _nick({"nick": raw_nick})
    rooms: dict[str, str] = {}  # by key: a room named twice is joined once
    for raw in raw_rooms:
        room = normal_room(raw)
        if room is None:
            raise ProtocolError("bad_room", f"'{raw}' is not a valid room name.")
        rooms.setdefault(name_key(room), room)
    user = _field(frame, "user", str, required=False)
    realname = _field(frame, "realname", str, required=False)
    for name, value in (("user", user), ("realname", realname)):
        if value is not None and (len(value) > MAX_REALNAME or _CONTROL.search(value)):
            raise ProtocolError("bad_field", f"'{name}' is at most {MAX_REALNAME} "
                                             "characters, without control characters.")
    features = _field(frame, "features", list, required=False) or []
    if len(features) > 16 or not all(isinstance(f, str) and len(f) <= 32 for f in features):
        raise ProtocolError("bad_field", "'features' is a list of names.")
    return Hello(nick, password, list(rooms.values()), since, client, nick_password,
                 user or None, realname or None, frozenset(features))


def _parse_send(frame: JsonObject, max_text: int) -> Request:
    text = frame.get("text")
    if not isinstance(text, str):  # surrogates in it are bad_text, checked below
        raise ProtocolError("bad_field", "'text' must be a string.")
    has_room, has_to = "room" in frame, "to" in frame
    if has_room == has_to:
        raise ProtocolError("bad_field", "A send names either 'room' or 'to'.")
    # (fields most sends lack are looked for before a call: a send is the common frame)
    action = "action" in frame and _field(frame, "action", bool, required=True)
    notice = "notice" in frame and _field(frame, "notice", bool, required=True)
    if action and notice:
        raise ProtocolError("bad_field", "A message is an action or a notice, not both.")
    room = _room(frame) if has_room else None
    to = _nick(frame, "to") if has_to else None
    check_text(text, max_text)
    tags = client_tags(frame) if "tags" in frame else None
    reply_to = _message_id(frame, "reply_to") if "reply_to" in frame else None
    return Send(room, to, text, action, notice, tags, reply_to)


MAX_EMOJI = 32  # bytes of one reaction (an emoji, with its modifiers and joiners)


def _message_id(frame: JsonObject, name: str) -> int:
    value = _field(frame, name, int, required=True)
    if not 0 < value < 2**53:
        raise ProtocolError("bad_field", f"'{name}' must be a message id.")
    return value


def _parse_edit(frame: JsonObject, max_text: int) -> Request:
    text = frame.get("text")
    if not isinstance(text, str):
        raise ProtocolError("bad_field", "'text' must be a string.")
    check_text(text, max_text)
    return Change("edit", _message_id(frame, "id"), text)


def _parse_mark_read(frame: JsonObject, max_text: int) -> Request:
    has_room, has_to = "room" in frame, "to" in frame
    if has_room == has_to:
        raise ProtocolError("bad_field", "A mark_read names either 'room' or 'to'.")
    msg_id = _message_id(frame, "id") if "id" in frame else None
    ts = _field(frame, "ts", int, required=False)
    if ts is not None and (msg_id is not None or not 0 < ts < 2**53):
        raise ProtocolError("bad_field", "A mark_read names 'id' or 'ts' (ms), not both.")
    return MarkRead(_room(frame) if has_room else None, _nick(frame, "to") if has_to else None,
                    msg_id, ts)


def _parse_delete(frame: JsonObject, max_text: int) -> Request:
    return Change("delete", _message_id(frame, "id"))


def _parse_react(frame: JsonObject, max_text: int) -> Request:
    emoji = _field(frame, "emoji", str, required=True)
    on = _field(frame, "on", bool, required=False)
    if not emoji or len(emoji.encode("utf-8")) > MAX_EMOJI or any(
            c.isspace() or unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn")
            for c in emoji):
        raise ProtocolError("bad_field", f"'emoji' is one emoji (at most {MAX_EMOJI} "
                            "bytes, no spaces).")
    return Change("unreact" if on is False else "react", _message_id(frame, "id"),
                  unicodedata.normalize("NFC", emoji))


def client_tags(frame: JsonObject) -> dict[str, str]:
    """A frame's client tags (docs/protocol.md): ``+name`` keys with string values,
    ``MAX_TAGS`` bytes at most as IRC writes them."""
    tags = frame.get("tags")
    if not isinstance(tags, dict):
        raise ProtocolError("bad_field", "'tags' must be an object of strings.")
    size = 0
    for key, value in tags.items():
        if not isinstance(value, str) or not _is_clean(value) or "\0" in value \
                or TAG_KEY.fullmatch(key) is None:
            raise ProtocolError("bad_field", "'tags' are '+name' keys with string values.")
        size += len(key) + len(tag_escape(value).encode("utf-8")) + 2
    if size > MAX_TAGS:
        raise ProtocolError("bad_field", f"'tags' may take at most {MAX_TAGS} bytes.")
    return tags


def tag_escape(value: str) -> str:
    """A tag value as IRCv3 writes it."""
    return (value.replace("\\", "\\\\").replace(";", "\\:").replace(" ", "\\s")
            .replace("\r", "\\r").replace("\n", "\\n"))


def _parse_tagmsg(frame: JsonObject, max_text: int) -> Request:
    # docs/protocol.md, "Client tags": tags without a text, relayed and never stored.
    has_room, has_to = "room" in frame, "to" in frame
    if has_room == has_to:
        raise ProtocolError("bad_field", "A tagmsg names either 'room' or 'to'.")
    tags = client_tags(frame)
    if not tags:
        raise ProtocolError("bad_field", "A tagmsg carries at least one tag.")
    return TagMsg(_room(frame) if has_room else None,
                  _nick(frame, "to") if has_to else None, tags)


def _parse_whois(frame: JsonObject, max_text: int) -> Request:
    return Named(_nick(frame))


def _parse_away(frame: JsonObject, max_text: int) -> Request:
    # docs/protocol.md, "Away": a short text, or none (back).
    text = _field(frame, "text", str, required=False) or ""
    if text.strip():
        check_text(text, MAX_AWAY)
    return Away(text.strip())


def _parse_ison(frame: JsonObject, max_text: int) -> Request:
    nicks = _field(frame, "nicks", list, required=True)
    if len(nicks) > MAX_ISON or not all(isinstance(n, str) and _is_clean(n) for n in nicks):
        raise ProtocolError("bad_field", f"'nicks' must be a list of at most {MAX_ISON} "
                                         "strings.")
    return Ison(nicks)


def _parse_room_only(frame: JsonObject, max_text: int) -> Request:
    return InRoom(_room(frame))


def _parse_join(frame: JsonObject, max_text: int) -> Request:
    since = _field(frame, "since", int, required=False)
    if since is not None and not 0 <= since <= MAX_ID:
        raise ProtocolError("bad_field", f"'since' must be a message id (0 to {MAX_ID}).")
    replay = _field(frame, "replay", bool, required=False)
    key = _field(frame, "key", str, required=False)
    return Join(_room(frame), since, replay is not False, key)


# Rooms with owners (docs/protocol.md): each mode, and what its `arg` is.
ROLE_MODES = frozenset({"operator", "voice"})  # arg: a nickname
FLAG_MODES = frozenset({"moderated", "topic_lock", "invite_only", "no_outside", "secret"})
MODES = ROLE_MODES | FLAG_MODES | {"ban", "key", "limit"}
MAX_MODE_CHANGES = 12  # changes in one `mode` request (IRC's MODES=)
MAX_TOPIC = 300  # code points of a topic (IRC's TOPICLEN=)
MAX_KEY = 23  # characters of a room key (IRC's KEYLEN=); no spaces, commas or colons
MAX_MASK = 100  # characters of a room ban's mask
MAX_LIMIT = 1_000_000


def _change(item: Any) -> tuple[str, bool, str | None]:
    if not isinstance(item, dict):
        raise ProtocolError("bad_field", "Each change is an object: mode, on, arg.")
    mode = _field(item, "mode", str, required=True)
    if mode not in MODES:
        raise ProtocolError("bad_field", f"Unknown mode '{mode}'.")
    on = _field(item, "on", bool, required=True)
    arg = item.get("arg")
    if mode == "limit" and isinstance(arg, int) and not isinstance(arg, bool):
        arg = str(arg)
    if arg is not None and not isinstance(arg, str):
        raise ProtocolError("bad_field", "'arg' must be a string.")
    if mode in ROLE_MODES:
        arg = _nick({"nick": arg}) if arg is not None else None
        if arg is None:
            raise ProtocolError("bad_field", f"'{mode}' needs a nickname in 'arg'.")
    elif mode == "ban":
        if not arg or len(arg) > MAX_MASK or _CONTROL.search(arg) or " " in arg \
                or not _is_clean(arg):
            raise ProtocolError("bad_field", "'ban' needs a nickname, an address or a "
                                             "nick!user@host mask in 'arg'.")
    elif mode == "key" and on:
        if not arg or len(arg) > MAX_KEY or any(c in arg for c in " ,:") \
                or _CONTROL.search(arg) or not _is_clean(arg):
            raise ProtocolError("bad_field", f"A room key is 1 to {MAX_KEY} characters "
                                             "without spaces, commas or colons.")
    elif mode == "limit" and on:
        if arg is None or not arg.isdigit() or not 1 <= int(arg) <= MAX_LIMIT:
            raise ProtocolError("bad_field", f"'limit' needs a number of people (1 to "
                                             f"{MAX_LIMIT}) in 'arg'.")
    elif mode in FLAG_MODES or not on:
        arg = None
    return mode, on, arg


def _parse_mode(frame: JsonObject, max_text: int) -> Request:
    raw = _field(frame, "changes", list, required=False)
    if raw is not None and not 1 <= len(raw) <= MAX_MODE_CHANGES:
        raise ProtocolError("bad_field", f"'changes' lists 1 to {MAX_MODE_CHANGES} changes.")
    return ModeSet(_room(frame), [_change(item) for item in raw] if raw is not None else None)


def _parse_topic(frame: JsonObject, max_text: int) -> Request:
    topic = _field(frame, "topic", str, required=False)
    if topic is not None:
        topic = topic.strip()
        if topic:
            check_text(topic, MAX_TOPIC)
            if "\n" in topic:
                raise ProtocolError("bad_text", "A topic is one line.")
    return TopicSet(_room(frame), topic)


def _parse_kick(frame: JsonObject, max_text: int) -> Request:
    reason = _field(frame, "reason", str, required=False)
    if reason is not None and reason.strip():
        check_text(reason, MAX_TOPIC)
    return KickOut(_room(frame), _nick(frame), reason.strip() if reason else None)


def _parse_who(frame: JsonObject, max_text: int) -> Request:
    details = _field(frame, "details", bool, required=False) is True
    if "mask" in frame and "room" not in frame:
        mask = _field(frame, "mask", str, required=True)
        if not 1 <= len(mask) <= MAX_MASK or _CONTROL.search(mask):
            raise ProtocolError("bad_field", f"'mask' is 1 to {MAX_MASK} characters.")
        return Who(None, True, mask)
    return Who(_room(frame), details)


MAX_MONITOR = 100  # nicknames one connection follows (IRC's MONITOR=)


def _parse_monitor(frame: JsonObject, max_text: int) -> Request:
    lists = []
    for name in ("add", "remove"):
        raw = _field(frame, name, list, required=False) or []
        if len(raw) > MAX_MONITOR or not all(isinstance(n, str) for n in raw):
            raise ProtocolError("bad_field", f"'{name}' is a list of at most "
                                             f"{MAX_MONITOR} nicknames.")
        nicks = [normal_nick(n) for n in raw]
        if None in nicks:
            raise ProtocolError("bad_nick", "Only nicknames can be followed.")
        lists.append([n for n in nicks if n is not None])
    return Monitor(lists[0], lists[1], _field(frame, "clear", bool, required=False) is True,
                   _field(frame, "status", bool, required=False) is True)


def _parse_oper(frame: JsonObject, max_text: int) -> Request:
    return Oper(_field(frame, "name", str, required=True)[:100],
                _field(frame, "password", str, required=True)[:1000])


def _parse_kill(frame: JsonObject, max_text: int) -> Request:
    reason = _field(frame, "reason", str, required=False)
    if reason is not None and reason.strip():
        check_text(reason, MAX_TOPIC)
    return Kill(_nick(frame), reason.strip() if reason else None)


def _parse_wallops(frame: JsonObject, max_text: int) -> Request:
    text = _field(frame, "text", str, required=True)
    check_text(text, max_text)
    return Wallops(text)


def _parse_invite(frame: JsonObject, max_text: int) -> Request:
    return Invite(_room(frame), _nick(frame))


def _parse_part(frame: JsonObject, max_text: int) -> Request:
    # `message` (docs/protocol.md): a parting word, shown on the `left` the others see.
    message = _field(frame, "message", str, required=False)
    if message is not None:
        check_text(message, max_text)
    return Part(_room(frame), message)


def _parse_nick(frame: JsonObject, max_text: int) -> Request:
    nick_password = _field(frame, "nick_password", str, required=False)
    return Nick(_nick(frame), nick_password)


def _parse_register(frame: JsonObject, max_text: int) -> Request:
    return Password(_field(frame, "password", str, required=True))


def _id_or_time(frame: JsonObject, name: str) -> int | None:
    value = _field(frame, name, int, required=False)
    if value is not None and not 0 <= value <= MAX_ID:
        what = "a time in ms" if name.endswith("_ts") else "a message id"
        raise ProtocolError("bad_field", f"'{name}' must be {what} (0 to {MAX_ID}).")
    return value


def _parse_history(frame: JsonObject, max_text: int) -> Request:
    # `after`, `around`, `oldest` and the `_ts` bounds: docs/protocol.md, "History ranges".
    bounds = {name: _id_or_time(frame, name) for name in
              ("before", "after", "around", "before_ts", "after_ts", "around_ts")}
    if (bounds["around"] is not None or bounds["around_ts"] is not None) and any(
            bounds[n] is not None for n in ("before", "after", "before_ts", "after_ts")):
        raise ProtocolError("bad_field", "'around' goes without 'before' and 'after'.")
    if bounds["around"] is not None and bounds["around_ts"] is not None:
        raise ProtocolError("bad_field", "Give 'around' or 'around_ts', not both.")
    oldest = _field(frame, "oldest", bool, required=False) or False
    if ("room" in frame) == ("with" in frame):
        raise ProtocolError("bad_field", "A history request names either 'room' or 'with'.")
    limit = _field(frame, "limit", int, required=False)
    if limit is None:
        limit = HISTORY_LIMIT_DEFAULT
    if not 1 <= limit <= HISTORY_LIMIT_MAX:
        raise ProtocolError("bad_field", f"'limit' must be 1 to {HISTORY_LIMIT_MAX}.")
    room = _room(frame) if "room" in frame else None
    peer = None if room is not None else _nick(frame, "with")  # docs/protocol.md: direct
    return History(room, peer, **bounds, oldest=oldest, limit=limit)


def _parse_token(frame: JsonObject, max_text: int) -> Request:
    return Token(_field(frame, "token", str, required=False))


def _parse_bye(frame: JsonObject, max_text: int) -> Request:
    return Bye(_field(frame, "reason", str, required=False))


def _parse_empty(frame: JsonObject, max_text: int) -> Request:
    return Nothing()


def _parse_search(frame: JsonObject, max_text: int) -> Request:
    # docs/protocol.md, "Search": words and from:/in: filters, read by chat.search.
    query = _field(frame, "query", str, required=True)
    if len(query) > MAX_SEARCH:
        raise ProtocolError("bad_field", f"'query' may be at most {MAX_SEARCH} characters.")
    return Search(query)


def _sha256(frame: JsonObject, name: str) -> str:
    value = _field(frame, name, str, required=True).lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ProtocolError("bad_field", f"'{name}' must be a SHA-256 in hex (64 digits).")
    return value


def _offset(frame: JsonObject, name: str = "offset") -> int:
    value = _field(frame, name, int, required=False) or 0
    if not 0 <= value <= MAX_ID:
        raise ProtocolError("bad_field", f"'{name}' must be 0 to {MAX_ID}.")
    return value


def _parse_upload(frame: JsonObject, max_text: int) -> Request:
    # docs/protocol.md, "Files": an offer, then chunks.
    has_room, has_to = "room" in frame, "to" in frame
    if has_room == has_to:
        raise ProtocolError("bad_field", "An upload names either 'room' or 'to'.")
    name = _field(frame, "name", str, required=True)
    if not name.strip() or len(name) > 1000 or not _is_clean(name):
        raise ProtocolError("bad_field", "'name' must be a file name.")
    kind = _field(frame, "mime", str, required=False) or "application/octet-stream"
    return Upload(_room(frame) if has_room else None, _nick(frame, "to") if has_to else None,
                  name, _offset(frame, "size"), _sha256(frame, "sha256"),
                  kind if len(kind) <= 100 and _is_clean(kind) else "application/octet-stream")


def _parse_chunk(frame: JsonObject, max_text: int) -> Request:
    return Chunk(_field(frame, "upload", str, required=True), _offset(frame),
                 _field(frame, "data", str, required=True))


def _parse_download(frame: JsonObject, max_text: int) -> Request:
    return Download(_sha256(frame, "file"), _offset(frame))


def _parse_rooms(frame: JsonObject, max_text: int) -> Request:
    # `after` (docs/protocol.md): the next page of a long listing.
    return Rooms(_field(frame, "after", str, required=False))


PARSERS: dict[str, Callable[[JsonObject, int], Request]] = {
    "hello": _parse_hello,
    "send": _parse_send,
    "join": _parse_join,
    "part": _parse_part,
    "nick": _parse_nick,
    "who": _parse_who,
    "rooms": _parse_rooms,
    "history": _parse_history,
    "typing": _parse_room_only,
    "ping": _parse_token,
    "pong": _parse_token,
    "bye": _parse_bye,
    # Accounts (README, "Nickname accounts"): additive to protocol version 1.
    "register": _parse_register,
    "unregister": _parse_empty,
    "search": _parse_search,  # docs/protocol.md, "Search"
    "upload": _parse_upload,  # docs/protocol.md, "Files"
    "chunk": _parse_chunk,
    "download": _parse_download,
    "tagmsg": _parse_tagmsg,  # docs/protocol.md, "Client tags"
    "whois": _parse_whois,  # docs/protocol.md, "Who is online"
    "ison": _parse_ison,
    "away": _parse_away,  # docs/protocol.md, "Away"
    # docs/protocol.md, "Rooms with owners"
    "topic": _parse_topic,
    "mode": _parse_mode,
    "kick": _parse_kick,
    "invite": _parse_invite,
    "room_info": _parse_room_only,
    # docs/protocol.md, "The server's operator" and "Who was online"
    "oper": _parse_oper,
    "kill": _parse_kill,
    "wallops": _parse_wallops,
    "whowas": _parse_whois,
    "lusers": _parse_empty,
    "monitor": _parse_monitor,  # docs/protocol.md, "Who is online"
    # docs/protocol.md, "Replies, reactions, edits and deletes"
    "edit": _parse_edit,
    "delete": _parse_delete,
    "react": _parse_react,
    "mark_read": _parse_mark_read,
}


def parse_request(frame: JsonObject, max_text: int = MAX_TEXT) -> Request:
    """Validate a client frame of a known type; raise ``ProtocolError`` if it is bad.

    The result holds the normalised fields (names in NFC, defaults filled in).
    Chat-state checks (membership, nick taken, rate) are the server's.
    """
    parser = PARSERS.get(frame["type"])
    if parser is None:
        raise ProtocolError("unknown_type", f"Unknown frame type '{frame['type']}'.")
    return parser(frame, max_text)
