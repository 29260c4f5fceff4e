"""IRC clients in the same rooms: the IRC front door (RFC 1459/2812, IRCv3 caps).

``IrcDoor`` reads IRC lines and gives the hub protocol frames (``PRIVMSG #general``
is a `send` to `general`); what IRC asks that the protocol has no frame for (CAP,
USER, MODE and TOPIC queries, AWAY, SASL's exchange) it answers itself, through the
hub's output (``say``) so that its answers keep their place among the hub's.
``IrcCodec`` writes the hub's frames as IRC lines. Codecs of connections that
negotiated the same capabilities share their broadcast bytes (``share_key``): a
room's batch is written once per set of capabilities, not per member; what names its
recipient (numerics, answers, labels) is written per connection.

Requests and their answers are tied by ``ref``: each frame the door makes carries a
ref that ``IrcCodec.asked`` maps to the IRC command (and its label, when the client
uses labeled-response), so an answer or an error comes back as that command's
numerics. IRCv3: server-time, message-tags (client tags relayed, msgid = the message
id), echo-message, batch, labeled-response, draft/chathistory backed by the store,
SASL PLAIN for nickname accounts, multi-prefix, userhost-in-names.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chat.events import (
    EVENT_TYPES,
    AwayAnswer,
    Counts,
    Deleted,
    Echo,
    Edited,
    Error,
    Event,
    HistoryEnd,
    Invited,
    IrcLines,
    IsonAnswer,
    Joined,
    Kicked,
    Left,
    Message,
    ModeChange,
    MonitorList,
    Notice,
    OperAnswer,
    Ping,
    Pong,
    Presence,
    Reaction,
    ReadMarker,
    Renamed,
    Replay,
    RoomInfo,
    RoomList,
    TagRelay,
    Topic,
    Typing,
    Users,
    WallopsLine,
    Welcome,
    WhoisAnswer,
    WhoMatches,
    WhowasAnswer,
)
from chat.model import Peer
from chat.protocol import (
    CLOSED,
    MAX_KEY,
    MAX_MODE_CHANGES,
    MAX_MONITOR,
    MAX_TOPIC,
    NEED_DATA,
    TAG_KEY,
    JsonObject,
    normal_nick,
    tag_escape,
)
from chat.rules import MAX_BANS, flag_string, mode_string, parse_modes

SERVER = "lanchat"  # the server's name in prefixes
MAX_TAG_DATA = 4096  # IRCv3 message-tags: a client's tags, '@' and ' ' included
MAX_LINE = 8191 + 512  # tags up to 8191 bytes (the server's share too), then the message
MAX_ASKED = 256  # requests remembered for their answers, per connection
MAX_BODY = 512  # RFC 1459: a line without its tags, CR-LF included
MAX_TARGETS = 4  # PRIVMSG/NOTICE/TAGMSG targets in one command (TARGMAX)
MAX_SASL = 1200  # bytes of a SASL response (sent in 400-byte pieces)
HISTORY_MAX = 200  # docs/protocol.md: the most a `history` request returns (CHATHISTORY=)
LINES_PER_CALL = 32  # lines read per next_event, requests or not (a bounded turn)
TOO_LONG = b"\x00too long"  # in place of a line past MAX_LINE (it is dropped)
# multi-prefix and userhost-in-names: lanchat has no channel prefixes, and NAMES gives
# full masks when asked
CAPS = ("server-time", "message-tags", "echo-message", "batch", "labeled-response",
        "draft/chathistory", "sasl", "multi-prefix", "userhost-in-names", "away-notify",
        "draft/message-redaction", "draft/read-marker")
CAP_VALUES = {"sasl": "PLAIN"}  # shown to clients that speak CAP 302
# Two 005 lines (a numeric carries at most 13 tokens)
ISUPPORT = (
    "CHANTYPES=# CASEMAPPING=ascii NICKLEN=24 CHANNELLEN=33 "
    f"TOPICLEN={MAX_TOPIC} KEYLEN={MAX_KEY} KICKLEN={MAX_TOPIC} AWAYLEN=200 "
    f"PREFIX=(ov)@+ CHANMODES=b,k,l,imnst MODES={MAX_MODE_CHANGES} MAXLIST=b:{MAX_BANS}",
    f"WHOX MONITOR={MAX_MONITOR} SAFELIST TARGMAX=PRIVMSG:{MAX_TARGETS},NOTICE:{MAX_TARGETS},"
    f"TAGMSG:{MAX_TARGETS},JOIN:,PART:,NAMES:,WHOIS:1 "
    f"CHATHISTORY={HISTORY_MAX} MSGREFTYPES=msgid,timestamp")
NUMERIC_OF = {  # protocol error codes as IRC numerics (the rest become NOTICEs)
    "nick_taken": "433", "bad_nick": "432", "nick_registered": "433",
    "not_in_room": "442", "no_such_user": "401", "bad_room": "403",
    "not_registered": "451", "auth_failed": "464", "banned": "465",
    "already_registered": "462", "no_such_room": "403", "not_operator": "482",
    "moderated": "404", "banned_from_room": "474", "invite_only": "473",
    "bad_key": "475", "room_full": "471", "ban_list_full": "478", "bad_oper": "464",
    "no_oper": "491", "not_oper": "481", "monitor_full": "734",
}
NO_TARGET = frozenset({"464", "481", "491"})  # numerics with a text and nothing else
# Errors about a nickname in a channel: "<nick> <channel> :text"
NICK_IN_ROOM = {"user_not_in_room": "441", "already_in_room": "443"}
# Which answer ends each command (an error ends any): what labeled-response waits for.
ENDS = {
    "JOIN": "history_end", "CHATHISTORY": "history_end", "PART": "left",
    "PRIVMSG": "message", "NOTICE": "message", "TAGMSG": "tagmsg", "NAMES": "users",
    "WHO": "users", "LIST": "rooms", "NICK": "renamed", "REGISTER": "welcome",
    "SASL": "welcome", "PING": "pong", "WHOIS": "whois", "ISON": "ison", "AWAY": "away",
    "USERHOST": "ison", "TOPIC": "topic", "MODE": "room_info", "MODESET": "mode",
    "KICK": "left", "INVITE": "invited", "WHOWAS": "whowas", "LUSERS": "lusers",
    "OPER": "oper", "WHOMASK": "who_matches", "KILL": "irc", "WALLOPS": "wallops",
    "MONITOR": "monitor", "REDACT": "deleted", "REACT": "reaction", "MARKREAD": "read",
}
QUITS = {"quit": "Quit", "disconnected": "Connection closed", "timeout": "Ping timeout",
         "banned": "Banned"}
TIMESTAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,3})\d*)?Z?")


def tag_unescape(value: str) -> str:
    out, chars = [], iter(value)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            out.append({":": ";", "s": " ", "r": "\r", "n": "\n"}.get(nxt, nxt))
        else:
            out.append(char)
    return "".join(out)


def split_line(line: str) -> tuple[dict[str, str], str | None, str, list[str]]:
    """(tags, source, command, params) of one IRC line (RFC 1459 with IRCv3 tags)."""
    tags: dict[str, str] = {}
    if line.startswith("@"):
        raw, _, line = line[1:].partition(" ")
        for item in raw.split(";"):
            key, _, value = item.partition("=")
            if key:
                tags[key] = tag_unescape(value)
        line = line.lstrip(" ")
    source = None
    if line.startswith(":"):
        source, _, line = line[1:].partition(" ")
        line = line.lstrip(" ")
    trailing = None
    if " :" in line:
        line, _, trailing = line.partition(" :")
    elif line.startswith(":"):
        line, trailing = "", line[1:]
    params = line.split()
    command = params.pop(0).upper() if params else ""
    if trailing is not None:
        params.append(trailing)
    return tags, source, command, params


_second = [-1, ""]  # the last second written, and how


def number(text: str) -> int | None:
    """``text`` as a whole number if it is 1 to 18 ASCII digits (``"²".isdigit()`` holds)."""
    return int(text) if 0 < len(text) < 19 and text.isascii() and text.isdigit() else None


def irc_time(ms: int) -> str:
    second = ms // 1000
    if second != _second[0]:
        _second[:] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_second[1]}.{ms % 1000:03d}Z"


def parse_time(text: str) -> int | None:
    """An IRCv3 timestamp (``2026-11-30T12:00:00.123Z``) in ms, or None."""
    match = TIMESTAMP.fullmatch(text)
    if match is None:
        return None
    *fields, millis = match.groups()
    try:
        seconds = calendar.timegm((*(int(f) for f in fields), 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    return seconds * 1000 + int((millis or "0").ljust(3, "0"))


def _batch_of(line: str, sign: str = "+") -> str | None:
    """The id of the batch ``line`` opens (``sign`` "-": closes), or None."""
    _, _, command, params = split_line(line)
    if command == "BATCH" and params and params[0].startswith(sign):
        return params[0][1:]
    return None


def tagged(line: str, tag: str) -> str:
    """``line`` with one more tag."""
    return f"@{tag};{line[1:]}" if line.startswith("@") else f"@{tag} {line}"


def text_pieces(text: str, limit: int) -> list[str]:
    """A text as IRC can carry it: one piece per line, long lines cut (at a space
    when there is one) into pieces of at most ``limit`` bytes."""
    if len(text) * 4 <= limit and "\n" not in text:  # short: fits however it encodes
        return [text]
    pieces = []
    for line in text.split("\n"):
        while len(line.encode("utf-8")) > limit:
            cut = len(line.encode("utf-8")[:limit].decode("utf-8", "ignore"))
            space = line.rfind(" ", 0, cut)
            cut = space + 1 if space > cut // 2 else cut
            pieces.append(line[:cut])
            line = line[cut:]
        pieces.append(line)
    return pieces


class Label:
    """A labeled command (IRCv3 labeled-response) waiting for its answers."""

    __slots__ = ("text", "waiting", "batch")

    def __init__(self, text: str) -> None:
        self.text = text
        self.waiting = 0  # frames of the command still to be answered
        self.batch: str | None = None  # the batch its answers are in, once opened


class Asked:
    """What a ref was for: the IRC command, its target, its label."""

    __slots__ = ("cmd", "target", "label", "sub")

    def __init__(self, cmd: str, target: str, label: Label | None, sub: str = "") -> None:
        self.cmd, self.target, self.label, self.sub = cmd, target, label, sub


class IrcCodec:
    """Hub frames (JSON lines) as IRC lines for one connection."""

    farewell = b"ERROR :Closing link\r\n"  # the server's last line before it closes
    marks = True  # IRC lines cannot be read back into messages: the hub notes them

    def __init__(self, server_name: str) -> None:
        self.server_name = server_name
        self.nick = "*"  # the recipient, for numerics; "*" until welcomed
        self.caps: frozenset[str] = frozenset()
        # Codecs with equal keys write a broadcast alike: the capabilities, or the codec
        # itself while an answer of its own is under way (see the end of ``wire``)
        self.share_key: Any = ("irc", self.caps)
        self._key = self.share_key  # what share_key is between answers
        self.asked: dict[str, Asked] = {}  # ref -> what it asked
        self.motd = ""
        self.account = False  # signed in to its nickname's account
        self.negotiating = False  # CAP negotiation holds the welcome (SASL comes first)
        self.held: list[str] = []  # the welcome's lines, while negotiating
        self._batches = 0
        self._open: Label | None = None  # a labeled batch open across frames
        self._history: list[str] = []  # a replay's lines, until its history_end

    def pieces(self, wired: bytes) -> list[tuple[bytes, bytes]]:
        return [(b"", wired)]  # (never read back: its messages are marked)

    def enable(self, caps: frozenset[str]) -> None:
        self.caps = caps
        self.share_key = self._key = ("irc", caps)

    def render(self, events: Sequence[Event]) -> list[bytes]:
        """Each event as IRC lines (a piece each, b"" for none)."""
        pieces: list[bytes] = []
        for event in events:
            out: list[str] = []
            self._write(event, out)
            pieces.append(("\r\n".join(out) + "\r\n").encode("utf-8", "replace")
                          if out else b"")
        # mid-answer (a labeled batch, a replay before its end) its lines are its own
        self.share_key = self if self._open is not None or self._history else self._key
        return pieces

    def _write(self, event: Event, out: list[str]) -> None:
        if isinstance(event, Replay):  # stored messages: written at their history_end
            for message in event.messages:
                if isinstance(message, Message):
                    self._message(message, self._history, None)
                else:  # a change made since the client was last here
                    WRITERS[message.type](self, message, self._history, None)
            return
        if isinstance(event, Echo):
            event = event.whole()  # its fields are read many times below
        kind = event.type
        write = WRITERS.get(kind)
        if write is None:
            return
        ref = event.ref
        if ref is None and self._open is None:  # a broadcast: the common case
            if isinstance(event, Message) and event.history:
                write(self, event, self._history, None)  # written at its history_end
            else:
                write(self, event, out, None)
            return
        asked = self.asked.get(ref) if ref is not None else None
        produced: list[str] = []
        if asked is not None and isinstance(event, (Message, TagRelay)) \
                and event.to == event.sender == self.nick and "echo-message" in self.caps:
            write(self, event.unanswered(), out, None)  # to itself: received, then
        write(self, event, produced, asked)                  # its echo
        if isinstance(event, Message) and event.history:
            self._history.extend(produced)
            return
        ends = asked is not None and (kind in ("error", "irc")
                                      or ENDS.get(asked.cmd) == kind)
        if ends:
            assert ref is not None
            del self.asked[ref]
        out.extend(self._label(produced, asked, ends))

    # ------------------------------------------------------------ labels and batches

    def _new_batch(self) -> str:
        self._batches += 1
        return f"lc{self._batches}"

    def _label(self, produced: list[str], asked: Asked | None, ends: bool) -> list[str]:
        """The lines of one frame, with the label of the command they answer (one
        line: tagged; none: ACK; more: a labeled-response batch), or in the open
        batch they belong to."""
        label = asked.label if asked is not None else None
        if label is None:
            if self._open is not None and self._open.batch is not None:
                return [tagged(text, f"batch={self._open.batch}") for text in produced]
            return produced
        if label.batch is None and ends and label.waiting <= 1:
            label.waiting = 0
            if not produced:
                return [f"@label={tag_escape(label.text)} :{self.server_name} ACK"]
            first = produced[0]
            if len(produced) == 1 or _batch_of(first) == _batch_of(produced[-1], "-"):
                return [tagged(first, f"label={tag_escape(label.text)}"), *produced[1:]]
            batch = self._new_batch()
            return [f"@label={tag_escape(label.text)} :{self.server_name} BATCH +{batch} "
                    "labeled-response",
                    *(tagged(text, f"batch={batch}") for text in produced),
                    f":{self.server_name} BATCH -{batch}"]
        out = []
        if label.batch is None:
            label.batch = self._new_batch()
            self._open = label
            out.append(f"@label={tag_escape(label.text)} :{self.server_name} BATCH "
                       f"+{label.batch} labeled-response")
        out.extend(tagged(text, f"batch={label.batch}") for text in produced)
        if ends:
            label.waiting -= 1
            if label.waiting <= 0:
                out.append(f":{self.server_name} BATCH -{label.batch}")
                if self._open is label:
                    self._open = None
        return out

    # ------------------------------------------------------------ helpers

    def _tags(self, event: Event, msgid: Any = None) -> str:
        tags = []
        ts = getattr(event, "ts", None)
        if "server-time" in self.caps and ts is not None:
            tags.append(f"time={irc_time(ts)}")
        if "message-tags" in self.caps:
            if msgid is None:
                msgid = getattr(event, "id", None)
            if msgid is not None:
                tags.append(f"msgid={msgid}")
            about = getattr(event, "about", None)  # a reply: the message it answers
            client = getattr(event, "tags", None) or {}
            if about is not None and "+draft/reply" not in client:
                tags.append(f"+draft/reply={about}")
            for key, value in client.items():
                tags.append(f"{key}={tag_escape(value)}" if value else key)
        return "@" + ";".join(tags) + " " if tags else ""

    def _numeric(self, out: list[str], code: str, *params: str) -> None:
        *middle, last = (self.nick, *params)
        out.append(f":{self.server_name} {code} {' '.join(middle)} :{last}")

    @staticmethod
    def _mask(nick: str) -> str:
        return f"{nick}!{nick}@lanchat"

    def _own_echo(self, event: Message | TagRelay) -> bool:
        """A copy of this connection's own message that it did not ask to see."""
        return (event.ref is not None and event.sender == self.nick
                and "echo-message" not in self.caps
                and not (isinstance(event, Message) and event.history)
                and event.to != self.nick)  # to itself: it is also received

    # ------------------------------------------------------------ frames

    def _welcome(self, event: Welcome, out: list[str], asked: Asked | None) -> None:
        self.nick = event.nick
        self.motd = event.motd or ""
        self.account = event.account
        lines: list[str] = []
        name = event.server or SERVER
        self._numeric(lines, "001", f"Welcome to {name}, {self.nick}")
        self._numeric(lines, "002", f"Your host is {self.server_name}, running lanchat")
        self._numeric(lines, "003", "This server is a lanchat server")
        lines.append(f":{self.server_name} 004 {self.nick} {self.server_name} lanchat iow "
                     "biklmnostv bklov")
        self.isupport_lines(lines, name)
        if event.counts is not None:
            c = event.counts
            self._lusers(Counts(c["users"], c["operators"], c["unknown"], c["rooms"],
                                c["servers"], c.get("most", 0)), lines, None)
        self.motd_lines(lines)
        if asked is not None and asked.cmd == "SASL":
            if self.account:
                out.append(f":{self.server_name} 900 {self.nick} {self._mask(self.nick)} "
                           f"{self.nick} :You are now logged in as {self.nick}")
                self._numeric(out, "903", "SASL authentication successful")
            else:  # signed in, but the nickname has no account to log in to
                self._numeric(out, "904", "SASL authentication failed: "
                              f"'{self.nick}' has no account here")
        if self.negotiating:
            self.held.extend(lines)
        else:
            out.extend(lines)

    def isupport_lines(self, out: list[str], name: str) -> None:
        network = name.replace(" ", "_")
        for tokens in (ISUPPORT[0], f"{ISUPPORT[1]} NETWORK={network}"):
            out.append(f":{self.server_name} 005 {self.nick} {tokens}"
                       " :are supported by this server")

    def motd_lines(self, out: list[str]) -> None:
        if self.motd:
            self._numeric(out, "375", f"- {self.server_name} Message of the day -")
            for text in self.motd.splitlines():
                self._numeric(out, "372", f"- {text}")
            self._numeric(out, "376", "End of /MOTD command.")
        else:
            self._numeric(out, "422", "MOTD File is missing")

    def _message(self, event: Message, out: list[str], asked: Asked | None) -> None:
        if event.away is not None:  # a direct message to someone away (the sender's copy)
            self._numeric(out, "301", event.to or "*", event.away)
        if self._own_echo(event):
            return  # its own message: only echoed to those who asked for it
        sender = event.sender
        target = f"#{event.room}" if event.room is not None else event.to or self.nick
        text = event.text
        if event.file is not None:
            text = f"[file] {text} ({event.file.get('size', 0)} bytes)"
        if event.deleted:  # (history) what stands in its place
            text = "(message deleted)"
        elif event.edited:
            text = f"{text} (edited)"
        if event.about_from and "message-tags" not in self.caps \
                and not text.startswith(f"{event.about_from}:"):
            text = f"{event.about_from}: {text}"  # a reply, as IRC people write one
        command = "NOTICE" if event.notice else "PRIVMSG"
        tags = self._tags(event)
        prefix = f":{sender}!{sender}@lanchat {command} {target} :"
        action = event.action
        if "\n" not in text and (len(text) + len(prefix) + 9) * 4 <= MAX_BODY - 2:
            # one line, short enough however it encodes: the common case
            out.append(f"{tags}{prefix}\x01ACTION {text}\x01" if action
                       else f"{tags}{prefix}{text}")
            return
        room = MAX_BODY - 2 - len(prefix.encode("utf-8")) - (9 if action else 0)
        for part in text_pieces(text, max(room, 64)):
            out.append(f"{tags}{prefix}\x01ACTION {part}\x01" if action
                       else f"{tags}{prefix}{part}")

    # docs/protocol.md, "IRC": replies and reactions as IRCv3's +draft/reply and
    # +draft/react client tags, deletes as draft/message-redaction's REDACT, edits and
    # (without those) deletes as a NOTICE line from the one who made the change.

    def _change_target(self, event: Edited | Deleted | Reaction) -> str:
        """Where the change shows: its channel, or in a direct conversation the
        other one (who made it is the line's source)."""
        if event.room is not None:
            return f"#{event.room}"
        actor = event.nick if isinstance(event, Reaction) else event.by
        return (event.to or self.nick) if actor == self.nick else self.nick

    def _edited(self, event: Edited, out: list[str], asked: Asked | None) -> None:
        target = self._change_target(event)
        tags = self._tags(event, event.id)
        reply = f"+draft/reply={event.target}" if "message-tags" in self.caps else ""
        if reply:
            tags = f"{tags[:-1]};{reply} " if tags else f"@{reply} "
        prefix = f"{tags}:{self._mask(event.by)} NOTICE {target} :(edited) "
        room = MAX_BODY - 2 - len(prefix.encode("utf-8"))
        for part in text_pieces(event.text, max(room, 64)):
            out.append(prefix + part)

    def _deleted(self, event: Deleted, out: list[str], asked: Asked | None) -> None:
        target = self._change_target(event)
        if "draft/message-redaction" in self.caps:
            out.append(f"{self._tags(event, event.id)}:{self._mask(event.by)} REDACT "
                       f"{target} {event.target}")
        else:
            out.append(f"{self._tags(event, event.id)}:{self._mask(event.by)} NOTICE "
                       f"{target} :(deleted a message: {event.target})")

    def _reaction(self, event: Reaction, out: list[str], asked: Asked | None) -> None:
        if "message-tags" not in self.caps:
            return  # a reaction has no line of its own
        target = self._change_target(event)
        kind = "+draft/react" if event.on else "+draft/unreact"
        tags = self._tags(event, event.id)
        extra = f"{kind}={tag_escape(event.emoji)};+draft/reply={event.target}"
        tags = f"{tags[:-1]};{extra} " if tags else f"@{extra} "
        out.append(f"{tags}:{self._mask(event.nick)} TAGMSG {target}")

    def _read(self, event: ReadMarker, out: list[str], asked: Asked | None) -> None:
        if "draft/read-marker" not in self.caps:
            return
        target = f"#{event.room}" if event.room is not None else event.to
        when = f"timestamp={irc_time(event.ts)}" if event.ts else "*"
        out.append(f":{self.server_name} MARKREAD {target} {when}")

    def _tagmsg(self, event: TagRelay, out: list[str], asked: Asked | None) -> None:
        if "message-tags" not in self.caps or self._own_echo(event):
            return
        target = f"#{event.room}" if event.room is not None else event.to or self.nick
        out.append(f"{self._tags(event, event.tag_id)}:{self._mask(event.sender)} "
                   f"TAGMSG {target}")

    def _history_end(self, event: HistoryEnd, out: list[str],
                     asked: Asked | None) -> None:
        lines, self._history = self._history, []
        asked_for = asked is not None and asked.cmd == "CHATHISTORY"
        if not asked_for and "server-time" not in self.caps:
            return  # a replay without times would read as said now: modern clients ask
        if "batch" in self.caps and (lines or asked_for):
            batch = self._new_batch()
            target = asked.target if asked_for and asked is not None \
                else f"#{event.room}"
            out.append(f":{self.server_name} BATCH +{batch} chathistory {target}")
            out.extend(tagged(text, f"batch={batch}") for text in lines)
            out.append(f":{self.server_name} BATCH -{batch}")
        else:
            out.extend(lines)

    def _joined(self, event: Joined, out: list[str], asked: Asked | None) -> None:
        out.append(f"{self._tags(event)}:{self._mask(event.nick)} JOIN #{event.room}")

    def _left(self, event: Left, out: list[str], asked: Asked | None) -> None:
        why = event.reason
        message = event.message or ""
        nick, room = event.nick, f"#{event.room}"
        if why == "kicked":
            source = self._mask(event.by) if event.by and event.by != "server" \
                else self.server_name
            out.append(f"{self._tags(event)}:{source} KICK {room} {nick} "
                       f":{message or 'Kicked'}")
        elif why == "part":
            tail = f" :{message}" if message else ""
            out.append(f"{self._tags(event)}:{self._mask(nick)} PART {room}{tail}")
        else:  # gone from the server: one QUIT per room it shared (clients take the first)
            out.append(f"{self._tags(event)}:{self._mask(nick)} QUIT "
                       f":{message or QUITS.get(why, why)}")

    def _renamed(self, event: Renamed, out: list[str], asked: Asked | None) -> None:
        if event.old == self.nick:
            self.nick = event.new
        out.append(f"{self._tags(event)}:{self._mask(event.old)} NICK {event.new}")

    def _prefixes(self, event: Users) -> dict[str, str]:
        """Each member's prefix in NAMES and WHO: "@", "+", both (multi-prefix)."""
        marks: dict[str, str] = {}
        for nick in event.voiced or ():
            marks[nick] = "+"
        for nick in event.operators or ():
            marks[nick] = "@+" if nick in marks and "multi-prefix" in self.caps else "@"
        return marks

    def _users(self, event: Users, out: list[str], asked: Asked | None) -> None:
        room = f"#{event.room}"
        marks = self._prefixes(event)
        if asked is not None and asked.cmd == "WHO":
            for member in event.members or ({"nick": n} for n in event.users):
                self._who_line(out, room, member, marks.get(member["nick"], ""),
                               asked.sub)
            self._numeric(out, "315", asked.target, "End of /WHO list.")
            return
        users = event.users
        names = " ".join(marks.get(n, "") + self._mask(n) for n in users) \
            if "userhost-in-names" in self.caps else \
            " ".join(marks.get(n, "") + n for n in users)
        kind = "@" if event.secret else "="
        out.append(f":{self.server_name} 353 {self.nick} {kind} {room} :{names}")
        if asked is None or asked.sub != "more":  # NAMES of many: one end for all
            end = asked.sub if asked is not None and asked.sub else room
            self._numeric(out, "366", end, "End of /NAMES list.")

    def _who_line(self, out: list[str], room: str, member: Mapping[str, Any], mark: str,
                  whox: str) -> None:
        """One WHO line: 352, or 354 with the fields WHOX asked for (``%tcuhnfar,T``)."""
        nick = member["nick"]
        user = member.get("user") or nick
        flags = ("G" if member.get("away") else "H") + ("*" if member.get("oper") else "") \
            + mark
        realname = member.get("realname") or nick
        if not whox:
            self._numeric(out, "352", room, user, "lanchat", self.server_name, nick, flags,
                          f"0 {realname}")
            return
        fields, _, token = whox.partition(",")
        values = {"t": token or "0", "c": room, "u": user, "i": "255.255.255.255",
                  "h": "lanchat", "s": self.server_name, "n": nick, "f": flags,
                  "d": "0", "l": "0", "a": nick if member.get("account") else "0",
                  "o": "n/a", "r": realname}
        params = [values[c] for c in "tcuihsnfdlaor" if c in fields]
        if not params:
            return
        if " " in params[-1] or params[-1].startswith(":") or not params[-1]:
            self._numeric(out, "354", *params)
        else:
            out.append(f":{self.server_name} 354 {self.nick} {' '.join(params)}")

    def _topic(self, event: Topic, out: list[str], asked: Asked | None) -> None:
        room = f"#{event.room}"
        if asked is None or asked.sub == "set":  # a change: everyone in the room
            source = self._mask(event.by) if event.by and event.by != "server" \
                else self.server_name
            out.append(f"{self._tags(event)}:{source} TOPIC {room} :{event.topic}")
            return
        if not event.topic:
            self._numeric(out, "331", room, "No topic is set")
            return
        self._numeric(out, "332", room, event.topic)
        if event.by:
            out.append(f":{self.server_name} 333 {self.nick} {room} {event.by} "
                       f"{(event.ts or 0) // 1000}")

    def _mode(self, event: ModeChange, out: list[str], asked: Asked | None) -> None:
        if not event.changes:
            return  # nothing changed (IRC says nothing)
        source = self._mask(event.by) if event.by != "server" else self.server_name
        out.append(f"{self._tags(event)}:{source} MODE #{event.room} "
                   f"{mode_string(event.changes)}")

    def _room_info(self, event: RoomInfo, out: list[str], asked: Asked | None) -> None:
        room = f"#{event.room}"
        if asked is not None and asked.sub == "b":
            for ban in event.bans or ():
                out.append(f":{self.server_name} 367 {self.nick} {room} {ban['mask']} "
                           f"{ban['by']} {int(ban['ts']) // 1000}")
            self._numeric(out, "368", room, "End of channel ban list")
            return
        out.append(f":{self.server_name} 324 {self.nick} {room} "
                   f"{flag_string(event.settings)}")
        out.append(f":{self.server_name} 329 {self.nick} {room} {event.created // 1000}")

    def _invited(self, event: Invited, out: list[str], asked: Asked | None) -> None:
        room = f"#{event.room}"
        if asked is not None:  # the inviter's answer
            out.append(f":{self.server_name} 341 {self.nick} {event.nick} {room}")
            return
        source = self._mask(event.by) if event.by != "server" else self.server_name
        out.append(f"{self._tags(event)}:{source} INVITE {event.nick} {room}")

    def _lusers(self, event: Counts, out: list[str], asked: Asked | None) -> None:
        self._numeric(out, "251", f"There are {event.users} users and 0 invisible on "
                      f"{event.servers} servers")
        self._numeric(out, "252", str(event.operators), "operator(s) online")
        self._numeric(out, "253", str(event.unknown), "unknown connection(s)")
        self._numeric(out, "254", str(event.rooms), "channels formed")
        self._numeric(out, "255", f"I have {event.users} clients and {event.servers} "
                      "servers")
        most = max(event.most, event.users)
        self._numeric(out, "265", str(event.users), str(most),
                      f"Current local users {event.users}, max {most}")
        self._numeric(out, "266", str(event.users), str(most),
                      f"Current global users {event.users}, max {most}")

    def _whowas(self, event: WhowasAnswer, out: list[str], asked: Asked | None) -> None:
        entries = event.entries
        if not entries:
            self._numeric(out, "406", event.nick, "There was no such nickname")
        count = number(asked.sub) if asked is not None and asked.sub else None
        if count is not None and count > 0:
            entries = entries[:count]
        for entry in entries:
            out.append(f":{self.server_name} 314 {self.nick} {entry['nick']} "
                       f"{entry['user']} lanchat * :{entry['realname'] or entry['nick']}")
            self._numeric(out, "312", entry["nick"], self.server_name,
                          irc_time(entry["ts"]))
        self._numeric(out, "369", event.nick, "End of WHOWAS")

    def _who_matches(self, event: WhoMatches, out: list[str], asked: Asked | None) -> None:
        for member in event.members:
            self._who_line(out, "*", member, "", asked.sub if asked is not None else "")
        self._numeric(out, "315", event.mask, "End of /WHO list.")

    def _presence(self, event: Presence, out: list[str], asked: Asked | None) -> None:
        if event.online:
            self._numeric(out, "730", ",".join(self._mask(n) for n in event.online))
        if event.offline:
            self._numeric(out, "731", ",".join(event.offline))

    def _monitor(self, event: MonitorList, out: list[str], asked: Asked | None) -> None:
        if asked is None or asked.sub != "L":
            return  # (the list is the answer to MONITOR L only)
        for start in range(0, len(event.nicks), 20):
            self._numeric(out, "732", ",".join(event.nicks[start:start + 20]))
        self._numeric(out, "733", "End of MONITOR list")

    def _wallops(self, event: WallopsLine, out: list[str], asked: Asked | None) -> None:
        out.append(f"{self._tags(event)}:{self._mask(event.nick)} WALLOPS :{event.text}")

    def _oper(self, event: OperAnswer, out: list[str], asked: Asked | None) -> None:
        self._numeric(out, "381", "You are now an IRC operator")
        out.append(f":{self.nick} MODE {self.nick} :+o")

    def _rooms(self, event: RoomList, out: list[str], asked: Asked | None) -> None:
        self._numeric(out, "321", "Channel", "Users  Name")
        for room in event.rooms:
            self._numeric(out, "322", f"#{room['name']}", str(room["users"]), "")
        self._numeric(out, "323", "End of /LIST")

    def _whois(self, event: WhoisAnswer, out: list[str], asked: Asked | None) -> None:
        nick = event.nick
        self._numeric(out, "311", nick, event.user or nick, "lanchat", "*",
                      event.realname or nick)
        if event.rooms:
            marks = {"operator": "@", "voice": "+"}
            roles = event.roles or {}
            self._numeric(out, "319", nick, " ".join(
                f"{marks.get(roles.get(r, ''), '')}#{r}" for r in event.rooms))
        door = {"irc": "IRC", "web": "a browser"}.get(event.door, "lanchat")
        self._numeric(out, "312", nick, self.server_name, f"connected with {door}")
        if event.away:
            self._numeric(out, "301", nick, event.away)
        if event.oper:
            self._numeric(out, "313", nick, "is an IRC operator")
        if event.account:
            self._numeric(out, "330", nick, nick, "is logged in as")
        self._numeric(out, "317", nick, str(event.idle or 0), str(event.since // 1000),
                      "seconds idle, signon time")
        self._numeric(out, "318", nick, "End of /WHOIS list.")

    def _away(self, event: AwayAnswer, out: list[str], asked: Asked | None) -> None:
        if asked is None and event.nick != self.nick:  # away-notify: another's change
            tail = f" :{event.text}" if event.text else ""
            out.append(f"{self._tags(event)}:{self._mask(event.nick)} AWAY{tail}")
            return
        if event.text:
            self._numeric(out, "306", "You have been marked as being away")
        else:
            self._numeric(out, "305", "You are no longer marked as being away")

    def _ison(self, event: IsonAnswer, out: list[str], asked: Asked | None) -> None:
        if asked is not None and asked.cmd == "USERHOST":  # nick=+user@host, - if away
            away = set(event.away or ())
            self._numeric(out, "302", " ".join(
                f"{n}={'-' if n in away else '+'}{n}@lanchat" for n in event.nicks))
            return
        self._numeric(out, "303", " ".join(event.nicks))

    def _typing(self, event: Typing, out: list[str], asked: Asked | None) -> None:
        if "message-tags" in self.caps:
            out.append(f"@+typing=active :{self._mask(event.nick)} TAGMSG #{event.room}")

    def _notice(self, event: Notice, out: list[str], asked: Asked | None) -> None:
        # a broadcast (the bytes are shared): to "*", not to a nickname
        out.append(f"{self._tags(event)}:{self.server_name} NOTICE * :{event.text}")

    def _kicked(self, event: Kicked, out: list[str], asked: Asked | None) -> None:
        out.append(f"ERROR :Closing link: {event.reason}")
        self.farewell = b""  # the reason was the last word

    def _ping(self, event: Ping, out: list[str], asked: Asked | None) -> None:
        out.append(f"PING :{event.token}")

    def _pong(self, event: Pong, out: list[str], asked: Asked | None) -> None:
        out.append(f":{self.server_name} PONG {self.server_name} :{event.token or ''}")

    def _irc(self, event: IrcLines, out: list[str], asked: Asked | None) -> None:
        out.extend(event.lines_)  # the door's own answer, in its place

    def _error(self, event: Error, out: list[str], asked: Asked | None) -> None:
        code, message = event.code, event.message
        cmd, target = (asked.cmd, asked.target) if asked is not None else ("", "*")
        if cmd == "NOTICE":
            return  # RFC 1459: a NOTICE is never answered, errors included
        if cmd == "SASL":
            self._numeric(out, "904", f"SASL authentication failed: {message}")
            if code not in ("auth_failed", "banned", "server_full", "bad_proto"):
                return  # the connection stays: it may register without an account
        elif cmd == "CHATHISTORY":
            why = "MESSAGE_ERROR" if code in ("store_failed", "rate_limited") \
                else "INVALID_TARGET"
            out.append(f":{self.server_name} FAIL CHATHISTORY {why} {asked.sub if asked else ''}"
                       f" {target} :{message}")
            return
        elif cmd == "PRIVMSG" and code == "not_in_room":
            self._numeric(out, "404", target, message)  # cannot send to channel
            return
        elif cmd in ("NAMES", "WHO"):  # of a channel that does not exist: an empty list
            end = ("366", "End of /NAMES list.") if cmd == "NAMES" else \
                ("315", "End of /WHO list.")
            self._numeric(out, end[0], target, end[1])
            return
        elif cmd == "WHOIS" and code == "no_such_user":
            self._numeric(out, "401", target, "No such nick")
            self._numeric(out, "318", target, "End of /WHOIS list.")
            return
        elif code in NICK_IN_ROOM and asked is not None:
            self._numeric(out, NICK_IN_ROOM[code], asked.sub, target, message)
            return
        elif cmd in ("INVITE", "KICK", "MODESET") and code == "no_such_user" \
                and asked is not None:
            self._numeric(out, "401", asked.sub or "*", "No such nick")
            return
        elif cmd == "NAMES" and asked is not None and asked.sub == "more":
            return  # (one 366 ends the answer for all the channels asked)
        elif cmd == "REDACT" and asked is not None:  # draft/message-redaction's answers
            why = {"no_such_message": "UNKNOWN_MSGID",
                   "not_allowed": "REDACT_FORBIDDEN"}.get(code, "INVALID_TARGET")
            out.append(f":{self.server_name} FAIL REDACT {why} {target} {asked.sub} "
                       f":{message}")
            return
        numeric = NUMERIC_OF.get(code)
        if numeric in NO_TARGET:
            self._numeric(out, numeric, message)
        elif numeric is not None and cmd != "SASL":
            self._numeric(out, numeric, target or "*", message)
        elif code in ("server_full", "internal_error", "bad_proto", "auth_failed",
                      "banned", "tls_required"):
            out.append(f"ERROR :{message}")  # the connection closes on it
            self.farewell = b""
        else:
            out.append(f":{self.server_name} NOTICE {self.nick} :{message}")


# Each event type's writer (``IrcCodec._<type>``), looked up once; types without one
# (search results, file transfers) are not shown on IRC
WRITERS: dict[str, Callable[..., None]] = {
    kind: getattr(IrcCodec, f"_{kind}") for kind in EVENT_TYPES
    if hasattr(IrcCodec, f"_{kind}")}


class IrcDoor:
    """IRC lines in, protocol frames out (``next_event``, as ``FrameDecoder``)."""

    def __init__(self, peer: Peer, codec: IrcCodec, max_line: int = MAX_LINE,
                 say: Callable[[Event], None] | None = None) -> None:
        self.peer = peer
        self.codec = codec
        self.max_line = max_line
        self.say = say if say is not None else peer.queue  # frames to this connection
        self._buffer = bytearray()
        self._lines: deque[bytes] = deque()
        self._frames: deque[JsonObject] = deque()
        self._eof = False
        self._skipping = False
        self.work = 0  # lines read that made no request: the loop charges them
        self.nick: str | None = None
        self.user = False
        self.username = ""  # USER's user name and real name, told in the hello
        self.realname = ""
        self.password: str | None = None
        self.cap_version = 0  # 302 when the client said CAP LS 302
        self.registered = False  # its hello is sent
        self.sasl: bytearray | None = None  # a SASL PLAIN response being received
        self._refs = 0
        self._label: Label | None = None  # the label of the command being read
        self._replies: list[str] = []  # the door's own answer to that command
        peer.door = "irc"
        peer.wants_owners = True  # (IRC clients know topics, modes and invitations)
        peer.wants_edits = True  # (shown as tags, REDACT or NOTICE lines: _edited...)

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
            return
        self._buffer += data
        *lines, rest = self._buffer.split(b"\n")
        self._buffer = bytearray(rest)
        for line in lines:
            if self._skipping:
                self._skipping = False
                continue
            if len(line) <= self.max_line:
                self._lines.append(bytes(line).rstrip(b"\r"))
            else:
                self._lines.append(TOO_LONG)
        if len(self._buffer) > self.max_line:  # no end of line in sight: drop it
            self._buffer.clear()
            self._skipping = True

    @property
    def has_frames(self) -> bool:
        return bool(self._lines or self._frames)

    def next_event(self) -> Any:
        """The next request, ``NEED_DATA`` or ``CLOSED``. Lines the door answers itself
        (CAP, MODE, unknown commands, empty lines) make no request: at most
        ``LINES_PER_CALL`` of them are read per call, so that a connection's turn in a
        pass is bounded however many such lines it sent (``has_frames`` stays true:
        the rest wait for its next turn)."""
        for _ in range(LINES_PER_CALL):
            if self._frames or not self._lines:
                break
            self._command(self._lines.popleft().decode("utf-8", "replace"))
            if not self._frames:
                self.work += 1  # a line the door answered itself (or dropped)
        if self._frames:
            return self._frames.popleft()
        return CLOSED if self._eof and not self._lines else NEED_DATA

    # ------------------------------------------------------------ commands

    def _reply(self, text: str) -> None:
        self._replies.append(text)

    def _numeric(self, code: str, *params: str) -> None:
        *middle, last = (self.codec.nick if self.codec.nick != "*" else self.nick or "*",
                         *params)
        self._reply(f":{self.codec.server_name} {code} {' '.join(middle)} :{last}")

    def _ref(self, asked: str, target: str, sub: str = "", labeled: bool = True) -> str:
        """A ref for a request, remembering what it was for its answer or error."""
        self._refs += 1
        ref = f"irc{self._refs}"
        label = self._label if labeled else None
        if label is not None:
            label.waiting += 1
        asked_refs = self.codec.asked
        asked_refs[ref] = Asked(asked, target, label, sub)
        while len(asked_refs) > MAX_ASKED:  # answers come in order: the oldest are done
            gone = asked_refs.pop(next(iter(asked_refs)))
            if gone.label is not None and self.codec._open is gone.label:
                self.codec._open = None  # never answered: its batch is not waited for
        return ref

    def _frame(self, **frame: Any) -> None:
        self._frames.append(frame)

    def _command(self, line: str) -> None:
        if not line or line.isspace():
            return
        body = line
        if line[0] == "@":
            head, _, body = line.partition(" ")
            if len(head.encode("utf-8")) + 1 > MAX_TAG_DATA:
                self._finish_with("417", "Input line was too long")
                return
        if line[0] == "\x00" or (len(body) * 4 + 2 > MAX_BODY  # (4: UTF-8's longest)
                                 and len(body.encode("utf-8")) + 2 > MAX_BODY):
            self._finish_with("417", "Input line was too long")  # (TOO_LONG starts "\0")
            return
        if line.startswith("PRIVMSG ") and self.codec.nick != "*":
            target, colon, text = line[8:].partition(" :")  # the common line, at once
            if colon and target and " " not in target:
                self._replies = []
                self._cmd_privmsg([target, text], {})
                if self._replies:
                    self._say(self._replies, None)
                    self._replies = []
                return
        tags, _, command, params = split_line(line)
        label = tags.get("label") if tags else None
        self._label = Label(label[:64]) if label and "labeled-response" in self.codec.caps \
            else None
        self._replies = []
        try:
            self._run(command, params, tags)
        finally:
            label_obj, self._label = self._label, None
            replies, self._replies = self._replies, []
            if label_obj is not None and (replies or label_obj.waiting == 0):
                self._say(replies, self._ref_for(label_obj))  # in the labeled answer
            elif replies:
                self._say(replies, None)

    def _ref_for(self, label: Label) -> str:
        self._label = label
        try:
            return self._ref("", "")
        finally:
            self._label = None

    def _say(self, lines: list[str], ref: str | None) -> None:
        self.say(IrcLines(lines, ref=ref))

    def _finish_with(self, code: str, text: str) -> None:
        self._replies = []
        self._numeric(code, text)
        self._say(self._replies, None)
        self._replies = []

    def _run(self, command: str, params: list[str], tags: dict[str, str]) -> None:
        handler = getattr(self, f"_cmd_{command.lower()}", None)
        if handler is None:
            if self.codec.nick != "*":
                self._numeric("421", command, "Unknown command")
            return
        if self.codec.nick == "*" and command not in ("CAP", "NICK", "USER", "PASS", "PING",
                                                      "QUIT", "PONG", "AUTHENTICATE"):
            self._numeric("451", "You have not registered")
            return
        if command in ("PRIVMSG", "NOTICE", "TAGMSG"):
            handler(params, tags)
        else:
            handler(params)

    def _register(self) -> None:
        if self.registered or self.nick is None or not self.user or self.codec.negotiating:
            return
        self.registered = True
        self._hello(self.nick, "REGISTER")

    def _hello(self, nick: str, why: str, nick_password: str | None = None) -> None:
        hello: JsonObject = {"type": "hello", "nick": nick, "proto": 1, "rooms": [],
                                 "client": "irc", "ref": self._ref(why, nick)}
        if self.password is not None:
            hello["password"] = self.password
        if self.username:
            hello["user"] = self.username
        if self.realname:
            hello["realname"] = self.realname
        if nick_password is not None:
            hello["nick_password"] = nick_password
        if "draft/read-marker" in self.codec.caps:
            hello["features"] = ["read_markers"]
        self._frames.append(hello)

    def _cmd_markread(self, params: list[str]) -> None:
        """MARKREAD <target> [timestamp=...] (draft/read-marker): ask, or move it."""
        if not params or not params[0]:
            self._reply(f":{self.codec.server_name} FAIL MARKREAD NEED_MORE_PARAMS "
                        ":Missing target")
            return
        target = params[0]
        frame: JsonObject = {"type": "mark_read", "ref": self._ref("MARKREAD", target)}
        if target.startswith("#"):
            frame["room"] = target[1:]
        else:
            frame["to"] = target
        if len(params) > 1:
            kind, _, value = params[1].partition("=")
            ts = parse_time(value) if kind == "timestamp" else None
            if ts is None:
                self._reply(f":{self.codec.server_name} FAIL MARKREAD INVALID_PARAMS "
                            f"{target} :Give timestamp=YYYY-MM-DDThh:mm:ss.sssZ")
                return
            frame["ts"] = ts
        self._frames.append(frame)

    def _cmd_cap(self, params: list[str]) -> None:
        sub = params[0].upper() if params else ""
        name = self.codec.nick if self.codec.nick != "*" else self.nick or "*"
        server = self.codec.server_name
        if sub == "LS":
            if len(params) > 1 and (version := number(params[1])) is not None:
                self.cap_version = max(self.cap_version, version)
            if self.codec.nick == "*":
                self.codec.negotiating = True  # registration waits for CAP END
            offered = [f"{c}={CAP_VALUES[c]}" if c in CAP_VALUES and self.cap_version >= 302
                       else c for c in CAPS]
            self._reply(f":{server} CAP {name} LS :{' '.join(offered)}")
        elif sub == "REQ" and len(params) > 1:
            if self.codec.nick == "*":
                self.codec.negotiating = True
            wanted = params[1].split()
            names = {w.lstrip("-") for w in wanted}
            caps = set(self.codec.caps)
            for w in wanted:
                (caps.discard if w.startswith("-") else caps.add)(w.lstrip("-"))
            ok = names <= set(CAPS) and ("labeled-response" not in caps or "batch" in caps)
            if ok:
                self.codec.enable(frozenset(caps))
                self.peer.wants_tags = "message-tags" in caps
                self.peer.wants_away = "away-notify" in caps
            self._reply(f":{server} CAP {name} {'ACK' if ok else 'NAK'} :{params[1]}")
        elif sub == "LIST":
            self._reply(f":{server} CAP {name} LIST :{' '.join(sorted(self.codec.caps))}")
        elif sub == "END":
            self._end_negotiation()
        else:
            self._numeric("410", sub or "*", "Invalid CAP command")

    def _end_negotiation(self) -> None:
        codec = self.codec
        if not codec.negotiating:
            return
        codec.negotiating = False
        if codec.held:  # signed in by SASL: its welcome now
            self._replies.extend(codec.held)
            codec.held = []
            if self.nick is not None and self.nick != codec.nick:  # NICK differed
                self._frame(type="nick", nick=self.nick, ref=self._ref("NICK", self.nick))
        elif not self.registered or codec.nick == "*":
            self.registered = False
            self._register()

    def _cmd_authenticate(self, params: list[str]) -> None:
        arg = params[0] if params else ""
        if self.codec.nick != "*" or self.registered:
            self._numeric("907", "You have already authenticated")
        elif arg == "*":
            self.sasl = None
            self._numeric("906", "SASL authentication aborted")
        elif self.sasl is None:
            if arg.upper() != "PLAIN":
                self._numeric("908", "PLAIN", "are available SASL mechanisms")
                self._numeric("904", "SASL authentication failed")
                return
            self.sasl = bytearray()
            self._reply("AUTHENTICATE +")
        else:
            if arg != "+":
                self.sasl += arg.encode("ascii", "replace")
            if len(self.sasl) > MAX_SASL:
                self.sasl = None
                self._numeric("905", "SASL message too long")
            elif len(arg) < 400:  # the last piece: a full one means more follow
                data, self.sasl = bytes(self.sasl), None
                self._sasl_plain(data)

    def _sasl_plain(self, data: bytes) -> None:
        try:
            _, account, password = base64.b64decode(data, validate=True).decode().split("\0")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            self._numeric("904", "SASL authentication failed: not a PLAIN response")
            return
        self.registered = True  # the account's hello stands for the registration
        self._hello(account, "SASL", password)

    def _cmd_pass(self, params: list[str]) -> None:
        if params:
            self.password = params[0]

    def _cmd_nick(self, params: list[str]) -> None:
        if not params:
            self._numeric("431", "No nickname given")
            return
        if self.codec.nick != "*":  # welcomed: a rename
            if params[0] != self.codec.nick:
                self._frame(type="nick", nick=params[0], ref=self._ref("NICK", params[0]))
            return
        self.nick = params[0]
        if self.registered and not self.codec.negotiating:  # its hello was refused
            self.registered = False  # (a taken nickname): try this one
        self._register()

    def _cmd_user(self, params: list[str]) -> None:
        if len(params) < 4 or not params[3]:
            self._numeric("461", "USER", "Not enough parameters")
            return
        self.user = True
        self.username = "".join(c for c in params[0] if c.isascii() and (c.isalnum()
                                                                        or c in "._-"))[:16]
        self.realname = params[3][:100]
        self._register()

    def _cmd_ping(self, params: list[str]) -> None:
        if not params:
            self._numeric("461", "PING", "Not enough parameters")
            return
        self._frame(type="ping", token=params[-1], ref=self._ref("PING", params[-1]))

    def _cmd_pong(self, params: list[str]) -> None:
        self._frame(type="pong", token=params[-1] if params else "")

    def _cmd_quit(self, params: list[str]) -> None:
        self._frame(type="bye", reason=params[0] if params else "")

    def _cmd_join(self, params: list[str]) -> None:
        if not params:
            self._numeric("461", "JOIN", "Not enough parameters")
            return
        keys = params[1].split(",") if len(params) > 1 else []
        for at, name in enumerate(params[0].split(",")):
            if not name.startswith("#") or len(name) < 2:
                self._numeric("403", name, "No such channel")
                continue
            frame: JsonObject = {"type": "join", "room": name[1:],
                                 "ref": self._ref("JOIN", name)}
            if at < len(keys) and keys[at]:
                frame["key"] = keys[at]
            # A client that fetches history itself (CHATHISTORY) gets none unasked;
            # the others get what their nickname has not seen (the hub keeps it).
            if "draft/chathistory" in self.codec.caps:
                frame["replay"] = False
            self._frames.append(frame)

    def _cmd_part(self, params: list[str]) -> None:
        if not params:
            self._numeric("461", "PART", "Not enough parameters")
            return
        for name in params[0].split(","):
            part: JsonObject = {"type": "part", "room": name.lstrip("#"),
                                    "ref": self._ref("PART", name)}
            if len(params) > 1 and params[1]:
                part["message"] = params[1]
            self._frames.append(part)

    def _targets(self, command: str, params: list[str]) -> list[str] | None:
        targets = [t for t in params[0].split(",") if t] if params else []
        if not targets:
            self._numeric("411", f"No recipient given ({command})")
            return None
        if len(targets) > MAX_TARGETS:
            self._numeric("407", params[0], f"Too many targets (at most {MAX_TARGETS})")
            return None
        return targets

    @staticmethod
    def _client_tags(tags: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in tags.items() if TAG_KEY.fullmatch(k) and "\0" not in v}

    def _cmd_privmsg(self, params: list[str], tags: dict[str, str],
                     notice: bool = False) -> None:
        command = "NOTICE" if notice else "PRIVMSG"
        if params and "," not in params[0] and params[0]:
            targets: list[str] | None = [params[0]]  # one target: the common case
        else:
            targets = self._targets(command, params) if not notice else \
                [t for t in (params[0].split(",") if params else []) if t][:MAX_TARGETS]
        if not targets:
            return
        if len(params) < 2 or not params[1]:
            if not notice:
                self._numeric("412", "No text to send")
            return
        text = params[1]
        action = False
        if text[0] == "\x01":
            action = text.startswith("\x01ACTION ") and text.endswith("\x01")
            if not action:  # other CTCP requests: answered here (texts refuse \x01)
                if not notice:
                    self._ctcp(targets, text.strip("\x01"))
                return
        client_tags = self._client_tags(tags) if tags else None
        reply_to = None
        if client_tags and "+draft/reply" in client_tags:  # an answer to a message
            reply_to = number(client_tags["+draft/reply"])  # (the tag is relayed too)
        nick = self.codec.nick
        for target in targets:
            # others get ":nick!nick@lanchat PRIVMSG target :text": it must fit in 512
            if (len(text) + len(target) + 2 * len(nick) + 30) * 4 > MAX_BODY and len(
                    f":{nick}!{nick}@lanchat {command} {target} :{text}\r\n".encode()) \
                    > MAX_BODY:
                if not notice:
                    self._numeric("417", "Input line was too long (with your address, "
                                  "the message would pass 512 bytes)")
                continue
            frame: JsonObject = {"type": "send", "text": text,
                                     "ref": self._ref(command, target)}
            if action:
                frame["text"], frame["action"] = text[8:-1], True
            elif notice:
                frame["notice"] = True
            if client_tags:
                frame["tags"] = client_tags
            if reply_to is not None:
                frame["reply_to"] = reply_to
            if target.startswith("#"):
                frame["room"] = target[1:]
            else:
                frame["to"] = target
            self._frames.append(frame)

    def _cmd_redact(self, params: list[str]) -> None:
        """REDACT <target> <msgid> [:reason] (draft/message-redaction): a delete."""
        if len(params) < 2:
            self._numeric("461", "REDACT", "Not enough parameters")
            return
        msg_id = number(params[1])
        self._frame(type="delete", id=msg_id if msg_id is not None else 0,
                    ref=self._ref("REDACT", params[0], params[1]))

    def _ctcp(self, targets: list[str], request: str) -> None:
        """CTCP VERSION, PING, TIME, CLIENTINFO to a nickname: the server answers for
        every door (a browser or the window cannot); to a channel: nothing."""
        command, _, arg = request.partition(" ")
        answers = {"VERSION": "lanchat (https://github.com/lanchat)",
                   "PING": arg, "TIME": time.strftime("%a %b %d %H:%M:%S %Y"),
                   "CLIENTINFO": "ACTION CLIENTINFO PING TIME VERSION"}
        answer = answers.get(command.upper())
        if answer is None:
            return
        for target in targets:
            if not target.startswith("#"):
                self._reply(f":{target}!{target}@lanchat NOTICE {self.codec.nick} "
                            f":\x01{command.upper()} {answer}\x01")

    def _cmd_notice(self, params: list[str], tags: dict[str, str]) -> None:
        self._cmd_privmsg(params, tags, notice=True)

    def _cmd_tagmsg(self, params: list[str], tags: dict[str, str]) -> None:
        targets = self._targets("TAGMSG", params)
        client_tags = self._client_tags(tags)
        if not targets or not client_tags:
            return
        react = client_tags.get("+draft/react") or client_tags.get("+draft/unreact")
        about = number(client_tags.get("+draft/reply", ""))
        if react and about is not None:  # a reaction to a message (+draft/react)
            self._frame(type="react", id=about, emoji=react,
                        on="+draft/react" in client_tags,
                        ref=self._ref("REACT", targets[0], str(about)))
            return
        for target in targets:
            if client_tags == {"+typing": "active"} and target.startswith("#"):
                # a typing notice: everyone sees it, the page and the windows too
                self._frame(type="typing", room=target[1:],
                            ref=self._ref("TAGMSG", target, labeled=False))
                continue
            frame: JsonObject = {"type": "tagmsg", "tags": client_tags,
                                     "ref": self._ref("TAGMSG", target)}
            if target.startswith("#"):
                frame["room"] = target[1:]
            else:
                frame["to"] = target
            self._frames.append(frame)

    def _cmd_names(self, params: list[str]) -> None:
        if not params:  # every channel's names: too much to ask; LIST has the counts
            self._numeric("366", "*", "End of /NAMES list.")
        names = params[0].split(",") if params else []
        for at, name in enumerate(names):
            sub = "more" if at < len(names) - 1 else (params[0] if len(names) > 1 else "")
            if not name.startswith("#"):
                if not sub or sub != "more":
                    self._numeric("366", sub or name, "End of /NAMES list.")
                continue
            self._frame(type="who", room=name[1:], ref=self._ref("NAMES", name, sub))

    def _cmd_who(self, params: list[str]) -> None:
        mask = params[0] if params else "*"
        whox = params[1][1:] if len(params) > 1 and params[1].startswith("%") else ""
        if mask.startswith("#"):
            self._frame(type="who", room=mask[1:], details=True,
                        ref=self._ref("WHO", mask, whox))
        elif "," not in mask and mask not in ("0", ""):
            self._frame(type="who", mask=mask, ref=self._ref("WHOMASK", mask, whox))
        else:
            self._numeric("315", mask, "End of /WHO list.")

    def _cmd_whois(self, params: list[str]) -> None:
        if not params:
            self._numeric("431", "No nickname given")
            return
        nick = params[-1].split(",")[0]
        self._frame(type="whois", nick=nick, ref=self._ref("WHOIS", nick))

    def _cmd_ison(self, params: list[str]) -> None:
        nicks = " ".join(params).split()[:64]
        if not nicks:
            self._numeric("461", "ISON", "Not enough parameters")
            return
        self._frame(type="ison", nicks=nicks, ref=self._ref("ISON", "*"))

    def _cmd_userhost(self, params: list[str]) -> None:
        nicks = " ".join(params).split()[:5]  # RFC 2812: at most 5
        if not nicks:
            self._numeric("461", "USERHOST", "Not enough parameters")
            return
        self._frame(type="ison", nicks=nicks, ref=self._ref("USERHOST", "*"))

    def _cmd_list(self, params: list[str]) -> None:
        self._frame(type="rooms", ref=self._ref("LIST", "*"))

    def _cmd_motd(self, params: list[str]) -> None:
        self.codec.motd_lines(self._replies)

    def _cmd_topic(self, params: list[str]) -> None:
        if not params:
            self._numeric("461", "TOPIC", "Not enough parameters")
            return
        name = params[0]
        if not name.startswith("#"):
            self._numeric("403", name, "No such channel")
        elif len(params) > 1:
            self._frame(type="topic", room=name[1:], topic=params[1][:MAX_TOPIC],
                        ref=self._ref("TOPIC", name, "set"))
        else:
            self._frame(type="topic", room=name[1:], ref=self._ref("TOPIC", name, "query"))

    def _cmd_mode(self, params: list[str]) -> None:
        if not params:
            self._numeric("461", "MODE", "Not enough parameters")
            return
        target = params[0]
        if not target.startswith("#"):
            if target.casefold() != self.codec.nick.casefold():
                self._numeric("502", "Cannot change mode for other users")
            elif len(params) == 1:
                peer = self.peer
                self._numeric("221", "+" + "i" * peer.invisible + "o" * peer.oper
                              + "w" * peer.wallops)
            else:
                self._user_modes(params[1])
            return
        if len(params) > 2 and not self._mode_args_valid(target, params[1], params[2:]):
            return
        if len(params) == 1:
            self._frame(type="room_info", room=target[1:], ref=self._ref("MODE", target))
            return
        words = params[1:]
        if words[0].lstrip("+") == "b" and len(words) == 1:  # the ban list
            self._frame(type="room_info", room=target[1:], ref=self._ref("MODE", target, "b"))
            return
        changes, unknown = parse_modes(words)
        for letter in unknown:
            self._numeric("472", letter, "is an unknown mode char to me")
        if not changes:
            return
        nicks = [a for m, _, a in changes if m in ("operator", "voice") and a]
        self._frame(type="mode", room=target[1:],
                    ref=self._ref("MODESET", target, nicks[0] if nicks else ""),
                    changes=[{"mode": m, "on": on, **({"arg": a} if a is not None else {})}
                             for m, on, a in changes[:MAX_MODE_CHANGES]])

    def _user_modes(self, changes: str) -> None:
        """+i and +w are the user's own (invisible, takes WALLOPS); +o comes by OPER."""
        peer, on, done = self.peer, True, []
        for letter in changes:
            if letter in "+-":
                on = letter == "+"
            elif letter in "iw":
                if getattr(peer, "invisible" if letter == "i" else "wallops") != on:
                    setattr(peer, "invisible" if letter == "i" else "wallops", on)
                    done.append(("+" if on else "-") + letter)
            elif letter == "o" and not on and peer.oper:
                peer.oper = False
                done.append("-o")
            elif letter != "o":
                self._numeric("501", "Unknown MODE flag")
        if done:
            nick = self.codec.nick
            self._reply(f":{nick} MODE {nick} :{''.join(done)}")

    def _mode_args_valid(self, target: str, letters: str, args: list[str]) -> bool:
        """A key or a limit IRC clients get wrong: 696, as IRCv3's invalid mode param."""
        rest, on = iter(args), True
        for letter in letters:
            if letter in "+-":
                on = letter == "+"
                continue
            if letter in "ovbk" or (letter == "l" and on):
                arg = next(rest, "")
                bad = ""
                if letter == "k" and on and (not arg.strip() or len(arg) > MAX_KEY
                                             or any(c in arg for c in " ,:")):
                    bad = f"A key is 1 to {MAX_KEY} characters, no spaces, commas or colons"
                elif letter == "l" and (not arg.isdigit() or int(arg) < 1):
                    bad = "A limit is a number of people, 1 or more"
                if bad:
                    self._reply(f":{self.codec.server_name} 696 {self.codec.nick} {target} "
                                f"{letter} * :{bad}")
                    return False
        return True

    def _cmd_kick(self, params: list[str]) -> None:
        if len(params) < 2:
            self._numeric("461", "KICK", "Not enough parameters")
            return
        name = params[0]
        if not name.startswith("#"):
            self._numeric("403", name, "No such channel")
            return
        for nick in params[1].split(",")[:MAX_TARGETS]:
            frame: JsonObject = {"type": "kick", "room": name[1:], "nick": nick,
                                 "ref": self._ref("KICK", name, nick)}
            if len(params) > 2 and params[2].strip():
                frame["reason"] = params[2][:MAX_TOPIC]
            self._frames.append(frame)

    def _cmd_invite(self, params: list[str]) -> None:
        if len(params) < 2:
            self._numeric("461", "INVITE", "Not enough parameters")
            return
        nick, name = params[0], params[1]
        if not name.startswith("#"):
            self._numeric("403", name, "No such channel")
            return
        self._frame(type="invite", room=name[1:], nick=nick,
                    ref=self._ref("INVITE", name, nick))

    def _cmd_whowas(self, params: list[str]) -> None:
        if not params:
            self._numeric("431", "No nickname given")
            return
        nick = params[0].split(",")[0]
        self._frame(type="whowas", nick=nick,
                    ref=self._ref("WHOWAS", nick, params[1] if len(params) > 1 else ""))

    def _cmd_monitor(self, params: list[str]) -> None:
        sub = params[0].upper() if params else ""
        if sub in ("+", "-"):
            if len(params) < 2:
                self._numeric("461", "MONITOR", "Not enough parameters")
                return
            nicks = [n for n in params[1].split(",") if n]
            good = [n for n in nicks if normal_nick(n) is not None]
            for bad in nicks:
                if normal_nick(bad) is None:
                    self._numeric("432", bad, "Erroneous nickname")
            if good:
                self._frame(type="monitor", ref=self._ref("MONITOR", "*", sub),
                            **{"add" if sub == "+" else "remove": good[:MAX_MONITOR]})
        elif sub == "C":
            self._frame(type="monitor", clear=True, ref=self._ref("MONITOR", "*", "C"))
        elif sub == "L":
            self._frame(type="monitor", ref=self._ref("MONITOR", "*", "L"))
        elif sub == "S":
            self._frame(type="monitor", status=True, ref=self._ref("MONITOR", "*", "S"))
        else:
            self._numeric("461", "MONITOR", "Not enough parameters")

    def _cmd_lusers(self, params: list[str]) -> None:
        self._frame(type="lusers", ref=self._ref("LUSERS", "*"))

    def _cmd_time(self, params: list[str]) -> None:
        now = time.time()
        self._reply(f":{self.codec.server_name} 391 {self.codec.nick} "
                    f"{self.codec.server_name} {int(now)} 0 "
                    f":{time.strftime('%A %B %d %Y -- %H:%M:%S +00:00', time.gmtime(now))}")

    def _cmd_version(self, params: list[str]) -> None:
        self._numeric("351", "lanchat-1.", self.codec.server_name, "a lanchat server")
        self.codec.isupport_lines(self._replies, self.codec.server_name)

    def _cmd_info(self, params: list[str]) -> None:
        for text in ("lanchat: a group chat for the people on one network.",
                     "One server, any number of clients: the chat window, a browser, "
                     "IRC clients and bots."):
            self._numeric("371", text)
        self._numeric("374", "End of INFO list")

    def _cmd_admin(self, params: list[str]) -> None:
        self._numeric("256", self.codec.server_name, "Administrative info")
        self._numeric("257", "The operator of this lanchat server")
        self._numeric("258", "Ask in the chat")
        self._numeric("259", "-")

    def _cmd_oper(self, params: list[str]) -> None:
        if len(params) < 2:
            self._numeric("461", "OPER", "Not enough parameters")
            return
        self._frame(type="oper", name=params[0], password=params[1],
                    ref=self._ref("OPER", "*"))

    def _cmd_kill(self, params: list[str]) -> None:
        if not params:
            self._numeric("461", "KILL", "Not enough parameters")
            return
        frame: JsonObject = {"type": "kill", "nick": params[0],
                             "ref": self._ref("KILL", params[0])}
        if len(params) > 1 and params[1].strip():
            frame["reason"] = params[1][:MAX_TOPIC]
        self._frames.append(frame)

    def _cmd_wallops(self, params: list[str]) -> None:
        if not params or not params[0].strip():
            self._numeric("461", "WALLOPS", "Not enough parameters")
            return
        self._frame(type="wallops", text=params[0], ref=self._ref("WALLOPS", "*"))

    def _cmd_away(self, params: list[str]) -> None:
        self._frame(type="away", text=params[0] if params else "",
                    ref=self._ref("AWAY", "*"))

    def _cmd_chathistory(self, params: list[str]) -> None:
        sub = params[0].upper() if params else ""
        if sub not in ("LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN"):
            self._fail("INVALID_PARAMS" if sub else "NEED_MORE_PARAMS", sub or "*",
                       "Use LATEST, BEFORE, AFTER, AROUND or BETWEEN")
            return
        wanted = 5 if sub == "BETWEEN" else 4
        if len(params) < wanted:
            self._fail("NEED_MORE_PARAMS", sub, "Not enough parameters")
            return
        target, refs, count = params[1], params[2:wanted - 1], params[wanted - 1]
        wanted_count = number(count)
        limit = min(wanted_count, HISTORY_MAX) if wanted_count else HISTORY_MAX
        frame: JsonObject = {"type": "history", "limit": limit}
        if target.startswith("#"):
            frame["room"] = target[1:]
        else:  # direct messages: for the signed-in holder of the nickname's account
            frame["with"] = target
        bounds = []
        for text in refs:
            bound = self._msgref(text, sub)
            if bound is None:
                self._fail("INVALID_PARAMS", sub, f"Not a message reference: {text}")
                return
            bounds.append(bound)
        if sub == "LATEST" and bounds[0][1] is not None:
            frame["after" + bounds[0][0]] = bounds[0][1]
        elif sub in ("BEFORE", "AFTER", "AROUND") and bounds[0][1] is not None:
            frame[sub.lower() + bounds[0][0]] = bounds[0][1]
            frame["oldest"] = sub == "AFTER"
        elif sub == "BETWEEN":
            (kind_a, a), (kind_b, b) = bounds
            if a is None or b is None or kind_a != kind_b:
                self._fail("INVALID_PARAMS", sub, "BETWEEN needs two references of one kind")
                return
            low, high = sorted((a, b))
            frame["after" + kind_a], frame["before" + kind_a] = low, high
            frame["oldest"] = a < b  # from the first reference towards the second
        elif sub != "LATEST":
            self._fail("INVALID_PARAMS", sub, "A message reference is needed")
            return
        frame["ref"] = self._ref("CHATHISTORY", target, sub)
        self._frames.append(frame)

    @staticmethod
    def _msgref(text: str, sub: str) -> tuple[str, int | None] | None:
        """("" for ids or "_ts" for times, the value), None for "*", or None if bad."""
        if text == "*":
            return ("", None) if sub == "LATEST" else None
        kind, _, value = text.partition("=")
        if kind == "msgid" and (msg_id := number(value)) is not None:
            return "", msg_id
        if kind == "timestamp":
            ms = parse_time(value)
            return None if ms is None else ("_ts", ms)
        return None

    def _fail(self, code: str, sub: str, text: str, target: str = "") -> None:
        context = f"{sub} {target}".strip()
        self._reply(f":{self.codec.server_name} FAIL CHATHISTORY {code} {context} :{text}")
