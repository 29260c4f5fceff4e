"""What the server's operator can do: speak as `server`, kick, ban, lift bans, drop
a nickname's account, and be any room's operator (topic, modes, kick from a room).

The server window and the headless console call these (there is no operator protocol
on the wire). They act through the hub, in the loop's own thread, between two passes
or within one; what they queue goes out at the pass's end, after its commit.
"""

from __future__ import annotations

import logging
import os

from chat.bans import Ban
from chat.errors import ProtocolError, StoreError
from chat.events import Change, Notice, RoomInfo
from chat.files import Partial
from chat.gate import when
from chat.hub import Hub
from chat.model import Room
from chat.protocol import TopicSet, _change, _parse_topic, check_text, name_key

OPERATOR = "server"  # reserved nickname: what the operator's room messages come from

log = logging.getLogger("chat.server")


class Operator:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def notice(self, text: str) -> None:
        """A notice to every registered user."""
        self.hub.notice(text)
        log.info("notice: %s", text)

    def say(self, room_name: str, text: str) -> int:
        """Speak in a room as `server` (a name no user can take).

        Stored and delivered like any message; returns its id. Raises
        ``ProtocolError`` for an unknown room or a text the protocol refuses.
        """
        hub = self.hub
        room = hub.rooms.get(name_key(room_name))
        if room is None:
            raise ProtocolError("bad_room", f"There is no room named '{room_name}'.")
        check_text(text, hub.config.max_text)
        try:
            msg_id = hub.post(None, text, False, None, room=room)
        except StoreError as exc:
            hub.write_failed(exc)
            raise ProtocolError("store_failed", f"Not sent: {exc.reason}.") from None
        log.info("%s -> %s: %s", OPERATOR, room.name, text)
        return msg_id

    def kick(self, nick: str, reason: str, *, why: str = "kicked") -> bool:
        """Tell a user why, then close it; the others see `left` with ``why``."""
        hub = self.hub
        peer = hub.users.get(name_key(nick))
        if peer is None:
            return False
        hub.kick(peer, reason, why, reason)
        return True

    def _room(self, room_name: str) -> Room:
        room = self.hub.rooms.get(name_key(room_name.lstrip("#")))
        if room is None:
            raise ProtocolError("bad_room", f"There is no room named '{room_name}'.")
        return room

    def room_modes(self, room_name: str, changes: list[tuple[str, bool, str | None]]
                   ) -> list[Change]:
        """Change a room's roles and settings, as its operator would (any room)."""
        room = self._room(room_name)
        checked = [_change({"mode": m, "on": on, **({"arg": a} if a is not None else {})})
                   for m, on, a in changes]
        return self.hub.owners.modes(None, room, checked, None)

    def room_topic(self, room_name: str, text: str) -> None:
        room = self._room(room_name)
        topic = _parse_topic({"room": room.name, "topic": text}, 0)
        assert isinstance(topic, TopicSet) and topic.topic is not None
        self.hub.owners.topic(None, room, topic.topic, None)

    def room_kick(self, room_name: str, nick: str, reason: str) -> None:
        """Out of one room, not off the server."""
        self.hub.owners.kick(None, self._room(room_name), nick, reason or None, None)

    def room_info(self, room_name: str) -> RoomInfo:
        return self.hub.owners.info(None, self._room(room_name))

    def ban(self, kind: str, value: str, reason: str = "",
            seconds: float | None = None) -> tuple[Ban, int]:
        """Ban a nickname or an address (host or network) for ``seconds`` (None:
        until lifted), kept in the store; connections it matches are closed, users
        told why. Returns the ban and how many connections it closed. Raises
        ``ValueError`` with a sentence for a value that is not a nick or address."""
        hub = self.hub
        ban = hub.gate.add_ban(kind, value, reason, seconds)
        closed = hub.enforce(ban)
        log.info("banned %s %s%s (%d connection(s) closed)", kind, ban.value,
                 f" until {when(ban.expires)}" if ban.expires else "", closed)
        return ban, closed

    def unban(self, kind: str, key: str) -> bool:
        """Lift a ban by its kind and key; whether there was one."""
        ban = self.hub.gate.lift(kind, key)
        if ban is None:
            return False
        log.info("ban on %s %s lifted", kind, ban.value)
        return True

    def ban_list(self) -> list[Ban]:
        return self.hub.gate.listing()

    def drop_account(self, nick: str) -> bool:
        """Free a registered nickname (its owner forgot the password, say); whether it
        had an account. Whoever is signed in to it keeps the nickname, and is told."""
        hub, key = self.hub, name_key(nick)
        if not hub.gate.drop(key):
            return False
        notice = Notice(f"The operator removed the account of the nickname {nick}: it "
                        "needs no password now.", hub.now_ms())
        for peer in hub.peers:
            if key in peer.accounts:
                peer.accounts.discard(key)
                hub.to_peer(peer, notice)
        log.info("account of %s dropped by the operator", nick)
        return True

    def accounts(self) -> list[tuple[str, int]]:
        """(nick, created ms) of every registered nickname."""
        return self.hub.store.accounts()

    def files(self) -> list[tuple[str, int, str]]:
        """(id, size, name it was last sent under) of every kept file, newest name."""
        kept = self.hub.files.listing()
        names = self.hub.store.file_names()
        return [(sha, size, names.get(sha, "?")) for sha, size in kept]

    def partials(self) -> list[Partial]:
        """Unfinished uploads, their bytes so far and how long since the last."""
        return self.hub.files.partial_listing()

    def delete_partial(self, prefix: str) -> str | None:
        """Delete the unfinished upload whose id (its partial file's name) starts with
        ``prefix`` (at least 8 characters, naming one); one being sent is cut first,
        its sender told. Returns its id, or None when none or several match."""
        prefix = prefix.strip().lower()
        files = self.hub.files
        matches = [p.name for p in files.partial_listing() if p.name.startswith(prefix)]
        if len(prefix) < 8 or len(matches) != 1:
            return None
        upload = files.writing.get(os.path.join(files.partial, matches[0]))
        if upload is not None:
            self.hub.cut_upload(upload, "The server's operator deleted this upload.")
        files.delete_partial(matches[0])
        log.info("unfinished upload %s deleted by the operator", matches[0])
        return matches[0]

    def delete_file(self, prefix: str) -> str | None:
        """Delete the kept file whose id starts with ``prefix`` (at least 8 hex
        digits, naming one file); return its id, or None when none or several match."""
        prefix = prefix.strip().lower()
        if len(prefix) < 8:
            return None
        matches = [sha for sha, _ in self.hub.files.listing() if sha.startswith(prefix)]
        if len(matches) != 1 or not self.hub.files.delete(matches[0]):
            return None
        log.info("file %s deleted by the operator", matches[0])
        return matches[0]
