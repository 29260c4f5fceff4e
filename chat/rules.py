"""A room's roles and settings as data (docs/protocol.md, "Rooms with owners").

``Rules`` holds who is in charge of a room and what it allows: operators and voiced
members (by nickname key, each with the nickname and the address it was given to), the
topic, the flags (moderated, topic_lock, invite_only, no_outside, secret), the key, the
member limit, the bans and the invitations. It answers questions (``holds``,
``banned``, ``settings``) and is kept as JSON (the store, a cluster's Redis); it sends
nothing and changes no membership: ``chat.owners`` does, through the hub.

A role is a nickname's, not a connection's: it survives a reconnect and a restart. So
that nobody takes a role by taking a nickname, it applies to a connection signed in to
the nickname's account, or, for a nickname without one, to a connection from the
address the role was given to.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from chat.events import BanItem, Change, Settings
from chat.protocol import FLAG_MODES, name_key

MAX_BANS = 100  # masks per room (IRC's MAXLIST): a ban check stays one regex match
MAX_INVITES = 200  # invitations kept per room; the oldest lapse first
INVITE_MS = 3_600_000  # an invitation lapses after an hour unused


def mask_of(value: str) -> str:
    """A ban's mask (``nick!user@host`` with ``*`` and ``?``) from what an operator
    typed: a mask as is (missing parts are ``*``), an address (``*!*@addr``), or a
    nickname (``nick!*@*``)."""
    if "!" in value or "@" in value:
        nick, _, rest = value.partition("!") if "!" in value else ("*", "", value)
        user, _, host = rest.partition("@") if "@" in rest else (rest or "*", "", "*")
        return f"{nick or '*'}!{user or '*'}@{host or '*'}"
    if (value.count(".") == 3 and value.replace(".", "").replace("*", "").isdigit()) \
            or ":" in value:
        return f"*!*@{value}"
    return f"{value}!*@*"


def glob_match(pattern: str, text: str) -> bool:
    """IRC's wildcard match (``*`` any run, ``?`` one character), both sides already
    folded. Two pointers with one saved star: O(len(pattern) * len(text)) at worst,
    never the exponential backtracking a regex of many ``.*`` can fall into."""
    p = t = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(pattern) and (pattern[p] == "?" or pattern[p] == text[t]):
            p += 1
            t += 1
        elif p < len(pattern) and pattern[p] == "*":
            star, mark = p, t
            p += 1
        elif star >= 0:
            p = star + 1
            mark += 1
            t = mark
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


class Rules:
    """One room's roles and settings; see the module's text."""

    __slots__ = ("topic", "topic_by", "topic_ts", "created", "ops", "voices", "moderated",
                 "topic_lock", "invite_only", "no_outside", "secret", "key", "limit",
                 "bans", "invites", "muted")

    def __init__(self, created: int) -> None:
        self.topic = ""
        self.topic_by: str | None = None
        self.topic_ts: int | None = None
        self.created = created
        self.ops: dict[str, list[str]] = {}  # nick key -> [nick, address given to]
        self.voices: dict[str, list[str]] = {}
        self.moderated = False  # only operators and voiced members speak
        self.topic_lock = True  # only operators set the topic
        self.invite_only = False
        self.no_outside = True  # only members send (always so here; IRC's +n shown)
        self.secret = False  # left out of `rooms` for those not in it
        self.key: str | None = None
        self.limit: int | None = None
        self.bans: list[list[Any]] = []  # [mask, by, ts]
        self.invites: dict[str, int] = {}  # nick key -> when invited (ms)
        # members a ban matched while they were in (not kept): they may not speak. A
        # message then costs a set lookup, not a match of every mask.
        self.muted: set[str] = set()

    # ------------------------------------------------------------ questions

    @staticmethod
    def _holds(roles: dict[str, list[str]], key: str | None, host: str,
               accounts: AbstractSet[str]) -> bool:
        entry = roles.get(key) if key is not None else None
        return entry is not None and (key in accounts or entry[1] == host)

    def is_operator(self, key: str | None, host: str, accounts: AbstractSet[str]) -> bool:
        return self._holds(self.ops, key, host, accounts)

    def has_voice(self, key: str | None, host: str, accounts: AbstractSet[str]) -> bool:
        return self._holds(self.voices, key, host, accounts)

    def banned(self, nick: str, user: str, host: str) -> bool:
        """Whether a ban's mask matches (at a join, a ban, a rename: not per message)."""
        if not self.bans:
            return False
        who = name_key(f"{nick}!{user}@{host}")
        return any(glob_match(name_key(mask), who) for mask, _by, _ts in self.bans)

    def invited(self, key: str, now: int) -> bool:
        when = self.invites.get(key)
        return when is not None and now - when < INVITE_MS

    def settings(self, show_key: bool) -> Settings:
        return Settings(moderated=self.moderated, topic_lock=self.topic_lock,
                        invite_only=self.invite_only, no_outside=self.no_outside,
                        secret=self.secret,
                        key=(self.key if show_key else True) if self.key else False,
                        limit=self.limit)

    def ban_list(self) -> list[BanItem]:
        return [BanItem(mask=mask, by=by, ts=ts) for mask, by, ts in self.bans]

    # ------------------------------------------------------------ changes

    def give(self, mode: str, key: str, nick: str, host: str) -> bool:
        roles = self.ops if mode == "operator" else self.voices
        if roles.get(key) == [nick, host]:
            return False
        roles[key] = [nick, host]
        return True

    def take(self, mode: str, key: str) -> bool:
        roles = self.ops if mode == "operator" else self.voices
        return roles.pop(key, None) is not None

    def renamed(self, old_key: str, new_key: str, nick: str, host: str) -> bool:
        """Roles follow a rename of a connection that held them."""
        moved = False
        for roles in (self.ops, self.voices):
            if roles.pop(old_key, None) is not None:
                roles[new_key] = [nick, host]
                moved = True
        return moved

    def ban(self, mask: str, by: str, ts: int) -> bool:
        if any(name_key(b[0]) == name_key(mask) for b in self.bans):
            return False
        if len(self.bans) >= MAX_BANS:
            raise OverflowError
        self.bans.append([mask, by, ts])
        return True

    def unban(self, mask: str) -> bool:
        kept = [b for b in self.bans if name_key(b[0]) != name_key(mask)]
        changed = len(kept) != len(self.bans)
        self.bans = kept
        return changed

    def invite(self, key: str, now: int) -> None:
        self.invites.pop(key, None)
        self.invites[key] = now
        while len(self.invites) > MAX_INVITES:
            del self.invites[next(iter(self.invites))]

    # ------------------------------------------------------------ kept as JSON

    def to_json(self) -> str:
        return json.dumps({
            "topic": self.topic, "topic_by": self.topic_by, "topic_ts": self.topic_ts,
            "created": self.created, "ops": self.ops, "voices": self.voices,
            "flags": [f for f in sorted(FLAG_MODES) if getattr(self, f)],
            "key": self.key, "limit": self.limit, "bans": self.bans,
            "invites": self.invites}, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, created: int = 0) -> Rules:
        """Rules from their JSON; what is missing or malformed takes its default."""
        rules = cls(created)
        try:
            data = json.loads(text)
        except ValueError:
            return rules
        if not isinstance(data, dict):
            return rules
        if isinstance(data.get("topic"), str):
            rules.topic = data["topic"]
            rules.topic_by = data.get("topic_by") if isinstance(data.get("topic_by"),
                                                                str) else None
            rules.topic_ts = data.get("topic_ts") if isinstance(data.get("topic_ts"),
                                                                int) else None
        if isinstance(data.get("created"), int):
            rules.created = data["created"]
        for name in ("ops", "voices"):
            roles = data.get(name)
            if isinstance(roles, dict):
                setattr(rules, name, {k: v for k, v in roles.items() if isinstance(v, list)
                                      and len(v) == 2 and all(isinstance(x, str) for x in v)})
        flags = data.get("flags")
        if isinstance(flags, list):
            for flag in FLAG_MODES:
                setattr(rules, flag, flag in flags)
        rules.key = data.get("key") if isinstance(data.get("key"), str) else None
        limit = data.get("limit")
        rules.limit = limit if isinstance(limit, int) and limit > 0 else None
        bans = data.get("bans")
        if isinstance(bans, list):
            rules.bans = [b for b in bans if isinstance(b, list) and len(b) == 3
                          and isinstance(b[0], str)][:MAX_BANS]
        invites = data.get("invites")
        if isinstance(invites, dict):
            rules.invites = {k: v for k, v in invites.items() if isinstance(v, int)}
        return rules


