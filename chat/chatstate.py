"""What a chat client knows, built from server frames: conversations, rosters, unread.

``ChatState.apply(frame)`` files each frame under its conversation (a room, or a
direct-message partner) and records what changed, so the window renders only that,
in one batch per tick. History arriving for a room is held until its `history_end`,
then merged: older pages go in front, a join or resume replay goes at the end;
message ids already shown are never shown twice. No GUI and no sockets here.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chat.protocol import name_key
from chat.transfers import file_of

MAX_LINES = 20000  # lines held per conversation; the view renders a window of them
TYPING_SECONDS = 6.0  # how long "bob is typing..." stays without a new typing frame
OLDER_REF = "older"  # `ref` of history requests for older pages
WHO_REF = "who"  # `ref` of /who requests, whose answer is shown as a line
TOPIC_REF = "topic?"  # `ref` of /topic without text: its answer is shown as a line


@dataclass
class Line:
    kind: str  # message, action, system, notice, error, help (two columns)
    text: str
    ts: int = 0
    nick: str = ""
    id: int | None = None
    own: bool = False
    mention: bool = False
    names: list = field(default_factory=list)  # a folded line: who joined, left...
    verb: str = ""  # ... and what they did ("joined", "disconnected")
    file: dict | None = None  # the file a message carries (docs/protocol.md, "Files")
    reply_to: int | None = None  # the message it answers
    quote: str = ""  # that message as the line above it shows it ("bob: where is...")
    edited: bool = False
    deleted: bool = False
    reactions: dict = field(default_factory=dict)  # emoji -> nicknames, in order


@dataclass
class Conversation:
    key: str
    name: str
    kind: str  # room or dm
    lines: deque = field(default_factory=deque)  # at most MAX_LINES, oldest first
    base: int = 0  # the place of lines[0] in the conversation (older pages lower it)
    ids: set = field(default_factory=set)  # ids of the messages in `lines`
    users: list = field(default_factory=list)
    joined: bool = False
    unread: int = 0
    mentions: int = 0
    more: bool = False  # the server has older history
    loading: bool = False  # an older page is asked for
    divider: Any = None  # the first Line "new since you left" (on opening), or None
    read_upto: int = 0  # how far this nickname read it, on any device (read markers)
    typing: dict = field(default_factory=dict)  # nick -> expiry (monotonic)
    # Rooms with owners (docs/protocol.md): roles among the people here, the topic, the
    # settings (from `room_info`, kept up by `mode`)
    operators: list = field(default_factory=list)
    voiced: list = field(default_factory=list)
    topic: str = ""
    topic_by: str = ""
    settings: dict = field(default_factory=dict)
    bans: list = field(default_factory=list)
    settled: bool = False  # its join's answer is over (history_end): changes are live

    @property
    def label(self) -> str:
        return f"# {self.name}" if self.kind == "room" else f"@ {self.name}"

    @property
    def oldest_id(self) -> int | None:
        return next((ln.id for ln in self.lines if ln.id is not None), None)


class ChatState:
    def __init__(self) -> None:
        self.nick = ""
        self.server = ""
        self.conversations: dict[str, Conversation] = {}
        self.active: str | None = None
        self.focused = True  # the window says whether the user is looking
        self.unseen = 0  # messages that arrived while unfocused (for the title)
        self.alerts = 0  # mentions and direct messages that came while unfocused
        self.silenced: set[str] = set()  # conversations that never ring (``/mute``)
        self.received = 0  # messages shown since connecting
        self.appended: dict[str, list[Line]] = {}  # per conversation, since last render
        self.redraw: set[str] = set()  # conversations to render from scratch
        self.prepended: dict[str, int] = {}  # lines an older page put in front
        self.list_changed = True  # the sidebar (conversations, unread) needs a redraw
        self.roster_changed = True
        self._held: dict[str, list[dict[str, Any]]] = {}  # history until history_end
        self._mention: re.Pattern | None = None
        self._pending_motd: str | None = None  # shown once the first room is filled
        self.invitations: list[tuple[str, str]] = []  # (room, by), the newest last
        self.topic_changed = True

    # ------------------------------------------------------------ conversations

    def conversation(self, name: str, kind: str = "room") -> Conversation:
        key = ("#" if kind == "room" else "@") + name_key(name)
        conv = self.conversations.get(key)
        if conv is None:
            conv = self.conversations[key] = Conversation(key, name, kind)
            self.list_changed = True
            if self.active is None:  # the first: the view shows it from scratch
                self.active = key
                self.redraw.add(key)
        return conv

    def activate(self, key: str) -> None:
        if key in self.conversations:
            self.active = key
            conv = self.conversations[key]
            conv.divider = first_unread(conv.lines, conv.unread) if conv.unread else None
            conv.unread = conv.mentions = 0
            self.redraw.add(key)
            self.list_changed = self.roster_changed = True

    def offline(self) -> None:
        """The connection is down: nobody is known to be online until it is back."""
        for conv in self.conversations.values():
            conv.users = []
            conv.typing.clear()
        self.roster_changed = True

    def close(self, key: str) -> None:
        """Take a conversation off the list (a room left, a direct message done);
        another one opens. A message that comes later opens it again."""
        if self.conversations.pop(key, None) is None:
            return
        self.list_changed = True
        if self.active == key:
            self.active = next(iter(self.conversations), None)
            if self.active is not None:
                self.activate(self.active)

    def active_conversation(self) -> Conversation | None:
        return self.conversations.get(self.active) if self.active else None

    def note(self, text: str, kind: str = "system", key: str | None = None) -> None:
        """A line from the client itself (help, errors, status) in a conversation."""
        conv = self.conversations.get(key or self.active or "")
        if conv is None:
            conv = self.conversation("general")
        self._add(conv, Line(kind, text, int(time.time() * 1000)))

    def _add(self, conv: Conversation, line: Line, *, count: bool = False) -> None:
        if line.id is not None:
            if line.id in conv.ids:
                return
            conv.ids.add(line.id)
            self.received += 1
        if len(conv.lines) >= MAX_LINES:  # the oldest line goes, and its id with it
            conv.ids.discard(conv.lines.popleft().id)
            conv.base += 1
            conv.more = True
        conv.lines.append(line)
        self.appended.setdefault(conv.key, []).append(line)
        if count and not line.own:
            if conv.key != self.active:
                conv.unread += 1
                conv.mentions += line.mention
                self.list_changed = True
            if not self.focused:
                self.unseen += 1
                if (line.mention or conv.kind == "dm") and conv.key not in self.silenced:
                    self.alerts += 1  # the window rings and flags itself

    def typing_nicks(self, now: float) -> list[str]:
        conv = self.active_conversation()
        if conv is None:
            return []
        return sorted(n for n, until in conv.typing.items() if until > now)

    def take_changes(self) -> tuple[dict[str, list[Line]], set[str], dict[str, int]]:
        """Per conversation: lines added at the end, those to render from scratch,
        and how many lines older pages put in front."""
        appended, redraw, prepended = self.appended, self.redraw, self.prepended
        self.appended, self.redraw, self.prepended = {}, set(), {}
        return appended, redraw, prepended

    # ------------------------------------------------------------ frames

    def apply(self, frame: dict[str, Any]) -> None:
        handler = getattr(self, "_on_" + frame.get("type", "").replace(".", "_"), None)
        if handler is not None:
            handler(frame)

    def _on_welcome(self, frame: dict[str, Any]) -> None:
        self.nick = frame["nick"]
        self.server = frame.get("server", "")
        for conv in self.conversations.values():
            conv.loading = False  # a page asked of the last connection never comes
        self._mention = re.compile(rf"(?<![\w]){re.escape(self.nick)}(?![\w])", re.I)
        if frame.get("motd"):
            self._pending_motd = frame["motd"]

    def _line_for(self, frame: dict[str, Any]) -> Line:
        nick, text = frame.get("from", ""), frame.get("text", "")
        own = name_key(nick) == name_key(self.nick) if self.nick else False
        mention = bool(not own and self._mention and self._mention.search(text))
        reply_to = frame.get("reply_to")
        own_reply = False
        if reply_to is not None and not own:  # an answer to one's own message: a mention
            conv = self._conversation_of(frame, frame.get("from", ""))
            answered = self.find(conv, reply_to) if conv is not None else None
            own_reply = answered is not None and answered.own
        line = Line("action" if frame.get("action") else "message", text, frame.get("ts", 0),
                    nick, frame.get("id"), own, mention or own_reply, file=file_of(frame),
                    reply_to=reply_to, edited=bool(frame.get("edited")),
                    deleted=bool(frame.get("deleted")),
                    reactions=dict(frame.get("reactions") or {}))
        return line

    # ------------------------------------------------------------ replies, edits

    def _conversation_of(self, frame: dict[str, Any], actor: str) -> Conversation | None:
        """The conversation a message or a change belongs to (None: not one here)."""
        if "room" in frame:
            return self.conversations.get("#" + name_key(frame["room"]))
        mine = name_key(actor) == name_key(self.nick)
        other = str(frame.get("to") if mine else actor)
        return self.conversations.get("@" + name_key(other))

    @staticmethod
    def find(conv: Conversation, msg_id: int) -> Line | None:
        if msg_id not in conv.ids:
            return None
        return next((ln for ln in conv.lines if ln.id == msg_id), None)

    def quote_of(self, conv: Conversation, line: Line,
                 among: dict[int, Line] | None = None) -> str:
        """What a reply shows above it: who said what it answers (``among``: lines
        not in ``conv`` yet, a replay's)."""
        assert line.reply_to is not None
        answered = (among or {}).get(line.reply_to) or self.find(conv, line.reply_to)
        if answered is None:
            return "an earlier message"
        if answered.deleted:
            return f"{answered.nick}: message deleted"
        text = answered.text.replace("\n", " ")
        return f"{answered.nick}: {text[:80]}{'…' if len(text) > 80 else ''}"

    def _changed(self, frame: dict[str, Any], actor: str, apply: Callable[[Line], None]
                 ) -> None:
        conv = self._conversation_of(frame, actor)
        line = self.find(conv, frame.get("target", 0)) if conv is not None else None
        if conv is None or line is None:
            return  # not held here: history shows it as it is now
        apply(line)
        for other in conv.lines:  # replies to it show it as it is now
            if other.reply_to == line.id:
                other.quote = self.quote_of(conv, other)
        self.redraw.add(conv.key)

    def _on_edited(self, frame: dict[str, Any]) -> None:
        def apply(line: Line) -> None:
            line.text, line.edited = frame.get("text", ""), True
        self._changed(frame, frame.get("by", ""), apply)

    def _on_deleted(self, frame: dict[str, Any]) -> None:
        def apply(line: Line) -> None:
            line.text, line.deleted, line.file, line.reactions = "", True, None, {}
        self._changed(frame, frame.get("by", ""), apply)

    def _on_reaction(self, frame: dict[str, Any]) -> None:
        nick, emoji = frame.get("nick", ""), frame.get("emoji", "")

        def apply(line: Line) -> None:
            who = list(line.reactions.get(emoji, []))
            if frame.get("on") and nick not in who:
                who.append(nick)
            elif not frame.get("on") and nick in who:
                who.remove(nick)
            if who:
                line.reactions[emoji] = who
            else:
                line.reactions.pop(emoji, None)
        self._changed(frame, nick, apply)

    def _on_message(self, frame: dict[str, Any]) -> None:
        if "room" in frame:
            if frame.get("history"):
                self._held.setdefault(name_key(frame["room"]), []).append(frame)
                return
            conv = self.conversation(frame["room"])
            conv.typing.pop(frame.get("from"), None)
        else:
            mine = name_key(frame.get("from", "")) == name_key(self.nick)
            conv = self.conversation(str(frame.get("to") if mine else frame.get("from")), "dm")
        line = self._line_for(frame)
        if line.reply_to is not None:
            line.quote = self.quote_of(conv, line)
        self._add(conv, line, count=True)

    def _on_history_end(self, frame: dict[str, Any]) -> None:
        conv = self.conversation(frame["room"])
        conv.settled = True
        held = self._held.pop(name_key(frame["room"]), [])
        lines = [self._line_for(f) for f in held]
        lines = [ln for ln in lines if ln.id not in conv.ids]
        by_id = {ln.id: ln for ln in lines if ln.id is not None}
        for line in lines:
            if line.reply_to is not None:
                line.quote = self.quote_of(conv, line, by_id)
        if frame.get("ref") == OLDER_REF:
            # The past the reader asked for is all kept (the view renders a window
            # of it); only live lines past MAX_LINES push the oldest out.
            conv.more = bool(frame.get("more"))
            conv.loading = False
            conv.lines.extendleft(reversed(lines))
            conv.ids.update(ln.id for ln in lines)
            conv.base -= len(lines)
            self.prepended[conv.key] = self.prepended.get(conv.key, 0) + len(lines)
        else:
            if not conv.ids:
                conv.more = bool(frame.get("more"))
            # Lines of the client's own written after these messages ("You joined
            # general.") go below them: the view stays in the order things happened.
            later: list[Line] = []
            while lines and conv.lines and conv.lines[-1].id is None and \
                    conv.lines[-1].ts >= lines[0].ts:
                later.append(conv.lines.pop())
            for line in lines:
                self._add(conv, line)
            if later:
                conv.lines.extend(reversed(later))
                while len(conv.lines) > MAX_LINES:
                    conv.ids.discard(conv.lines.popleft().id)
                    conv.base += 1
                self.appended.pop(conv.key, None)
                self.redraw.add(conv.key)
        if self._pending_motd:
            self.note(self._pending_motd, "notice", conv.key)
            self._pending_motd = None
        if frame.get("ref") != OLDER_REF:
            self._recount(conv)

    # ------------------------------------------------------------ read markers

    def _on_read(self, frame: dict[str, Any]) -> None:
        conv = self.conversation(frame["room"]) if "room" in frame else \
            self.conversation(str(frame.get("to", "")), "dm")
        if int(frame.get("id", 0)) > conv.read_upto:
            conv.read_upto = int(frame["id"])
            self._recount(conv)

    def _recount(self, conv: Conversation) -> None:
        """What came after the read marker is new: counted (the open conversation: its
        divider stands before the first)."""
        if not conv.read_upto:
            return
        new = [ln for ln in conv.lines if ln.id is not None and ln.id > conv.read_upto
               and not ln.own and ln.kind in ("message", "action")]
        if conv.key == self.active:
            if new and conv.divider is None:
                conv.divider = new[0]
                self.redraw.add(conv.key)
        else:
            conv.unread = len(new)
        self.list_changed = True

    def to_mark(self) -> tuple[Conversation, int] | None:
        """The open conversation and its newest message id, when the read marker is
        behind it (the window tells the server: ``ChatClient.mark_read``)."""
        conv = self.active_conversation()
        if conv is None:
            return None
        newest = max((ln.id for ln in conv.lines if ln.id is not None), default=0)
        return (conv, newest) if newest > conv.read_upto else None

    def _on_joined(self, frame: dict[str, Any]) -> None:
        conv = self.conversation(frame["room"])
        if name_key(frame["nick"]) == name_key(self.nick):
            conv.settled = False  # the topic that comes with the join is not news
            if not conv.joined:
                conv.joined = True
                self.list_changed = True
                self._add(conv, Line("system", f"You joined {conv.name}.", frame.get("ts", 0)))
            return
        if frame["nick"] not in conv.users:
            conv.users.append(frame["nick"])
            conv.users.sort(key=str.casefold)
        self._roster(conv)
        self._presence(conv, frame["nick"], "joined", frame.get("ts", 0))

    def _on_left(self, frame: dict[str, Any]) -> None:
        if ("#" + name_key(frame["room"])) not in self.conversations:
            return  # its tab was closed (leaving it): nothing to show
        conv = self.conversation(frame["room"])
        why = {"part": "left", "quit": "quit", "disconnected": "disconnected",
               "timeout": "timed out", "kicked": "was kicked", "banned": "was banned"}
        text = why.get(str(frame.get("reason")), "left")
        by = frame.get("by") if frame.get("reason") == "kicked" else None
        if by:
            text = f"was removed by {by}"
        if frame.get("message") and frame.get("message") != by:
            text += f" ({frame['message']})"
        if name_key(frame["nick"]) == name_key(self.nick):
            conv.joined = False
            conv.users = []
            self.list_changed = True
            self._roster(conv)
            left = f"{by} removed you from {conv.name}" + \
                (f": {frame['message']}" if frame.get("message") not in (None, by) else ".") \
                if by else f"You left {conv.name}."
            self._add(conv, Line("error" if by else "system", left, frame.get("ts", 0)))
            return
        conv.users = [u for u in conv.users if name_key(u) != name_key(frame["nick"])]
        conv.typing.pop(frame["nick"], None)
        self._roster(conv)
        self._presence(conv, frame["nick"], text, frame.get("ts", 0))

    def _presence(self, conv: Conversation, nick: str, verb: str, ts: int) -> None:
        """Someone joined or left: folded into the line of others who did the same
        since the last render ("u001, u002 and 198 others joined."), so that a class
        arriving is one line, not two hundred."""
        pending = self.appended.get(conv.key)
        last = pending[-1] if pending else None
        if last is not None and last.verb == verb and conv.lines and conv.lines[-1] is last:
            last.names.append(nick)
            last.text = folded(last.names, verb)
            return
        self._add(conv, Line("system", folded([nick], verb), ts, names=[nick], verb=verb))

    def _on_renamed(self, frame: dict[str, Any]) -> None:
        old, new = frame["old"], frame["new"]
        mine = name_key(old) == name_key(self.nick)
        if mine:
            self.nick = new
            self._mention = re.compile(rf"(?<![\w]){re.escape(new)}(?![\w])", re.I)
        text = f"You are now {new}." if mine else f"{old} is now {new}."
        for conv in self.conversations.values():
            if conv.kind == "room" and (mine or any(name_key(u) == name_key(old)
                                                    for u in conv.users)):
                conv.users = sorted((new if name_key(u) == name_key(old) else u
                                     for u in conv.users), key=str.casefold)
                self._roster(conv)
                self._add(conv, Line("system", text, frame.get("ts", 0)))
            elif conv.kind == "dm" and name_key(conv.name) == name_key(old):
                conv.name = new
                self.list_changed = True

    def _on_users(self, frame: dict[str, Any]) -> None:
        if frame.get("ref") == WHO_REF:
            names = ", ".join(frame["users"]) or "nobody"
            self.note(f"In {frame['room']}: {names}.")
            return
        conv = self.conversation(frame["room"])
        conv.users = list(frame["users"])
        conv.operators = list(frame.get("operators") or [])
        conv.voiced = list(frame.get("voiced") or [])
        self._roster(conv)

    # ------------------------------------------------------------ rooms with owners

    def is_operator(self, conv: Conversation | None) -> bool:
        return conv is not None and conv.kind == "room" and self.nick in conv.operators

    def muted(self, conv: Conversation | None) -> str:
        """Why one may not speak in ``conv`` now, or ""."""
        if conv is None or conv.kind != "room" or not conv.settings.get("moderated"):
            return ""
        if self.nick in conv.operators or self.nick in conv.voiced:
            return ""
        return (f"{conv.name} is quiet for now: only its operators and the people they "
                "give voice to may speak.")

    def _room(self, frame: dict[str, Any]) -> Conversation | None:
        key = "#" + name_key(str(frame.get("room", "")))
        return self.conversations.get(key)

    def _on_topic(self, frame: dict[str, Any]) -> None:
        conv = self._room(frame)
        if conv is None:
            return
        if frame.get("ref") == TOPIC_REF:
            self.note(f"Topic of {conv.name}: {frame.get('topic') or '(none)'}")
        elif conv.topic != frame.get("topic", "") and frame.get("ts") and conv.settled:
            by, topic = frame.get("by", ""), frame.get("topic", "")
            self._add(conv, Line("system", f"{by} set the topic: {topic}" if topic
                                 else f"{by} cleared the topic", frame.get("ts", 0)))
        conv.topic, conv.topic_by = frame.get("topic", ""), frame.get("by") or ""
        self.topic_changed = True

    def _on_room_info(self, frame: dict[str, Any]) -> None:
        conv = self._room(frame)
        if conv is None:
            return
        conv.settings = dict(frame.get("settings") or {})
        conv.bans = list(frame.get("bans") or [])
        conv.topic = frame.get("topic", conv.topic)
        self.topic_changed = True

    def _on_mode(self, frame: dict[str, Any]) -> None:
        conv = self._room(frame)
        if conv is None:
            return
        for change in frame.get("changes", []):
            mode, on, arg = change.get("mode"), change.get("on"), change.get("arg")
            roles = {"operator": conv.operators, "voice": conv.voiced}.get(mode)
            if roles is not None:
                if on and arg not in roles:
                    roles.append(arg)
                elif not on and arg in roles:
                    roles.remove(arg)
            elif mode == "key":
                conv.settings["key"] = (arg or True) if on else False
            elif mode == "limit":
                conv.settings["limit"] = int(arg) if on and arg else None
            elif mode != "ban":
                conv.settings[mode] = bool(on)
            said = mode_sentence(frame.get("by", ""), change)
            if said:
                self._add(conv, Line("system", said, frame.get("ts", 0)))
        self._roster(conv)
        self.topic_changed = True

    def _on_invited(self, frame: dict[str, Any]) -> None:
        if frame.get("ref") is not None:
            self.note(f"You invited {frame.get('nick')} to {frame.get('room')}.")
            return
        room, by = str(frame.get("room", "")), str(frame.get("by", ""))
        self.invitations = [i for i in self.invitations if name_key(i[0]) != name_key(room)]
        self.invitations.append((room, by))
        self.note(f"{by} invites you to {room}: /join {room}, or the button below.",
                  "notice")

    def _roster(self, conv: Conversation) -> None:
        if conv.key == self.active:
            self.roster_changed = True

    def _on_rooms(self, frame: dict[str, Any]) -> None:
        """The answer to /list (or the Rooms button): one line per room."""
        rooms = frame.get("rooms", [])
        if not rooms:
            self.note("There are no rooms yet: /join ROOM makes one.")
            return
        self.note(f"{len(rooms)} room{'' if len(rooms) == 1 else 's'}"
                  f"{' (the first ones)' if frame.get('more') else ''}; "
                  "/join ROOM to go in:")
        for room in rooms:
            users = room.get("users", 0)
            self.note(f"# {room.get('name', '')}\t{users} online", "help")

    def _on_typing(self, frame: dict[str, Any]) -> None:
        conv = self.conversation(frame["room"])
        conv.typing[frame["nick"]] = time.monotonic() + TYPING_SECONDS

    def _on_notice(self, frame: dict[str, Any]) -> None:
        self.note(frame.get("text", ""), "notice")

    def _on_kicked(self, frame: dict[str, Any]) -> None:
        self.note(f"You were removed from the server: {frame.get('reason', '')}", "error")

    def _on_error(self, frame: dict[str, Any]) -> None:
        if frame.get("ref") == OLDER_REF:  # an older page refused: it may be asked again
            for conv in self.conversations.values():
                conv.loading = False
        self.note(frame.get("message", "Error."), "error")


MODE_SENTENCES = {  # (on, off) for each mode of a `mode` event
    "operator": ("{by} made {arg} an operator", "{by} took operator from {arg}"),
    "voice": ("{by} gave voice to {arg}", "{by} took voice from {arg}"),
    "moderated": ("{by} made the room quiet: only operators and voiced people speak",
                  "{by} let everyone speak again"),
    "topic_lock": ("{by} let only operators set the topic", "{by} let anyone set the topic"),
    "invite_only": ("{by} made the room invitation only", "{by} opened the room to all"),
    "secret": ("{by} hid the room from the list", "{by} listed the room again"),
    "key": ("{by} set a key on the room", "{by} removed the room's key"),
    "limit": ("{by} limited the room to {arg} people", "{by} removed the room's limit"),
    "ban": ("{by} banned {arg} from the room", "{by} lifted the ban on {arg}"),
}


def mode_sentence(by: str, change: dict[str, Any]) -> str:
    """A `mode` change as a line for the conversation ("" for an unknown mode)."""
    pair = MODE_SENTENCES.get(str(change.get("mode")))
    if pair is None:
        return ""
    return pair[0 if change.get("on") else 1].format(by=by, arg=change.get("arg", ""))


def first_unread(lines: deque, unread: int) -> Line | None:
    """The oldest of the last ``unread`` messages from others: where "new since you
    left" goes."""
    found = None
    for line in reversed(lines):
        if unread <= 0:
            break
        if line.kind in ("message", "action") and not line.own:
            found, unread = line, unread - 1
    return found


def folded(names: list[str], verb: str) -> str:
    """"a joined.", "a and b joined.", "a, b and c joined.", "a, b and 3 others joined."."""
    if len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    elif len(names) == 3:
        who = f"{names[0]}, {names[1]} and {names[2]}"
    else:
        who = f"{names[0]}, {names[1]} and {len(names) - 2} others"
    return f"{who} {verb}."
