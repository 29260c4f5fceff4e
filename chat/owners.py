"""Rooms with owners: the hub's operations on a room's roles and settings.

``Owners`` keeps every room's ``Rules`` (chat.rules), decides who may join and speak,
and carries out what operators ask (topic, modes, kick from the room, invitations),
telling the room's members through the hub's output: every door renders the same
events (``Topic``, ``ModeChange``, ``Left`` with ``by``, ``Invited``). A change is
stored with the pass (the store's ``room_rules``) and, on a cluster, shared with the
other nodes (the sequencer's ``rules_changed``), which apply it with ``mirror``.

``by`` None is the server's operator (the window, the console): it may do anything
anywhere. A connection signed in as the server's operator (IRC's OPER) is an
operator of every room.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from chat.errors import ProtocolError, StoreError
from chat.events import Change, Event, Invited, ModeChange, Notice, RoomInfo, Topic
from chat.model import Elsewhere, Peer, Room, share
from chat.protocol import FLAG_MODES, ROLE_MODES, name_key
from chat.rules import Rules, glob_match, mask_of

if TYPE_CHECKING:
    from chat.hub import Hub

log = logging.getLogger("chat.server")

SERVER = "server"  # who the server's operator's changes are by
class Owners:
    """Every room's roles and settings, and the operations on them."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.rules: dict[str, Rules] = {}  # by room key; rooms with none use defaults
        try:
            for key, data in hub.store.room_rules():
                self.rules[key] = Rules.from_json(data)
        except StoreError as exc:
            log.warning("cannot read the rooms' settings: %s", exc.reason)

    def secret(self, key: str) -> bool:
        """Whether the room ``key`` is left out of `rooms` for those not in it."""
        rules = self.rules.get(key)
        return rules is not None and rules.secret

    def open_to(self, name: str) -> Room | None:
        """The room ``name`` when it takes messages from people not in it (IRC's -n)."""
        key = name_key(name)
        rules = self.rules.get(key)
        return self.hub.rooms.get(key) if rules is not None and not rules.no_outside \
            else None

    def of(self, room: Room) -> Rules:
        rules = self.rules.get(room.key)
        if rules is None:
            rules = self.rules[room.key] = Rules(self.hub.now_ms())
        return rules

    # ------------------------------------------------------------ questions

    def is_operator(self, peer: Peer | Elsewhere | None, room: Room) -> bool:
        if peer is None or peer.oper:
            return True
        rules = self.rules.get(room.key)
        return rules is not None and rules.is_operator(peer.key, peer.host, peer.accounts)

    def roles(self, room: Room) -> tuple[list[str], list[str]]:
        """The operators and the voiced among the room's members, here and elsewhere."""
        rules = self.rules.get(room.key)
        ops: list[str] = [p.nick for p in room.members if p.oper and p.nick]
        voiced: list[str] = []
        if rules is None:
            return ops, voiced
        for roles, out in ((rules.ops, ops), (rules.voices, voiced)):
            for key in roles:
                peer = self.hub.users.get(key)
                if peer is not None and room.key in peer.rooms:
                    if peer.nick not in out and rules._holds(roles, key, peer.host,
                                                             peer.accounts):
                        out.append(peer.nick or "")
                elif key in room.remote:
                    out.append(room.remote[key])
        return ops, voiced

    def admit(self, peer: Peer, room: Room, key: str | None) -> None:
        """Raise why ``peer`` may not join ``room`` (a room ban, invitation only, its
        key, its limit); an invitation lets one past all but a ban."""
        rules = self.rules.get(room.key)
        if rules is None or peer.oper:
            return
        assert peer.nick is not None and peer.key is not None
        if rules.banned(peer.nick, peer.username or peer.nick, peer.host):
            raise ProtocolError("banned_from_room", f"You are banned from #{room.name}.")
        if rules.invited(peer.key, self.hub.now_ms()) or \
                rules.is_operator(peer.key, peer.host, peer.accounts):
            return
        if rules.invite_only:
            raise ProtocolError("invite_only", f"#{room.name} is by invitation only: ask "
                                "one of its operators to invite you.")
        if rules.key is not None and key != rules.key:
            raise ProtocolError("bad_key", f"#{room.name} needs its key to join (the right one).")
        if rules.limit is not None and len(room.members) + len(room.remote) >= rules.limit:
            raise ProtocolError("room_full", f"#{room.name} is full.")

    def joined(self, peer: Peer, room: Room) -> None:
        """After ``peer`` joined: its invitation is used; the first one into a room
        that has no operator with an account becomes its operator."""
        assert peer.key is not None and peer.nick is not None
        rules = self.rules.get(room.key)
        if rules is not None:
            rules.muted.discard(peer.key)  # (it passed `admit`: no ban matches it now)
            if rules.invites.pop(peer.key, None) is not None:
                self._changed(room, rules)
        if len(room.members) > 1 or room.remote:
            return
        if rules is not None and any(self.hub.gate.has_account(k) for k in rules.ops):
            return
        rules = self.of(room)
        if rules.give("operator", peer.key, peer.nick, peer.host):
            self._changed(room, rules)

    def may_speak(self, peer: Peer, room: Room) -> None:
        """Raise why ``peer`` may not speak in ``room`` now (moderated, banned): a
        dict lookup for most rooms, a set lookup or two for the others."""
        rules = self.rules.get(room.key)
        if rules is None or not (rules.moderated or rules.muted) or peer.oper:
            return
        trusted = rules.is_operator(peer.key, peer.host, peer.accounts) or \
            rules.has_voice(peer.key, peer.host, peer.accounts)
        if trusted:
            return
        if peer.key in rules.muted:
            raise ProtocolError("banned_from_room", f"You are banned from #{room.name}.")
        if rules.moderated:
            raise ProtocolError("moderated", f"#{room.name} is quiet for now: only its "
                                "operators and those they give voice to may speak.")

    def _check_bans(self, room: Room, rules: Rules, members: Any = None) -> None:
        """Who among ``members`` (the room's, here) a ban now matches: muted. Every
        mask for each: for one member (a rename), or after a node's rules came."""
        for peer in room.members if members is None else members:
            if peer.key is None or peer.nick is None:
                continue
            if rules.banned(peer.nick, peer.username or peer.nick, peer.host):
                rules.muted.add(peer.key)
            else:
                rules.muted.discard(peer.key)

    def _bans_changed(self, room: Room, rules: Rules, added: list[str],
                      lifted: bool) -> None:
        """After bans changed: the members the new masks match are muted (each member
        against the new masks only), and those muted before are checked again when a
        ban was lifted. A room of N members costs N matches per new mask."""
        if lifted and rules.muted:
            muted = [p for p in room.members if p.key in rules.muted]
            self._check_bans(room, rules, muted)
        self.hub.cost += len(room.members) * len(added)  # charged as a broadcast each
        for mask in added:
            folded = name_key(mask)
            for peer in room.members:
                if peer.key is not None and peer.key not in rules.muted and glob_match(
                        folded, name_key(f"{peer.nick}!{peer.username or peer.nick}@"
                                         f"{peer.host}")):
                    rules.muted.add(peer.key)

    def _operator(self, by: Peer | None, room: Room) -> None:
        if not self.is_operator(by, room):
            raise ProtocolError("not_operator", f"You are not an operator of #{room.name}.")

    @staticmethod
    def _by(by: Peer | None) -> str:
        return by.nick or SERVER if by is not None else SERVER

    # ------------------------------------------------------------ what operators do

    def topic(self, by: Peer | None, room: Room, text: str, ref: str | None) -> None:
        rules = self.of(room)
        if rules.topic_lock:
            self._operator(by, room)
        rules.topic, rules.topic_by, rules.topic_ts = text, self._by(by), self.hub.now_ms()
        event = Topic(room.name, text, rules.topic_by, rules.topic_ts)
        self._tell(room, event, by, ref)
        self._changed(room, rules, event)
        log.info("%s set the topic of %s", self._by(by), room.name)

    def topic_of(self, room: Room) -> Topic:
        rules = self.rules.get(room.key)
        if rules is None or not rules.topic:
            return Topic(room.name, "")
        return Topic(room.name, rules.topic, rules.topic_by, rules.topic_ts)

    def info(self, asker: Peer | None, room: Room) -> RoomInfo:
        rules = self.rules.get(room.key) or Rules(0)
        shown = asker is None or room.key in asker.rooms
        return RoomInfo(room.name, rules.topic, rules.settings(
            shown and self.is_operator(asker, room)), rules.created,
            rules.ban_list() if shown else None, rules.topic_by, rules.topic_ts)

    def modes(self, by: Peer | None, room: Room, changes: list[tuple[str, bool, str | None]],
              ref: str | None) -> list[Change]:
        """Apply ``changes`` (each (mode, on, arg)); everyone in the room is told of
        those that changed something. Returns them."""
        self._operator(by, room)
        rules = self.of(room)
        done: list[Change] = []
        failed: ProtocolError | None = None
        for mode, on, arg in changes:
            try:
                change = self._apply(by, room, rules, mode, on, arg)
            except ProtocolError as exc:  # (the others are still made, as IRC does)
                failed = failed or exc
                continue
            if change is not None:
                done.append(change)
        bans = [change for change in done if change["mode"] == "ban"]
        if bans:
            self._bans_changed(room, rules, [c["arg"] for c in bans if c["on"]],
                               any(not c["on"] for c in bans))
        if done:
            event = ModeChange(room.name, self._by(by), done, self.hub.now_ms())
            self._tell(room, event, by, ref)
            self._changed(room, rules, event)
        if failed is not None:
            raise failed
        return done

    def _apply(self, by: Peer | None, room: Room, rules: Rules, mode: str, on: bool,
               arg: str | None) -> Change | None:
        now = self.hub.now_ms()
        if mode in ROLE_MODES:
            assert arg is not None
            key = name_key(arg)
            target = self.hub.users.get(key)
            if target is not None and room.key in target.rooms:
                nick, host = target.nick or arg, target.host
            elif key in room.remote:
                nick, host = room.remote[key], "*"  # bound by its own node (mirror)
            elif target is None and key not in self.hub.elsewhere:
                raise ProtocolError("no_such_user", f"Nobody named '{arg}' is online.")
            else:
                raise ProtocolError("user_not_in_room", f"{arg} is not in #{room.name}.")
            changed = rules.give(mode, key, nick, host) if on else rules.take(mode, key)
            return Change(mode=mode, on=on, arg=nick) if changed else None
        if mode == "ban":
            assert arg is not None
            mask = mask_of(arg)
            try:
                changed = rules.ban(mask, self._by(by), now) if on else rules.unban(mask)
            except OverflowError:
                raise ProtocolError("ban_list_full", f"#{room.name} has as many bans as it "
                                    "may; lift some first.") from None
            return Change(mode=mode, on=on, arg=mask) if changed else None
        if mode == "key":
            if (rules.key == arg) if on else rules.key is None:
                return None
            rules.key = arg if on else None
            return Change(mode=mode, on=on, arg=arg) if on and arg else Change(mode=mode, on=on)
        if mode == "limit":
            value = int(arg) if on and arg is not None else None
            if rules.limit == value:
                return None
            rules.limit = value
            return Change(mode=mode, on=on, arg=str(value)) if on else Change(mode=mode, on=on)
        assert mode in FLAG_MODES
        if getattr(rules, mode) == on:
            return None
        setattr(rules, mode, on)
        return Change(mode=mode, on=on)

    def kick(self, by: Peer | None, room: Room, nick: str, reason: str | None,
             ref: str | None) -> None:
        """``nick`` out of ``room`` (not off the server): everyone in the room, the
        kicked one too, sees `left` with reason `kicked`, ``by`` and the reason."""
        self._operator(by, room)
        key = name_key(nick)
        target = self.hub.users.get(key)
        by_nick = self._by(by)
        if target is not None and room.key in target.rooms:
            self.hub.leave(target, room, "kicked", reason or by_nick, ref=ref, by=by_nick,
                           asker=by)
        elif key in room.remote:
            self.hub.sequencer.kick(room, room.remote[key], by_nick, reason or by_nick)
        else:
            raise ProtocolError("user_not_in_room", f"{nick} is not in #{room.name}.")
        log.info("%s kicked %s from %s", by_nick, nick, room.name)

    def invite(self, by: Peer, room: Room, nick: str, ref: str | None) -> None:
        if room.key not in by.rooms and not by.oper:
            raise ProtocolError("not_in_room", f"You are not in #{room.name}.")
        rules = self.of(room)
        if rules.invite_only:
            self._operator(by, room)
        key = name_key(nick)
        target: Peer | Elsewhere | None = self.hub.users.get(key) or \
            self.hub.elsewhere.get(key)
        if target is None:
            raise ProtocolError("no_such_user", f"Nobody named '{nick}' is online.")
        if room.key in target.rooms or key in room.remote:
            raise ProtocolError("already_in_room", f"{nick} is already in #{room.name}.")
        assert target.nick is not None
        now = self.hub.now_ms()
        rules.invite(key, now)
        event = Invited(room.name, target.nick, self._by(by), now)
        if isinstance(target, Peer):
            self._invite_to(target, event)
        self.hub.to_peer(by, event.answering(ref))
        self._changed(room, rules, event)

    def renamed(self, peer: Peer, old_key: str) -> None:
        """Roles follow their holder's rename (of a connection that held them)."""
        assert peer.key is not None and peer.nick is not None
        for room in peer.rooms.values():
            rules = self.rules.get(room.key)
            if rules is None:
                continue
            held = [r for r in (rules.ops, rules.voices)
                    if rules._holds(r, old_key, peer.host, peer.accounts)]
            if held and rules.renamed(old_key, peer.key, peer.nick, peer.host):
                self._changed(room, rules)
            if rules.bans:  # a new name may be banned, or no longer
                rules.muted.discard(old_key)
                self._check_bans(room, rules, (peer,))

    # ------------------------------------------------------------ kept and shared

    def _tell(self, room: Room, event: Event, by: Peer | None = None,
              ref: str | None = None) -> None:
        """``event`` to the room's members who take these frames (``wants_owners``:
        IRC, and clients whose hello asked for "owners"); the asker gets its copy
        with ``ref`` whatever it asked for."""
        hub = self.hub
        hub.deliver()  # what the room was told so far goes first
        takers = [m for m in room.members if m.wants_owners and m is not by]
        hub.cost += len(takers)
        share(takers, event)
        if by is not None:
            hub.to_peer(by, event.answering(ref))

    def _changed(self, room: Room, rules: Rules, event: Event | None = None) -> None:
        data = rules.to_json()
        try:
            self.hub.store.put_room_rules(room.key, data)
        except StoreError as exc:
            log.warning("cannot keep the settings of %s: %s", room.name, exc.reason)
        self.hub.sequencer.rules_changed(room, data, event)

    def mirror_key(self, key: str, data: str) -> None:
        """A room's rules as the cluster keeps them (a node's first read)."""
        self.rules[key] = Rules.from_json(data)
        try:
            self.hub.store.put_room_rules(key, data)
        except StoreError as exc:
            log.warning("cannot keep a room's settings: %s", exc.reason)

    def mirror(self, room_name: str, data: str, event: dict[str, Any] | None) -> None:
        """Another node changed a room's rules: take them, and tell the members here
        (an invitation: the invitee, when it is here)."""
        hub = self.hub
        room = hub.room(room_name, name_key(room_name))
        old = self.rules.get(room.key)
        rules = self.rules[room.key] = Rules.from_json(data)
        try:
            hub.store.put_room_rules(room.key, data)
        except StoreError as exc:
            log.warning("cannot keep the settings of %s: %s", room.name, exc.reason)
        before = {name_key(b[0]) for b in old.bans} if old is not None else set()
        after = {name_key(b[0]) for b in rules.bans}
        rules.muted = set(old.muted) if old is not None else set()
        if before != after:  # only what changed is matched again
            self._bans_changed(room, rules, [b[0] for b in rules.bans
                                             if name_key(b[0]) not in before],
                               bool(before - after))
        unbound = False
        for roles in (rules.ops, rules.voices):
            for key, entry in roles.items():
                peer = hub.users.get(key)
                if entry[1] == "*" and peer is not None and room.key in peer.rooms:
                    entry[1], unbound = peer.host, True  # given from another node
        if unbound:
            self._changed(room, rules)
        if not event:
            return
        kind = event.get("type")
        if kind == "invited":
            target = hub.users.get(name_key(event.get("nick", "")))
            if target is not None:
                self._invite_to(target, Invited(room.name, event.get("nick", ""),
                                                event.get("by", ""), event.get("ts", 0)))
        elif room.members and kind == "topic":
            self._tell(room, Topic(room.name, event.get("topic", ""), event.get("by"),
                                   event.get("ts")))
        elif room.members and kind == "mode":
            self._tell(room, ModeChange(room.name, event.get("by", ""),
                                        event.get("changes", []), event.get("ts", 0)))

    def _invite_to(self, target: Peer, event: Invited) -> None:
        """An invitation: the `invited` frame, or a `notice` for clients that did not
        ask for these frames."""
        if target.wants_owners:
            self.hub.to_peer(target, event)
        else:
            self.hub.to_peer(target, Notice(f"{event.by} invites you to #{event.room}.",
                                            event.ts))

    def kicked_here(self, room_name: str, nick: str, by: str, reason: str) -> None:
        """Another node's operator kicked ``nick``, connected here, out of a room."""
        room = self.hub.rooms.get(name_key(room_name))
        target = self.hub.users.get(name_key(nick))
        if room is not None and target is not None and room.key in target.rooms:
            self.hub.leave(target, room, "kicked", reason, by=by)
