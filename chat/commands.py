"""Slash commands typed in the chat window, parsed without any GUI.

``parse_input`` turns one input line into a ``Command``: plain text becomes a
`say`; ``/me``, ``/msg``, ``/nick``, ``/join``, ``/part``, ``/who``, ``/register``,
``/unregister``, ``/list``, ``/help``, ``/quit`` and the room operators' ``/topic``,
``/op``, ``/voice``, ``/kick``, ``/ban``, ``/invite``, ``/mode`` become their own;
anything else is an error for the window to show. ``is_secret`` tells which lines carry a password
(the window keeps those out of its Up/Down recall).
"""

from __future__ import annotations

from typing import NamedTuple

HELP = {
    "/nick NAME [PASSWORD]": "change your nickname (a registered one needs its password)",
    "/me ACTION": "say what you are doing (\"/me waves\")",
    "/msg NICK TEXT": "send a direct message",
    "/join ROOM": "join a room (created if new) and switch to it",
    "/part [ROOM]": "leave a room (the current one by default)",
    "/who [ROOM]": "list who is in a room",
    "/list": "list the rooms there are, with how many are in each",
    "/topic [TEXT]": "set the room's topic (no TEXT: show it)",
    "/op NICK, /deop NICK": "make someone an operator of the room, or not (operators)",
    "/voice NICK, /devoice NICK": "let someone speak in a quiet room, or not (operators)",
    "/kick NICK [REASON]": "remove someone from the room, not the server (operators)",
    "/ban NICK|ADDRESS, /unban": "keep someone out of the room (operators)",
    "/invite NICK": "invite someone to the room",
    "/mode [+-FLAGS ARGS]": "the room's settings, as IRC writes them: +m quiet, +i by "
                            "invitation, +t topic by operators, +k KEY, +l LIMIT",
    "/mute": "no bell or flashing for this conversation (again: back on)",
    "/register PASSWORD": "protect your nickname with a password (or change it)",
    "/unregister": "drop your nickname's password",
    "/help": "show this list",
    "/quit [REASON]": "leave the chat and close the window",
}


class Command(NamedTuple):
    name: str  # say, me, msg, nick, join, part, who, register, unregister, help, quit, error
    args: tuple[str, ...] = ()


_ARITY = {"nick": 1, "join": 1, "me": 1, "msg": 2, "register": 1, "op": 1, "deop": 1,
          "voice": 1, "devoice": 1, "kick": 1, "ban": 1, "unban": 1,
          "invite": 1}  # required arguments
_HELP_OF = {"deop": "op", "devoice": "voice", "unban": "ban"}  # listed with another
SECRET = ("nick", "register")  # commands whose arguments may hold a password


def parse_input(text: str) -> Command:
    """Parse what the user typed (already known not to be blank)."""
    if not text.startswith("/") or text.startswith("//"):
        return Command("say", (text[1:] if text.startswith("//") else text,))
    head, _, rest = text[1:].partition(" ")
    name = head.lower()
    rest = rest.strip()
    if name == "msg":
        to, _, body = rest.partition(" ")
        args: tuple[str, ...] = (to, body) if to and body.strip() else ()
    elif name == "me":
        args = (rest,) if rest else ()
    elif name == "nick":
        nick, _, password = rest.partition(" ")
        args = (nick, password.strip()) if password.strip() else (nick,) if nick else ()
    elif name in ("join", "part", "who", "register", "topic", "mode", "op", "deop",
                  "voice", "devoice", "ban", "unban", "invite"):
        args = (rest,) if rest else ()
    elif name == "kick":
        nick, _, reason = rest.partition(" ")
        args = (nick, reason.strip()) if nick else ()
    elif name in ("unregister", "mute"):
        args = ()
    elif name == "quit":
        args = (rest,) if rest else ()
    elif name in ("help", "list"):
        args = ()
    else:
        return Command("error", (f"Unknown command /{head}. Type /help for the list.",))
    if len(args) < _ARITY.get(name, 0):
        usage = next(k for k in HELP if k.split()[0].rstrip(",") ==
                     f"/{_HELP_OF.get(name, name)}")
        return Command("error", (f"Usage: {usage}",))
    return Command(name, args)


KEYS = {
    "Enter": "send",
    "Shift+Enter": "a new line in the message",
    "Up / Down": "what you sent before (on the first or last line of the input)",
    "double-click a name": "a direct message to that person",
}


def help_lines() -> list[str]:
    """Commands and keys, one per line: "what you type<TAB>what it does" (the window
    sets a tab stop, so the second column lines up in any font)."""
    return [f"{usage}\t{what}" for usage, what in (*HELP.items(), *KEYS.items())]


def is_secret(text: str) -> bool:
    """Whether a typed line may carry a password (not to be recalled with Up)."""
    command = parse_input(text)
    return command.name == "register" or (command.name == "nick" and len(command.args) > 1)
