"""IRC clients in the same rooms: the IRC front door (RFC 1459/2812, IRCv3 caps).

``IrcDoor`` reads IRC lines and gives the hub protocol frames (``PRIVMSG #general``
is a `send` to `general`); what IRC asks that the protocol has no frame for (CAP,
USER, MODE and TOPIC queries, AWAY) it answers itself. ``IrcCodec`` writes the hub's
frames as IRC lines. Codecs of connections that negotiated the same capabilities
share their broadcast bytes (``share_key``): a room's batch is written once per set
of capabilities, not per member; numerics, which name their recipient, are written
per connection.

This is the core of the gateway: registration with CAP (server-time, message-tags,
echo-message), JOIN, PART, PRIVMSG/NOTICE (with CTCP ACTION), NICK, NAMES, WHO,
LIST, TOPIC and MODE queries, PING/PONG, AWAY, QUIT.
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any

from chat.model import Peer
from chat.protocol import CLOSED, NEED_DATA

SERVER = "lanchat"  # the server's name in prefixes
MAX_LINE = 8191 + 512  # IRCv3: tags up to 8191 bytes, then the 512-byte message
MAX_ASKED = 256  # requests remembered for their answers, per connection
# multi-prefix and userhost-in-names: lanchat has no channel prefixes, and NAMES gives
# full masks when asked
CAPS = ("server-time", "message-tags", "echo-message", "multi-prefix", "userhost-in-names")
MAX_BODY = 512  # RFC 1459: a line without its tags, CR-LF included
TOO_LONG = b"\x00too long"  # in place of a line past MAX_LINE (it is dropped)
ISUPPORT = ("CHANTYPES=# CASEMAPPING=ascii NICKLEN=24 CHANNELLEN=33 TOPICLEN=0 "
            "PREFIX=() CHANMODES=,,,nt MODES=0 SAFELIST")
NUMERIC_OF = {  # protocol error codes as IRC numerics (the rest become NOTICEs)
    "nick_taken": "433", "bad_nick": "432", "nick_registered": "433",
    "not_in_room": "442", "no_such_user": "401", "bad_room": "403",
    "not_registered": "451", "auth_failed": "464", "banned": "465",
    "already_registered": "462",
}


def tag_escape(value: str) -> str:
    return (value.replace("\\", "\\\\").replace(";", "\\:").replace(" ", "\\s")
            .replace("\r", "\\r").replace("\n", "\\n"))


def split_line(line: str) -> tuple[dict[str, str], str | None, str, list[str]]:
    """(tags, source, command, params) of one IRC line (RFC 1459 with IRCv3 tags)."""
    tags: dict[str, str] = {}
    if line.startswith("@"):
        raw, _, line = line[1:].partition(" ")
        for item in raw.split(";"):
            key, _, value = item.partition("=")
            tags[key] = value
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


class IrcCodec:
    """Hub frames (JSON lines) as IRC lines for one connection."""

    farewell = b"ERROR :Closing link\r\n"  # the server's last line before it closes

    def __init__(self, server_name: str) -> None:
        self.server_name = server_name
        self.nick = "*"  # the recipient, for numerics
        self.caps: frozenset[str] = frozenset()
        self.share_key: Any = ("irc", self.caps)
        # ref -> (the IRC command, its target): what an answer or an error refers to
        self.asked: dict[str, tuple[str, str]] = {}

    def enable(self, caps: frozenset[str]) -> None:
        self.caps = caps
        self.share_key = ("irc", caps)

    def wire(self, lines: bytes) -> bytes:
        out: list[str] = []
        for line in lines.split(b"\n")[:-1]:
            try:
                frame = json.loads(line)
            except ValueError:
                continue
            write = getattr(self, f"_{frame.get('type')}", None)
            if write is not None:
                write(frame, out)
        return "".join(f"{text}\r\n" for text in out).encode("utf-8", "replace")

    def pieces(self, wired: bytes) -> list[tuple[bytes, bytes]]:
        return [(b"", wired)]  # a failed commit cannot be taken back line by line here

    # ------------------------------------------------------------ helpers

    def _tags(self, frame: dict[str, Any]) -> str:
        tags = []
        if "server-time" in self.caps and "ts" in frame:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(frame["ts"] / 1000))
            tags.append(f"time={stamp}.{frame['ts'] % 1000:03d}Z")
        if "message-tags" in self.caps and "id" in frame:
            tags.append(f"msgid={frame['id']}")
        return "@" + ";".join(tags) + " " if tags else ""

    def _numeric(self, out: list[str], code: str, *params: str) -> None:
        *middle, last = (self.nick, *params)
        out.append(f":{self.server_name} {code} {' '.join(middle)} :{last}")

    @staticmethod
    def _mask(nick: str) -> str:
        return f"{nick}!{nick}@lanchat"

    # ------------------------------------------------------------ frames

    def _welcome(self, frame: dict[str, Any], out: list[str]) -> None:
        self.nick = frame["nick"]
        name = frame.get("server", SERVER)
        self._numeric(out, "001", f"Welcome to {name}, {self.nick}")
        self._numeric(out, "002", f"Your host is {self.server_name}, running lanchat")
        self._numeric(out, "003", "This server is a lanchat server")
        out.append(f":{self.server_name} 004 {self.nick} {self.server_name} lanchat i nt")
        network = name.replace(" ", "_")
        out.append(f":{self.server_name} 005 {self.nick} {ISUPPORT} NETWORK={network}"
                   " :are supported by this server")
        motd = frame.get("motd") or ""
        if motd:
            self._numeric(out, "375", f"- {self.server_name} Message of the day -")
            for text in motd.splitlines():
                self._numeric(out, "372", f"- {text}")
            self._numeric(out, "376", "End of /MOTD command.")
        else:
            self._numeric(out, "422", "MOTD File is missing")

    def _message(self, frame: dict[str, Any], out: list[str]) -> None:
        if frame.get("history") and "server-time" not in self.caps:
            return  # a replay without times would read as said now: modern clients ask
        sender = frame.get("from", "")
        if "ref" in frame:
            self.asked.pop(frame["ref"], None)  # answered: its echo
        if sender == self.nick and "echo-message" not in self.caps and "ref" in frame \
                and not frame.get("history"):
            return  # its own message: only echoed to those who asked for it
        target = f"#{frame['room']}" if "room" in frame else frame.get("to", self.nick)
        text = frame.get("text", "")
        if "file" in frame:
            text = f"[file] {text} ({frame['file'].get('size', 0)} bytes)"
        parts = text.split("\n")
        for part in parts:
            body = f"\x01ACTION {part}\x01" if frame.get("action") else part
            out.append(f"{self._tags(frame)}:{self._mask(sender)} PRIVMSG {target} :{body}")

    def _joined(self, frame: dict[str, Any], out: list[str]) -> None:
        out.append(f"{self._tags(frame)}:{self._mask(frame['nick'])} JOIN #{frame['room']}")

    def _left(self, frame: dict[str, Any], out: list[str]) -> None:
        reason = frame.get("message") or ("" if frame.get("reason") == "part"
                                          else frame.get("reason", ""))
        if frame.get("reason") == "kicked":
            out.append(f":{self.server_name} KICK #{frame['room']} {frame['nick']} :{reason}")
            return
        tail = f" :{reason}" if reason else ""
        out.append(f"{self._tags(frame)}:{self._mask(frame['nick'])} PART #{frame['room']}"
                   f"{tail}")

    def _renamed(self, frame: dict[str, Any], out: list[str]) -> None:
        if frame["old"] == self.nick:
            self.nick = frame["new"]
        out.append(f"{self._tags(frame)}:{self._mask(frame['old'])} NICK {frame['new']}")

    def _users(self, frame: dict[str, Any], out: list[str]) -> None:
        room = f"#{frame['room']}"
        if self.asked.pop(str(frame.get("ref")), ("", ""))[0] == "WHO":
            for nick in frame["users"]:
                self._numeric(out, "352", room, nick, "lanchat", self.server_name, nick, "H",
                              f"0 {nick}")
            self._numeric(out, "315", room, "End of /WHO list.")
            return
        users = frame["users"]
        names = " ".join(self._mask(n) for n in users) if "userhost-in-names" in self.caps \
            else " ".join(users)
        out.append(f":{self.server_name} 353 {self.nick} = {room} :{names}")
        self._numeric(out, "366", room, "End of /NAMES list.")

    def _rooms(self, frame: dict[str, Any], out: list[str]) -> None:
        self._numeric(out, "321", "Channel", "Users  Name")
        for room in frame.get("rooms", []):
            self._numeric(out, "322", f"#{room['name']}", str(room["users"]), "")
        self._numeric(out, "323", "End of /LIST")

    def _typing(self, frame: dict[str, Any], out: list[str]) -> None:
        if "message-tags" in self.caps:
            out.append(f"@+typing=active :{self._mask(frame['nick'])} TAGMSG #{frame['room']}")

    def _notice(self, frame: dict[str, Any], out: list[str]) -> None:
        out.append(f"{self._tags(frame)}:{self.server_name} NOTICE * :{frame.get('text', '')}")

    def _kicked(self, frame: dict[str, Any], out: list[str]) -> None:
        out.append(f"ERROR :Closing link: {frame.get('reason', '')}")

    def _ping(self, frame: dict[str, Any], out: list[str]) -> None:
        out.append(f"PING :{frame.get('token', '')}")

    def _pong(self, frame: dict[str, Any], out: list[str]) -> None:
        out.append(f":{self.server_name} PONG {self.server_name} :{frame.get('token', '')}")

    def _error(self, frame: dict[str, Any], out: list[str]) -> None:
        code, message = frame.get("code", ""), frame.get("message", "")
        asked, target = self.asked.pop(str(frame.get("ref")), ("", "*"))
        if asked == "NOTICE":
            return  # RFC 1459: a NOTICE is never answered, errors included
        if asked == "PRIVMSG" and code == "not_in_room":
            self._numeric(out, "404", target, message)  # cannot send to channel
            return
        if asked in ("NAMES", "WHO"):  # of a channel that does not exist: an empty list
            end = ("366", "End of /NAMES list.") if asked == "NAMES" else \
                ("315", "End of /WHO list.")
            self._numeric(out, end[0], target, end[1])
            return
        numeric = NUMERIC_OF.get(code)
        if numeric is not None:
            self._numeric(out, numeric, target or "*", message)
        elif code in ("server_full", "internal_error", "bad_proto"):
            out.append(f"ERROR :{message}")
        else:
            out.append(f":{self.server_name} NOTICE {self.nick} :{message}")


class IrcDoor:
    """IRC lines in, protocol frames out (``next_event``, as ``FrameDecoder``)."""

    def __init__(self, peer: Peer, codec: IrcCodec, max_line: int = MAX_LINE) -> None:
        self.peer = peer
        self.codec = codec
        self.max_line = max_line
        self._buffer = bytearray()
        self._lines: deque[bytes] = deque()
        self._frames: deque[dict[str, Any]] = deque()
        self._eof = False
        self._skipping = False
        self.nick: str | None = None
        self.user = False
        self.password: str | None = None
        self.negotiating = False  # CAP LS/REQ came before registration: wait for END
        self.registered = False
        self._refs = 0
        peer.door = "irc"

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
        while not self._frames and self._lines:
            self._command(self._lines.popleft().decode("utf-8", "replace"))
        if self._frames:
            return self._frames.popleft()
        return CLOSED if self._eof else NEED_DATA

    # ------------------------------------------------------------ commands

    def _reply(self, text: str) -> None:
        self.peer.queue_wire((text + "\r\n").encode("utf-8", "replace"))

    def _numeric(self, code: str, *params: str) -> None:
        *middle, last = (self.nick or "*", *params)
        self._reply(f":{self.codec.server_name} {code} {' '.join(middle)} :{last}")

    def _ref(self, asked: str, target: str) -> str:
        """A ref for a request, remembering what it was for its answer or error."""
        self._refs += 1
        ref = f"irc{self._refs}"
        asked_refs = self.codec.asked
        asked_refs[ref] = (asked, target)
        while len(asked_refs) > MAX_ASKED:  # answers come in order: the oldest are done
            del asked_refs[next(iter(asked_refs))]
        return ref

    def _frame(self, **frame: Any) -> None:
        self._frames.append(frame)

    def _command(self, line: str) -> None:
        if not line.strip():
            return
        body = line.split(" ", 1)[1] if line.startswith("@") and " " in line else line
        if line == TOO_LONG.decode() or len(body.encode("utf-8")) + 2 > MAX_BODY:
            self._numeric("417", "Input line was too long")
            return
        _, _, command, params = split_line(line)
        handler = getattr(self, f"_cmd_{command.lower()}", None)
        if handler is None:
            if self.codec.nick != "*":
                self._numeric("421", command, "Unknown command")
            return
        if self.codec.nick == "*" and command not in ("CAP", "NICK", "USER", "PASS", "PING",
                                                      "QUIT", "PONG"):
            self._numeric("451", "You have not registered")
            return
        handler(params)

    def _register(self) -> None:
        if self.registered or self.nick is None or not self.user or self.negotiating:
            return
        self.registered = True
        hello: dict[str, Any] = {"type": "hello", "nick": self.nick, "proto": 1, "rooms": [],
                                 "client": "irc", "ref": self._ref("NICK", self.nick)}
        if self.password is not None:
            hello["password"] = self.password
        self._frames.append(hello)

    def _cmd_cap(self, params: list[str]) -> None:
        sub = params[0].upper() if params else ""
        if sub == "LS":
            self.negotiating = not self.registered
            self._reply(f":{self.codec.server_name} CAP {self.nick or '*'} LS :{' '.join(CAPS)}")
        elif sub == "REQ" and len(params) > 1:
            self.negotiating = not self.registered
            wanted = params[1].split()
            names = {w.lstrip("-") for w in wanted}
            verb = "ACK" if names <= set(CAPS) else "NAK"
            if verb == "ACK":
                caps = set(self.codec.caps)
                for w in wanted:
                    (caps.discard if w.startswith("-") else caps.add)(w.lstrip("-"))
                self.codec.enable(frozenset(caps))
            self._reply(f":{self.codec.server_name} CAP {self.nick or '*'} {verb} :{params[1]}")
        elif sub == "LIST":
            self._reply(f":{self.codec.server_name} CAP {self.nick or '*'} LIST :"
                        f"{' '.join(sorted(self.codec.caps))}")
        elif sub == "END":
            self.negotiating = False
            self._register()
        else:
            self._numeric("410", sub or "*", "Invalid CAP command")

    def _cmd_pass(self, params: list[str]) -> None:
        if params:
            self.password = params[0]

    def _cmd_nick(self, params: list[str]) -> None:
        if not params:
            self._numeric("431", "No nickname given")
            return
        if self.codec.nick != "*":  # welcomed: a rename
            self._frame(type="nick", nick=params[0], ref=self._ref("NICK", params[0]))
            return
        self.nick = params[0]
        if self.registered:  # its hello was refused (a taken nickname): try this one
            self.registered = False
        self._register()

    def _cmd_user(self, params: list[str]) -> None:
        if len(params) < 4 or not params[3]:
            self._numeric("461", "USER", "Not enough parameters")
            return
        self.user = True
        self._register()

    def _cmd_ping(self, params: list[str]) -> None:
        if not params:
            self._numeric("461", "PING", "Not enough parameters")
            return
        self._frame(type="ping", token=params[-1])

    def _cmd_pong(self, params: list[str]) -> None:
        self._frame(type="pong", token=params[-1] if params else "")

    def _cmd_quit(self, params: list[str]) -> None:
        self._frame(type="bye", reason=params[0] if params else "")

    def _cmd_join(self, params: list[str]) -> None:
        if not params:
            self._numeric("461", "JOIN", "Not enough parameters")
            return
        for name in params[0].split(","):
            if not name.startswith("#") or len(name) < 2:
                self._numeric("403", name, "No such channel")
                continue
            self._frame(type="join", room=name[1:], ref=self._ref("JOIN", name))

    def _cmd_part(self, params: list[str]) -> None:
        if not params:
            self._numeric("461", "PART", "Not enough parameters")
            return
        for name in params[0].split(","):
            part: dict[str, Any] = {"type": "part", "room": name.lstrip("#"),
                                    "ref": self._ref("PART", name)}
            if len(params) > 1 and params[1]:
                part["message"] = params[1]
            self._frames.append(part)

    def _cmd_privmsg(self, params: list[str], notice: bool = False) -> None:
        if len(params) < 2 or not params[1]:
            if not notice:
                self._numeric("412", "No text to send")
            return
        target, text = params[0], params[1]
        frame: dict[str, Any] = {"type": "send", "text": text,
                                 "ref": self._ref("NOTICE" if notice else "PRIVMSG", target)}
        if text.startswith("\x01ACTION ") and text.endswith("\x01"):
            frame["text"], frame["action"] = text[8:-1], True
        elif text.startswith("\x01"):
            return  # other CTCP requests: not answered
        if target.startswith("#"):
            frame["room"] = target[1:]
        else:
            frame["to"] = target
        self._frames.append(frame)

    def _cmd_notice(self, params: list[str]) -> None:
        self._cmd_privmsg(params, notice=True)

    def _cmd_names(self, params: list[str]) -> None:
        for name in (params[0].split(",") if params else []):
            self._frame(type="who", room=name.lstrip("#"), ref=self._ref("NAMES", name))

    def _cmd_who(self, params: list[str]) -> None:
        if params and params[0].startswith("#"):
            self._frame(type="who", room=params[0][1:], ref=self._ref("WHO", params[0]))
        else:
            self._numeric("315", params[0] if params else "*", "End of /WHO list.")

    def _cmd_list(self, params: list[str]) -> None:
        self._frame(type="rooms", ref=self._ref("LIST", "*"))

    def _cmd_topic(self, params: list[str]) -> None:
        if params:
            self._numeric("331", params[0], "No topic is set")

    def _cmd_mode(self, params: list[str]) -> None:
        if not params:
            return
        if params[0].startswith("#"):
            self._numeric("324", params[0], "+nt")
        else:
            self._reply(f":{self.codec.server_name} 221 {self.nick} +i")

    def _cmd_away(self, params: list[str]) -> None:
        if params and params[0]:
            self._numeric("306", "You have been marked as being away")
        else:
            self._numeric("305", "You are no longer marked as being away")