# IRC's mode letters for the protocol's modes (docs/protocol.md), both ways.
LETTERS = {"operator": "o", "voice": "v", "ban": "b", "moderated": "m", "topic_lock": "t",
           "invite_only": "i", "no_outside": "n", "secret": "s", "key": "k", "limit": "l"}
MODE_OF = {letter: mode for mode, letter in LETTERS.items()}
ARG_ALWAYS = frozenset("ovbk")  # letters that take an argument whether set or unset
ARG_WHEN_SET = frozenset("l")


def parse_modes(words: list[str]) -> tuple[list[tuple[str, bool, str | None]], list[str]]:
    """IRC's ``+mv-t nick`` as (mode, on, arg) changes, and the letters not known.
    A letter that needs an argument and has none left is dropped (IRC does so); a
    bare ``b`` or ``+b`` is left to the caller (a ban list query)."""
    changes: list[tuple[str, bool, str | None]] = []
    unknown: list[str] = []
    if not words:
        return changes, unknown
    args = iter(words[1:])
    on = True
    for letter in words[0]:
        if letter in "+-":
            on = letter == "+"
            continue
        mode = MODE_OF.get(letter)
        if mode is None:
            unknown.append(letter)
            continue
        arg = None
        if letter in ARG_ALWAYS or (letter in ARG_WHEN_SET and on):
            arg = next(args, None)
            if arg is None:
                if letter == "k" and not on:
                    arg = "*"  # -k without the key: ngIRCd and others accept it
                else:
                    continue
        changes.append((mode, on, arg))
    return changes, unknown


def mode_string(changes: Sequence[Change]) -> str:
    """Changes (as `mode` events carry them) as IRC's ``+mv-t arg arg``."""
    out, args, sign = [], [], ""
    for change in changes:
        want = "+" if change["on"] else "-"
        if want != sign:
            out.append(want)
            sign = want
        out.append(LETTERS.get(change["mode"], ""))
        if "arg" in change:
            args.append(change["arg"])
    return " ".join(["".join(out), *args])


def flag_string(settings: Settings) -> str:
    """A room's settings (``Rules.settings``) as IRC's 324 shows them: ``+imntkl key
    30`` (the key itself only where the settings carry it)."""
    letters = "".join(LETTERS[f] for f in sorted(FLAG_MODES, key=lambda f: LETTERS[f])
                      if settings[f])  # type: ignore[literal-required]
    args = []
    key, limit = settings["key"], settings["limit"]
    if key:
        letters += "k"
        args.append(key if isinstance(key, str) else "*")
    if limit:
        letters += "l"
        args.append(str(limit))
    return " ".join(["+" + letters, *args])
