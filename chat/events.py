"""What the server says: one typed event per server frame type (docs/protocol.md).

The hub and the handlers make events; every door renders the same event in its own
form, once per form: JSON lines (``Event.data``, made at the first use and kept), a
WebSocket text frame of those lines, IRC lines (``chat.irc.IrcCodec``), an HTTP
refusal. No door reads JSON back.

A field whose default is None is left out of the JSON while it is None, and one whose
default is False while it is False (the protocol's optional fields); the others are
always there. ``ref`` comes last, as the protocol writes it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, NotRequired, TypedDict

from chat.protocol import encode, encode_message, with_ref
from chat.store import DELETE, EDIT, REACT


class Change(TypedDict):
    """One change of a room's roles or settings, as `mode` carries it."""

    mode: str
    on: bool
    arg: NotRequired[str]


class Member(TypedDict):
    """A user as `who` with `details` and `who_matches` describe them."""

    nick: str
    user: str
    realname: str
    away: str
    oper: bool
    host: str


class BanItem(TypedDict):
    mask: str
    by: str
    ts: int


class WhowasItem(TypedDict):
    nick: str
    user: str
    realname: str
    ts: int


class Settings(TypedDict):
    """A room's settings as `room_info` shows them (docs/protocol.md)."""

    moderated: bool
    topic_lock: bool
    invite_only: bool
    no_outside: bool
    secret: bool
    key: bool | str  # whether there is one; the key itself to operators
    limit: int | None


# Fields named otherwise in Python (a keyword, a method of Event): their wire names.
_WIRE_NAMES = {"sender": "from", "peer": "with", "lines_": "lines", "data_": "data"}
# Per class: (field, its name on the wire, 0: always, 1: unless None, 2: unless False)
_LAYOUTS: dict[type, tuple[tuple[str, str, int], ...]] = {}


def _layout(cls: type) -> tuple[tuple[str, str, int], ...]:
    found = _LAYOUTS.get(cls)
    if found is None:
        rows = []
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            rule = 1 if f.default is None else 2 if f.default is False else 0
            rows.append((f.name, _WIRE_NAMES.get(f.name, f.name), rule))
        rows.sort(key=lambda row: row[0] == "ref")  # `ref` last, as the protocol has it
        found = _LAYOUTS[cls] = tuple(rows)
    return found


@dataclass(slots=True, eq=False)
class Event:
    """A server frame. Subclasses are slotted dataclasses with a ``type``; ``ref`` (the
    request it answers) is given by keyword, and the line is kept once made."""

    type: ClassVar[str]
    ref: str | None = field(default=None, kw_only=True)
    _data: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def fields(self) -> dict[str, Any]:
        """The frame as a JSON object (for JSON: ``data`` is what goes out)."""
        out: dict[str, Any] = {"type": self.type}
        for name, wire, rule in _layout(type(self)):
            value = getattr(self, name)
            if (rule == 1 and value is None) or (rule == 2 and value is False):
                continue
            out[wire] = value
        return out

    @property
    def data(self) -> bytes:
        """The frame as one JSON line: made once, whoever gets it."""
        data = self._data
        if data is None:
            data = self._data = self.render()
        return data

    def render(self) -> bytes:
        return encode(self.fields())

    def lines(self) -> list[bytes]:
        """Its JSON lines, each without its "\\n" (one, but for a ``Replay``)."""
        return [self.data[:-1]]

    def answering(self, ref: str | None) -> Event:
        """The same event as the answer to ``ref`` (itself when ref is None)."""
        if ref is None:
            return self
        return dataclasses.replace(self, ref=ref)

    def unanswered(self) -> Event:
        """The same event as everyone else gets it (without ``ref``)."""
        if self.ref is None:
            return self
        return dataclasses.replace(self, ref=None)


