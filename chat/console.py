"""The headless server's operator console: commands typed on standard input.

``--headless --console`` gives a machine with no display what the server window's
controls give: who is online, speaking as `server`, kicks, bans and lifting them, and
one thing more: dropping the account of a nickname whose password was forgotten.
The server's loop watches standard input like a socket and hands each chunk read to
``Console.feed``; answers go to ``write`` (standard output). Nothing here reads or
waits on its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

from chat.bans import KINDS, ban_target
from chat.errors import ChatError
from chat.gate import when
from chat.operator import Operator
from chat.rules import mode_string, parse_modes

MAX_LINE = 4096  # bytes of one command line; a longer line is refused, not buffered
DURATION = re.compile(r"(\d+)([smhdw])")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
HELP = """\
commands:
  who: who is online, from where, in which rooms
  say ROOM TEXT: speak in a room as 'server'
  notice TEXT: a notice to everyone online
  kick NICK [REASON]: close a user's connection, telling why
  topic ROOM TEXT: set a room's topic (as its operator would; any room)
  mode ROOM [+-FLAGS ARGS]: a room's settings, or change them as IRC writes it:
    +m quiet, +t topic by operators, +i invitation only, +s secret, +k KEY,
    +l LIMIT, +o/+v NICK operator/voice, +b MASK room ban (a nick or an address)
  op ROOM NICK, deop ROOM NICK, voice ROOM NICK, devoice ROOM NICK
  kick-room ROOM NICK [REASON]: out of one room, not off the server
  oper-password NAME:PASSWORD: lets you sign in as the operator from a client (IRC's
    OPER NAME PASSWORD); "oper-password off" turns it off
  ban nick|address VALUE [FOR] [REASON]: FOR is 30m, 2h, 7d, 1w... or forever (the
    default); VALUE is a nickname, an address or a network (10.0.0.0/24)
  unban nick|address VALUE: lift a ban
  bans: the bans in force
  accounts: the registered nicknames
  unregister NICK: drop a nickname's account (its password was forgotten)
  files: the files kept (id, size, name)
  delete-file ID: delete a kept file (its id's first 8 digits are enough)
  partials: unfinished uploads (id, bytes so far, idle time; removed after
    --partial-idle without a chunk)
  delete-partial ID: delete an unfinished upload (cut if it is being sent)
  nodes: the servers of this cluster (--redis) and their users
  stop: shut the server down"""


def parse_duration(word: str) -> float | None:
    """Seconds of ``30m``/``2h``/``7d``...; ``ValueError`` when it is not one."""
    if word == "forever":
        return None
    match = DURATION.fullmatch(word)
    if match is None or int(match[1]) == 0:
        raise ValueError(word)
    return int(match[1]) * UNIT_S[match[2]]


def ago(seconds: float) -> str:
    """``seconds`` in the largest unit that fits: 45s, 12m, 5h, 3d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


class Console:
    def __init__(self, operator: Operator, write: Callable[[str], None],
                 stop: Callable[[], None], prefix: str = "") -> None:
        self.operator = operator
        self.prefix = prefix  # how commands are typed where this console is: "/" in
        # the server window, where a line without it is said to the room
        self.write = write
        self.stop = stop
        self._buffer = b""
        self._skipping = False
        self._commands: dict[str, Callable[[str], None]] = {
            "help": self._help, "who": self._who, "say": self._say,
            "notice": self._notice, "kick": self._kick, "ban": self._ban,
            "unban": self._unban, "bans": self._bans, "accounts": self._accounts,
            "unregister": self._unregister, "stop": self._stop, "files": self._files,
            "delete-file": self._delete_file, "partials": self._partials,
            "delete-partial": self._delete_partial, "nodes": self._nodes,
            "topic": self._topic, "mode": self._mode, "kick-room": self._kick_room,
            "oper-password": self._oper_password,
            "op": partial(self._role, "operator", True),
            "deop": partial(self._role, "operator", False),
            "voice": partial(self._role, "voice", True),
            "devoice": partial(self._role, "voice", False),
        }

    def feed(self, data: bytes) -> None:
        """Run the complete lines in ``data`` (a chunk of standard input)."""
        if self._skipping:  # the rest of a line that was too long
            if b"\n" not in data:
                return
            data = data.split(b"\n", 1)[1]
            self._skipping = False
        *lines, rest = (self._buffer + data).split(b"\n")
        self._skipping = len(rest) > MAX_LINE
        self._buffer = b"" if self._skipping else rest
        for line in lines + ([rest] if self._skipping else []):
            if len(line) > MAX_LINE:
                self.write(f"error: a command line is at most {MAX_LINE} bytes")
            else:
                self.run(line.decode("utf-8", "replace").strip())

    def run(self, line: str) -> None:
        if not line:
            return
        name, _, rest = line.partition(" ")
        command = self._commands.get(name.lower())
        if command is None:
            self.write(f"error: unknown command '{name}' (type '{self.prefix}help')")
            return
        try:
            command(rest.strip())
        except (ChatError, ValueError) as exc:
            self.write(f"error: {getattr(exc, 'message', None) or exc}")

    # ------------------------------------------------------------ commands

    def _help(self, _rest: str) -> None:
        if not self.prefix:
            self.write(HELP)
            return
        head, *lines = HELP.splitlines()  # in the window: each command with its "/"
        self.write("\n".join([f"{head} (type each after '{self.prefix}')", *lines]))

    def _nodes(self, _rest: str) -> None:
        cluster = self.operator.hub.sequencer
        if not cluster.url:
            raise ValueError("this server is not part of a cluster (start it with --redis)")
        nodes = cluster.members()
        self.write(f"{len(nodes)} node(s) through {cluster.url}, "
                   f"{sum(n[2] for n in nodes)} online in all; {cluster.state}")
        for node, address, users, me in nodes:
            self.write(f"  {node}  {address:<24} {users:>6} online{'  (this one)' if me else ''}")

    def _who(self, _rest: str) -> None:
        hub = self.operator.hub
        users = sorted(hub.users.values(), key=lambda p: p.key or "")
        converging = ("; the cluster is converging, the list may change by itself"
                      if hub.sequencer.converging else "")
        self.write(f"{len(users)} online{converging}")
        for peer in users:
            rooms = ", ".join(room.name for room in peer.rooms.values()) or "-"
            self.write(f"  {peer.nick:<24} {peer.host:<39} {rooms}")

    def _say(self, rest: str) -> None:
        room, _, text = rest.partition(" ")
        if not room or not text.strip():
            raise ValueError("usage: say ROOM TEXT")
        self.operator.say(room, text.strip())
        self.write(f"said in {room}")

    def _notice(self, rest: str) -> None:
        if not rest:
            raise ValueError("usage: notice TEXT")
        self.operator.notice(rest)
        self.write("notice sent")

    def _topic(self, rest: str) -> None:
        room, _, text = rest.partition(" ")
        if not room:
            raise ValueError("usage: topic ROOM TEXT (no TEXT: clear it)")
        self.operator.room_topic(room, text.strip())
        self.write(f"topic of {room} set" if text.strip() else f"topic of {room} cleared")

    def _mode(self, rest: str) -> None:
        room, *words = rest.split()
        if not room:
            raise ValueError("usage: mode ROOM [+-FLAGS ARGS]")
        if not words:
            info = self.operator.room_info(room)
            on = [k for k, v in info.settings.items() if v]
            self.write(f"{info.room}: {', '.join(on) or 'no settings'}; topic: "
                       f"{info.topic or '-'}; {len(info.bans or [])} ban(s)")
            return
        changes, unknown = parse_modes(words)
        if unknown or not changes:
            raise ValueError(f"unknown or incomplete mode(s) {''.join(unknown)}; "
                             "type 'help'")
        done = self.operator.room_modes(room, changes)
        self.write(f"{room}: {mode_string(done)}" if done else f"{room}: nothing changed")

    def _role(self, mode: str, on: bool, rest: str) -> None:
        room, _, nick = rest.partition(" ")
        if not room or not nick.strip():
            raise ValueError("usage: op|deop|voice|devoice ROOM NICK")
        done = self.operator.room_modes(room, [(mode, on, nick.strip())])
        self.write(f"{room}: {mode_string(done)}" if done else f"{room}: nothing changed")

    def _oper_password(self, rest: str) -> None:
        config = self.operator.hub.config
        if rest == "off":
            config.oper = ""
            self.write("operator sign-in from clients is off")
            return
        name, _, password = rest.partition(":")
        if not name or len(password) < 8 or " " in name:
            raise ValueError("usage: oper-password NAME:PASSWORD (a password of 8 "
                             "characters or more), or oper-password off")
        config.oper = rest
        self.write(f"the operator may sign in from a client as {name}")

    def _kick_room(self, rest: str) -> None:
        room, _, more = rest.partition(" ")
        nick, _, reason = more.strip().partition(" ")
        if not room or not nick:
            raise ValueError("usage: kick-room ROOM NICK [REASON]")
        self.operator.room_kick(room, nick, reason.strip())
        self.write(f"kicked {nick} out of {room}")

    def _kick(self, rest: str) -> None:
        nick, _, reason = rest.partition(" ")
        if not nick:
            raise ValueError("usage: kick NICK [REASON]")
        if not self.operator.kick(nick, reason.strip() or "Removed by the operator."):
            raise ValueError(f"nobody named '{nick}' is online")
        self.write(f"kicked {nick}")

    def _ban(self, rest: str) -> None:
        words = rest.split(" ")
        if len(words) < 2 or words[0] not in KINDS:
            raise ValueError("usage: ban nick|address VALUE [FOR] [REASON]")
        kind, value, more = words[0], words[1], [w for w in words[2:] if w]
        seconds = None
        if more:
            try:
                seconds = parse_duration(more[0])
                more = more[1:]
            except ValueError:
                pass  # no duration given: the words are the reason
        ban, closed = self.operator.ban(kind, value, " ".join(more), seconds)
        until = f"until {when(ban.expires)}" if ban.expires else "until lifted"
        self.write(f"banned {kind} {ban.value} {until} ({closed} connection(s) closed)")

    def _unban(self, rest: str) -> None:
        kind, _, value = rest.partition(" ")
        if kind not in KINDS or not value.strip():
            raise ValueError("usage: unban nick|address VALUE")
        key, spelled = ban_target(kind, value)
        if not self.operator.unban(kind, key):
            raise ValueError(f"there is no ban on {kind} {spelled}")
        self.write(f"lifted the ban on {kind} {spelled}")

    def _bans(self, _rest: str) -> None:
        bans = self.operator.ban_list()
        self.write(f"{len(bans)} ban(s)")
        for ban in bans:
            until = when(ban.expires) if ban.expires else "forever"
            self.write(f"  {ban.kind:<8} {ban.value:<40} {until:<17} {ban.reason}")

    def _accounts(self, _rest: str) -> None:
        accounts = self.operator.accounts()
        self.write(f"{len(accounts)} account(s)")
        for nick, created in accounts:
            self.write(f"  {nick:<24} registered {when(created)}")

    def _unregister(self, rest: str) -> None:
        if not rest or " " in rest:
            raise ValueError("usage: unregister NICK")
        if not self.operator.drop_account(rest):
            raise ValueError(f"the nickname '{rest}' has no account")
        self.write(f"dropped the account of {rest}")

    def _files(self, _rest: str) -> None:
        kept = self.operator.files()
        if not kept:
            self.write("no files kept")
        for sha, size, name in kept:
            self.write(f"{sha[:12]}  {size:>12,} bytes  {name}")

    def _delete_file(self, rest: str) -> None:
        deleted = self.operator.delete_file(rest)
        if deleted is None:
            self.write(f"error: no single kept file has an id starting with '{rest}' "
                       "(give at least 8 digits; see 'files')")
        else:
            self.write(f"deleted file {deleted[:12]}; its messages stay, downloads now "
                       "answer no_such_file")

    def _partials(self, _rest: str) -> None:
        partials = self.operator.partials()
        if not partials:
            self.write("no unfinished uploads")
        for unfinished in partials:
            state = "being sent" if unfinished.open else f"idle {ago(unfinished.idle)}"
            self.write(f"{unfinished.name[:12]}  {unfinished.size:>12,} bytes  {state}")

    def _delete_partial(self, rest: str) -> None:
        deleted = self.operator.delete_partial(rest)
        if deleted is None:
            self.write(f"error: no single unfinished upload has an id starting with "
                       f"'{rest}' (give at least 8 digits; see 'partials')")
        else:
            self.write(f"deleted unfinished upload {deleted[:12]}")

    def _stop(self, _rest: str) -> None:
        self.write("stopping")
        self.stop()
