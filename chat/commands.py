"""Slash commands typed in the chat window, parsed without any GUI.

``parse_input`` turns one input line into a ``Command``: plain text becomes a
`say`; ``/me``, ``/msg``, ``/nick``, ``/join``, ``/part``, ``/who``, ``/help`` and
``/quit`` become their own; anything else is an error for the window to show.
"""

from __future__ import annotations

from typing import NamedTuple

HELP = {
    "/nick NAME": "change your nickname",
    "/me ACTION": "say what you are doing (\"/me waves\")",
    "/msg NICK TEXT": "send a direct message",
    "/join ROOM": "join a room (created if new) and switch to it",
    "/part [ROOM]": "leave a room (the current one by default)",
    "/who [ROOM]": "list who is in a room",
    "/help": "show this list",
    "/quit [REASON]": "leave the chat and close the window",
}


class Command(NamedTuple):
    name: str  # say, me, msg, nick, join, part, who, help, quit, error
    args: tuple[str, ...] = ()


_ARITY = {"nick": 1, "join": 1, "me": 1, "msg": 2}  # required arguments


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
    elif name in ("nick", "join", "part", "who"):
        args = (rest,) if rest else ()
    elif name == "quit":
        args = (rest,) if rest else ()
    elif name == "help":
        args = ()
    else:
        return Command("error", (f"Unknown command /{head}. Type /help for the list.",))
    if len(args) < _ARITY.get(name, 0):
        usage = next(k for k in HELP if k.split()[0] == f"/{name}")
        return Command("error", (f"Usage: {usage}",))
    return Command(name, args)


def help_lines() -> list[str]:
    return [f"{usage:<16} {what}" for usage, what in HELP.items()]