class Message(Event):
    """A message (to a room, or ``to`` someone). Written by hand rather than as a
    dataclass: every message makes one or two, so they are made positionally and
    their line from a template."""

    type: ClassVar[str] = "message"
    __slots__ = ("id", "ts", "room", "to", "sender", "text", "action", "notice", "file",
                 "tags", "history", "away", "about", "change", "edited", "deleted",
                 "reactions", "about_from")

    def __init__(self, id: int, ts: int, room: str | None, to: str | None, sender: str,
                 text: str, action: bool = False, notice: bool = False,
                 file: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
                 history: bool = False, away: str | None = None,
                 ref: str | None = None, *, about: int | None = None, change: int = 0,
                 edited: int | None = None, deleted: bool = False,
                 reactions: dict[str, list[str]] | None = None,
                 about_from: str | None = None) -> None:
        self.id, self.ts, self.room, self.to = id, ts, room, to
        self.sender, self.text, self.action, self.notice = sender, text, action, notice
        self.file, self.tags, self.history = file, tags, history
        self.away = away  # the sender's copy of a direct message to someone away
        self.ref = ref
        # ``about``: the id it answers (`reply_to`); with ``change`` (chat.store's EDIT
        # and after) it is not a message but a change to the message ``about``, on the
        # same road (one order, stored, shared), told as `edited`, `deleted` or
        # `reaction` (``Change.event``)
        self.about, self.change = about, change
        self.edited, self.deleted, self.reactions = edited, deleted, reactions  # history
        self.about_from = about_from  # who sent what it answers (`reply_from`)
        self._data: bytes | None = None

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message", "id": self.id, "ts": self.ts}
        if self.room is not None:
            out["room"] = self.room
        else:
            out["to"] = self.to
        out["from"], out["text"] = self.sender, self.text
        for name in ("action", "notice", "history", "deleted"):
            if getattr(self, name):
                out[name] = True
        if self.about is not None and not self.change:
            out["reply_to"] = self.about
            if self.about_from is not None:
                out["reply_from"] = self.about_from
        for name in ("file", "tags", "away", "edited", "reactions", "ref"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def render(self) -> bytes:
        if self.action or self.notice or self.file is not None or self.tags \
                or self.history or self.away is not None or self.about is not None:
            return encode(self.fields())
        # the one frame every message costs: written from a template
        if self.room is not None:
            data = encode_message(self.id, self.ts, "room", self.room, self.sender, self.text)
        else:
            data = encode_message(self.id, self.ts, "to", self.to or "", self.sender,
                                  self.text)
        return data if self.ref is None else with_ref(data, self.ref)

    def answering(self, ref: str | None, away: str | None = None) -> Message:
        """The sender's copy: the same message with ``ref`` (and ``away``: its
        recipient is away), its line made from this one's without encoding it again."""
        if ref is None and away is None:
            return self
        echo = Echo(self, ref, away)
        if away is None and ref is not None and self.ref is None and self.away is None:
            echo._data = with_ref(self.data, ref)  # the common case, made at once
        return echo

    def unanswered(self) -> Message:
        if self.ref is None and self.away is None:
            return self
        return Message(self.id, self.ts, self.room, self.to, self.sender, self.text,
                       self.action, self.notice, self.file, self.tags, self.history,
                       about=self.about, edited=self.edited, deleted=self.deleted,
                       reactions=self.reactions, about_from=self.about_from)

    def __repr__(self) -> str:
        return f"<Message {self.id} {self.sender} -> {self.room or self.to}>"


class Echo(Message):
    """A sender's copy of a message: the message, with ``ref`` (and ``away``). Made
    for every message sent, so it keeps a reference instead of copying the fields."""

    __slots__ = ("message",)

    def __init__(self, message: Message, ref: str | None, away: str | None) -> None:
        self.message, self.ref, self.away = message, ref, away
        self._data = None

    def render(self) -> bytes:
        message = self.message
        if self.away is None and self.ref is not None and message.ref is None \
                and message.away is None:
            return with_ref(message.data, self.ref)
        return encode(self.fields())

    def whole(self) -> Message:
        """A message with every field of its own (for a door that reads them often)."""
        m = self.message
        return Message(m.id, m.ts, m.room, m.to, m.sender, m.text, m.action, m.notice,
                       m.file, m.tags, m.history, self.away, self.ref, about=m.about,
                       edited=m.edited, deleted=m.deleted, reactions=m.reactions,
                       about_from=m.about_from)

    # the message's fields, read through (slots of Message shadowed here)
    id = property(lambda self: self.message.id)
    ts = property(lambda self: self.message.ts)
    room = property(lambda self: self.message.room)
    to = property(lambda self: self.message.to)
    sender = property(lambda self: self.message.sender)
    text = property(lambda self: self.message.text)
    action = property(lambda self: self.message.action)
    notice = property(lambda self: self.message.notice)
    file = property(lambda self: self.message.file)
    tags = property(lambda self: self.message.tags)
    history = property(lambda self: self.message.history)
    about = property(lambda self: self.message.about)
    change = property(lambda self: self.message.change)
    edited = property(lambda self: self.message.edited)
    deleted = property(lambda self: self.message.deleted)
    reactions = property(lambda self: self.message.reactions)
    about_from = property(lambda self: self.message.about_from)


@dataclass(slots=True, eq=False)
class Changed(Event):
    """*Added:* a change to a message (``id``: the change's own place in the order;
    ``target``: the message), in its room or direct conversation."""

    id: int
    target: int
    ts: int
    room: str | None = field(default=None, kw_only=True)
    to: str | None = field(default=None, kw_only=True)
    history: bool = field(default=False, kw_only=True)


@dataclass(slots=True, eq=False)
class Edited(Changed):
    """*Added:* a message's text was changed by its author."""

    type: ClassVar[str] = "edited"
    by: str
    text: str


@dataclass(slots=True, eq=False)
class Deleted(Changed):
    """*Added:* a message was taken back (by its author or a room operator)."""

    type: ClassVar[str] = "deleted"
    by: str


@dataclass(slots=True, eq=False)
class Reaction(Changed):
    """*Added:* ``nick`` reacted to a message with ``emoji`` (``on``) or took it back."""

    type: ClassVar[str] = "reaction"
    nick: str
    emoji: str
    on: bool


def change_event(change: Message, history: bool = False) -> Event:
    """How a change (a ``Message`` with ``change``, chat.store's kinds) is told."""
    assert change.about is not None
    head = (change.id, change.about, change.ts)
    room, to = change.room, change.to
    if change.change == EDIT:
        return Edited(*head, change.sender, change.text, room=room, to=to, history=history)
    if change.change == DELETE:
        return Deleted(*head, change.sender, room=room, to=to, history=history)
    return Reaction(*head, change.sender, change.text, change.change == REACT, room=room,
                    to=to, history=history)


@dataclass(slots=True, eq=False)
class ReadMarker(Event):
    """*Added:* how far one has read a conversation (answering `mark_read`, and after
    `welcome` for each conversation a registered nickname has read)."""

    type: ClassVar[str] = "read"
    id: int  # 0: nothing read yet
    room: str | None = None
    to: str | None = None
    ts: int | None = None  # when the message ``id`` was sent (IRC's MARKREAD says it)


@dataclass(slots=True, eq=False)
class Replay(Event):
    """Stored messages sent again, oldest first (history): rendered one by one."""

    type: ClassVar[str] = "message"
    messages: list[Message]  # (and `edited`, `deleted`, `reaction`: catching up)

    def render(self) -> bytes:
        return b"".join([m.data for m in self.messages])

    def lines(self) -> list[bytes]:
        return [m.data[:-1] for m in self.messages]

    def __len__(self) -> int:
        return len(self.messages)


@dataclass(slots=True, eq=False)
class Welcome(Event):
    type: ClassVar[str] = "welcome"
    nick: str
    server: str
    motd: str
    limits: dict[str, int | float]
    account: bool = False  # signed in to its nickname's account
    nodes: list[str] | None = None  # the chat's other servers (a cluster)
    counts: dict[str, int] | None = None  # *added:* as `lusers` says, to IRC clients


@dataclass(slots=True, eq=False)
class Counts(Event):
    """How many are here (IRC's LUSERS): users online (every node), operators signed
    in, connections not registered yet, rooms, nodes."""

    type: ClassVar[str] = "lusers"
    users: int
    operators: int
    unknown: int
    rooms: int
    servers: int
    most: int = 0  # the most users online at once since the server started

    def numbers(self) -> dict[str, int]:
        return {"users": self.users, "operators": self.operators, "unknown": self.unknown,
                "rooms": self.rooms, "servers": self.servers, "most": self.most}


@dataclass(slots=True, eq=False)
class WhowasAnswer(Event):
    """Who held a nickname lately (newest first): nick, user, realname, left (ms)."""

    type: ClassVar[str] = "whowas"
    nick: str
    entries: list[WhowasItem]


@dataclass(slots=True, eq=False)
class Presence(Event):
    """Followed nicknames (`monitor`) that are online or offline: the status asked
    for, and each change as it happens."""

    type: ClassVar[str] = "presence"
    online: list[str]
    offline: list[str]


@dataclass(slots=True, eq=False)
class MonitorList(Event):
    """The answer to `monitor`: every nickname this connection follows."""

    type: ClassVar[str] = "monitor"
    nicks: list[str]


@dataclass(slots=True, eq=False)
class OperAnswer(Event):
    type: ClassVar[str] = "oper"
    name: str


@dataclass(slots=True, eq=False)
class HistoryEnd(Event):
    type: ClassVar[str] = "history_end"
    room: str | None = None
    peer: str | None = None  # direct history: with whom
    more: bool = False


@dataclass(slots=True, eq=False)
class Joined(Event):
    type: ClassVar[str] = "joined"
    room: str
    nick: str
    ts: int


@dataclass(slots=True, eq=False)
class Left(Event):
    type: ClassVar[str] = "left"
    room: str
    nick: str
    reason: str
    ts: int
    message: str | None = None
    by: str | None = None  # *added:* who kicked (reason "kicked" from a room)


@dataclass(slots=True, eq=False)
class Renamed(Event):
    type: ClassVar[str] = "renamed"
    old: str
    new: str
    ts: int


@dataclass(slots=True, eq=False)
class Users(Event):
    type: ClassVar[str] = "users"
    room: str
    users: list[str]
    operators: list[str] | None = None  # *added:* the room's operators among them
    voiced: list[str] | None = None  # *added:* those given voice
    members: list[Member] | None = None  # *added:* asked with `details`
    secret: bool = False  # *added:* the room is secret (left out of `rooms`)
    converging: bool = False  # *added:* a cluster node settling who is where after a gap


@dataclass(slots=True, eq=False)
class WhoMatches(Event):
    """The answer to `who` with a `mask`: users whose nickname (or IRC user name, or
    real name) matches, each as `users`' `members` are; at most WHO_MATCHES."""

    type: ClassVar[str] = "who_matches"
    mask: str
    members: list[Member]
    more: bool = False


@dataclass(slots=True, eq=False)
class WallopsLine(Event):
    """A message from the server's operator to operators and those who asked for them
    (IRC's WALLOPS, user mode +w)."""

    type: ClassVar[str] = "wallops"
    nick: str
    text: str


@dataclass(slots=True, eq=False)
class Topic(Event):
    """A room's topic: set (to everyone in the room), or on join and when asked.
    ``topic`` "" is no topic."""

    type: ClassVar[str] = "topic"
    room: str
    topic: str
    by: str | None = None
    ts: int | None = None


@dataclass(slots=True, eq=False)
class ModeChange(Event):
    """Roles or settings of a room changed; ``changes``: {"mode","on","arg"?} each."""

    type: ClassVar[str] = "mode"
    room: str
    by: str
    changes: list[Change]
    ts: int


@dataclass(slots=True, eq=False)
class RoomInfo(Event):
    """A room's settings (docs/protocol.md, "Rooms with owners")."""

    type: ClassVar[str] = "room_info"
    room: str
    topic: str
    settings: Settings
    created: int
    bans: list[BanItem] | None = None
    topic_by: str | None = None
    topic_ts: int | None = None


@dataclass(slots=True, eq=False)
class Invited(Event):
    """``nick`` was invited to ``room`` by ``by``: to the invitee, and (with ref) the
    inviter."""

    type: ClassVar[str] = "invited"
    room: str
    nick: str
    by: str
    ts: int


@dataclass(slots=True, eq=False)
class RoomList(Event):
    type: ClassVar[str] = "rooms"
    rooms: list[dict[str, str | int]]  # each: name, users
    more: bool = False


@dataclass(slots=True, eq=False)
class Typing(Event):
    type: ClassVar[str] = "typing"
    room: str
    nick: str


@dataclass(slots=True, eq=False)
class Notice(Event):
    type: ClassVar[str] = "notice"
    text: str
    ts: int


@dataclass(slots=True, eq=False)
class Kicked(Event):
    type: ClassVar[str] = "kicked"
    reason: str


@dataclass(slots=True, eq=False)
class Error(Event):
    type: ClassVar[str] = "error"
    code: str
    message: str


@dataclass(slots=True, eq=False)
class Ping(Event):
    type: ClassVar[str] = "ping"
    token: str


@dataclass(slots=True, eq=False)
class Pong(Event):
    type: ClassVar[str] = "pong"
    token: str | None = None


@dataclass(slots=True, eq=False)
class IrcLines(Event):
    """An IRC door's own answer (lines it wrote itself), in its place among the
    answers: only IRC connections get it."""

    type: ClassVar[str] = "irc"
    lines_: list[str]


@dataclass(slots=True, eq=False)
class TagRelay(Event):
    type: ClassVar[str] = "tagmsg"
    tag_id: str
    ts: int
    sender: str
    tags: dict[str, str]
    room: str | None = None
    to: str | None = None


@dataclass(slots=True, eq=False)
class WhoisAnswer(Event):
    type: ClassVar[str] = "whois"
    nick: str
    rooms: list[str]
    since: int
    door: str
    account: bool  # always said
    more: bool = False
    away: str | None = None
    user: str | None = None  # *added:* IRC's user name and real name, when given
    realname: str | None = None
    idle: int | None = None  # *added:* seconds since its last message (on this node)
    oper: bool = False  # *added:* signed in as the server's operator
    roles: dict[str, str] | None = None  # *added:* room -> "operator" or "voice"


@dataclass(slots=True, eq=False)
class AwayAnswer(Event):
    type: ClassVar[str] = "away"
    nick: str
    text: str | None = None


@dataclass(slots=True, eq=False)
class IsonAnswer(Event):
    type: ClassVar[str] = "ison"
    nicks: list[str]
    away: list[str] | None = None


@dataclass(slots=True, eq=False)
class SearchResults(Event):
    type: ClassVar[str] = "search_results"
    query: str
    results: list[dict[str, Any]]  # each: id, ts, from, text, snippet, room or to
    more: bool  # always said


@dataclass(slots=True, eq=False)
class Registered(Event):
    type: ClassVar[str] = "registered"
    nick: str


@dataclass(slots=True, eq=False)
class Unregistered(Event):
    type: ClassVar[str] = "unregistered"
    nick: str


@dataclass(slots=True, eq=False)
class UploadReady(Event):
    type: ClassVar[str] = "upload_ready"
    upload: str
    offset: int


@dataclass(slots=True, eq=False)
class UploadProgress(Event):
    type: ClassVar[str] = "upload_progress"
    upload: str
    received: int


@dataclass(slots=True, eq=False)
class FileData(Event):
    type: ClassVar[str] = "file_data"
    file: str
    offset: int
    data_: str  # base64
    end: bool = False


def _kinds(cls: type[Event]) -> set[str]:
    found = {cls.type} if "type" in vars(cls) else set()
    for sub in cls.__subclasses__():
        found |= _kinds(sub)
    return found


EVENT_TYPES = frozenset(_kinds(Event))  # every server frame type
