"""From a connection's frames to the hub's operations: one handler per frame type.

The server hands each well-formed frame to ``receive`` (and each bad line to
``reject``), one way: nothing but the server imports this module, and the hub does not
know it. ``receive`` checks the session rules (what may come before `hello`), parses the
request and calls its handler with the ``Hub``, the ``Peer`` that asked, the request
as ``parse_request`` returned it and its ``ref``; a request that cannot be done raises
``ProtocolError`` before it changes anything, and becomes an `error` frame. Handlers
change chat state only through the hub's operations (``register``, ``join``,
``leave``, ``rename``, ``post``, ``close``); nothing here touches a socket.

The cost of an answer is the asker's: history is cut to what fits in the asker's share
of ``max_backlog`` (the oldest left out, ``more: true``), `rooms` answers a page at a
time, and nick, join and part spend a token of their own bucket.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from functools import partial
from typing import TYPE_CHECKING, Any

from chat.errors import Later, ProtocolError, StoreError
from chat.events import (
    AwayAnswer,
    Event,
    HistoryEnd,
    IsonAnswer,
    Member,
    Message,
    ModeChange,
    MonitorList,
    OperAnswer,
    Pong,
    Presence,
    ReadMarker,
    Registered,
    Replay,
    RoomList,
    SearchResults,
    Unregistered,
    UploadProgress,
    UploadReady,
    Users,
    Welcome,
    WhoisAnswer,
    WhoMatches,
    WhowasAnswer,
    change_event,
)
from chat.files import PROGRESS_EVERY, UPLOADS_PER_PEER, clean_name
from chat.gate import ban_sentence
from chat.hub import STORE_FAILED
from chat.model import Elsewhere, Peer, Room
from chat.protocol import (
    Away,
    Bye,
    Change,
    Chunk,
    Download,
    Hello,
    History,
    InRoom,
    Invite,
    Ison,
    Join,
    JsonObject,
    KickOut,
    Kill,
    MarkRead,
    ModeSet,
    Monitor,
    Named,
    Nick,
    Nothing,
    Oper,
    Part,
    Password,
    Rooms,
    Search,
    Send,
    TagMsg,
    Token,
    TopicSet,
    Upload,
    Wallops,
    Who,
    check_ref,
    name_key,
    parse_request,
)
from chat.rules import glob_match
from chat.search import Scope, TooBroad, parse_query, snippet
from chat.store import ACTION, CHANGES, DELETE, EDIT, NOTICE, REACT, Row, Target

if TYPE_CHECKING:
    from chat.hub import Hub

WHOIS_ROOMS = 100  # rooms a `whois` answer lists (docs/protocol.md)
# A search costs a token of its bucket per this much of the loop it took (one at
# least): a search stopped at its 150 ms budget (too_broad) costs five, a whole bucket.
SEARCH_TOKEN_S = 0.03
REPLAY_DEFAULT = 50  # docs/protocol.md: latest 50 on join without `since`
BEFORE_HELLO = frozenset({"hello", "ping", "bye"})  # docs/protocol.md, Session 3

log = logging.getLogger("chat.server")


def receive(hub: Hub, peer: Peer, frame: JsonObject) -> None:
    """Handle one well-formed frame from ``peer``."""
    if peer.closing:
        return
    peer.last_heard, peer.pinged_at = hub.clock(), None  # (Hub.heard, inline: per frame)
    ref = None
    try:
        ref = check_ref(frame)
        kind = frame["type"]
        if peer.nick is None and kind == "bye":
            hub.close(peer, "quit")  # before welcome, bye just closes
            return
        if peer.nick is None and kind not in BEFORE_HELLO:
            raise ProtocolError("not_registered", "Send 'hello' first.")
        if peer.nick is not None and kind == "hello":
            raise ProtocolError("already_registered", "You are already registered.")
        request = parse_request(frame, hub.config.max_text)
        HANDLERS[kind](hub, peer, request, ref)
    except ProtocolError as exc:
        hub.error(peer, exc, ref)
        return
    except StoreError as exc:
        if exc.write:
            hub.write_failed(exc)
        else:
            log.warning("cannot read the database: %s", exc.reason)
        message = (STORE_FAILED.format(why=exc.reason) if frame["type"] == "send" else
                   f"The server could not do that ({exc.reason}); try again later.")
        hub.error(peer, ProtocolError("store_failed", message), ref)
        return
    peer.errors = 0


def reject(hub: Hub, peer: Peer, exc: ProtocolError) -> None:
    """A line from ``peer`` that is not a frame (bad JSON, too long, ...)."""
    if not peer.closing:
        hub.heard(peer)
        hub.error(peer, exc, None)


def reply(hub: Hub, peer: Peer, event: Event, ref: str | None) -> None:
    hub.to_peer(peer, event.answering(ref))


def users(hub: Hub, peer: Peer, room: Room, ref: str | None) -> None:
    ops, voiced = hub.owners.roles(room)
    reply(hub, peer, Users(room.name, room.nicks(), ops or None, voiced or None,
                           secret=hub.owners.secret(room.key),
                           converging=hub.converging), ref)


def answer_budget(hub: Hub, peer: Peer) -> tuple[int, int]:
    """(bytes this answer may take, the most any answer takes): half of
    ``max_backlog``, less when the asker's backlog is already large."""
    most = hub.config.max_backlog // 2
    return max(0, min(most, hub.config.max_backlog * 3 // 4 - peer.unsent)), most


def history_bytes(hub: Hub, room: Room, *, after: int, before: int | None, limit: int,
                  budget: int, oldest: bool = False, changes: bool = False
                  ) -> tuple[Replay, bool]:
    """The newest (``oldest``: the oldest) ``limit`` messages with ``after < id <
    before`` as history frames, oldest first, within ``budget`` bytes; and whether
    matching ones were left out. Rows are read from the chosen end and reading stops
    at the budget. ``changes``: the changes among them too (catching up)."""
    with closing(hub.store.newest(room.key, after=after, before=before,
                                  limit=limit + 1, oldest=oldest, changes=changes)) as rows:
        return pack_history(((row, "room", room.name) for row in rows), limit=limit,
                            budget=budget, oldest=oldest)


def pack_history(rows: Iterable[tuple[Row, str, str]], *, limit: int, budget: int,
                 oldest: bool) -> tuple[Replay, bool]:
    """History frames of ``rows`` (each with where it was said: "room" or "to", and
    the name), in the order read, at most ``limit`` and within ``budget`` bytes, then
    oldest first; and whether matching ones were left out."""
    messages: list[Message] = []
    size, more = 0, False
    for count, (row, place, where) in enumerate(rows):
        if count == limit:
            more = True
            break
        message: Any = Message(
            id=row.id, ts=row.ts, room=where if place == "room" else None,
            to=where if place == "to" else None, sender=row.sender, text=row.text,
            action=row.kind == ACTION, notice=row.kind == NOTICE, history=True,
            file=json.loads(row.file) if row.file is not None else None, about=row.about,
            edited=row.edited, deleted=row.deleted, reactions=row.reactions,
            change=row.kind if row.kind >= EDIT else 0, about_from=row.about_from)
        if message.change:
            message = change_event(message, history=True)
        size += len(message.data)
        if size > budget:
            more = True
            break
        messages.append(message)
    if not oldest:
        messages.reverse()
    return Replay(messages), more


def replay(hub: Hub, peer: Peer, room: Room, ref: str | None, *, after: int,
           before: int | None, limit: int) -> None:
    """History frames, oldest first, then `history_end` (with `more` if cut).

    The answer for a room is kept until the room's next message: a crowd joining
    one room at once (a class arriving, everyone reconnecting) costs one read."""
    chunk, more = Replay([]), False
    if room.has_history and limit > 0:
        budget, most = answer_budget(hub, peer)
        changes = after > 0 and peer.wants_edits  # catching up: what changed too
        key = (after, before, limit, most, changes)
        cached = hub.replay(room, key)
        if cached is not None and len(cached[0].data) <= budget:
            chunk, more = cached
        else:
            chunk, more = history_bytes(hub, room, after=after, before=before,
                                        limit=limit, budget=budget, changes=changes)
            if budget == most:
                hub.keep_replay(room, key, chunk, more)
    history_end(hub, peer, room, ref, chunk, more)


def history_end(hub: Hub, peer: Peer, room: Room, ref: str | None, chunk: Replay,
                more: bool) -> None:
    if chunk.messages:
        hub.to_peer(peer, chunk)
    reply(hub, peer, HistoryEnd(room=room.name, more=more), ref)


def join(hub: Hub, peer: Peer, name: str, ref: str | None, since: int | None, *,
         replay_too: bool = True, room_key: str | None = None) -> None:
    key = name_key(name)
    if key in peer.rooms:
        room = peer.rooms[key]
        users(hub, peer, room, ref)
        reply(hub, peer, HistoryEnd(room=room.name), ref)
        return
    existing = hub.rooms.get(key)
    if existing is not None:
        hub.owners.admit(peer, existing, room_key)  # its bans, invitations, key, limit
    room = hub.room(name, key)
    hub.join(peer, room, ref)
    topic = hub.owners.topic_of(room)
    if topic.topic and peer.wants_owners:
        reply(hub, peer, topic, ref)
    if peer.wants_read and peer.door == "irc" and peer.key in peer.accounts:
        assert peer.key is not None  # (IRC's draft/read-marker: after JOIN, before NAMES)
        last = hub.store.read_marker(peer.key, f"#{room.key}")
        reply(hub, peer, ReadMarker(last, room=room.name,
                                    ts=hub.store.ts_of(last) if last else None), ref)
    users(hub, peer, room, ref)
    limit = hub.config.history if replay_too else 0
    if since is None:
        limit = min(limit, REPLAY_DEFAULT)
    replay(hub, peer, room, ref, after=since or 0, before=None, limit=limit)
    if log.isEnabledFor(logging.INFO):
        log.info("%s joined %s", peer.nick, room.name)


def member_room(hub: Hub, peer: Peer, name: str) -> Room:
    room = peer.rooms.get(name_key(name))
    if room is None:
        raise ProtocolError("not_in_room", f"You are not in a room named '{name}'.")
    return room


# Doors whose clients are slowed, not refused, past their rate: an IRC client expects
# its lines to wait (as IRC servers' fakelag does) and has no error to read for it. Its
# request waits for the token (``Later``) with everything it sent after it, and its
# socket is not read meanwhile, so TCP pushes back; JSON clients get `rate_limited`.
SLOWED_DOORS = frozenset({"irc"})
# Doors whose clients cannot say what they saw (IRC has no `since`): the server keeps,
# per nickname and room, the newest id when it left, and a JOIN replays only what came
# after (docs/protocol.md, "IRC").
SEEN_DOORS = frozenset({"irc"})


def out_of_tokens(peer: Peer, message: str) -> Later | ProtocolError:
    """What a request past its rate raises: a wait, or the documented refusal."""
    if peer.door in SLOWED_DOORS:
        return Later()
    return ProtocolError("rate_limited", message)


def spend_change(hub: Hub, peer: Peer, *, spend: bool = True) -> None:
    """nick, join and part take a token of the peer's own bucket (docs/protocol.md);
    without ``spend``, only check that there is one."""
    now = hub.clock()
    if not (peer.changes.take(now) if spend else peer.changes.ready(now)):
        raise out_of_tokens(peer, "You are changing rooms or names too fast; wait a few "
                                  "seconds.")


# ---------------------------------------------------------------- requests


def hello(hub: Hub, peer: Peer, req: Hello, ref: str | None) -> None:
    cfg = hub.config
    refusal = hub.gate.refusal(peer.host)
    if refusal is not None and refusal.code == "banned":  # banned since it connected
        raise refusal
    if cfg.password is not None and not hmac.compare_digest(
            (req.password or "").encode(), cfg.password.encode()):
        raise ProtocolError("auth_failed", "Wrong server password.")
    if len(hub.users) >= cfg.max_clients:
        raise ProtocolError("server_full", "The server is full; try again later.")
    key = name_key(req.nick)
    ban = hub.gate.nick_ban(key)
    if ban is not None:
        raise ProtocolError("banned", ban_sentence(ban))
    holder = hub.users.get(key)
    if holder is not None and (req.nick_password is None
                               or not hub.gate.has_account(key)):
        raise ProtocolError("nick_taken", f"The nickname '{req.nick}' is taken.")
    hub.gate.authenticate(peer, key, req.nick, req.nick_password)
    hub.claim(peer, key, req.nick)  # unique across a cluster's nodes: Later until known
    if holder is not None:
        # The account's owner reclaims its nickname from an older connection
        # (often its own, dropped without the server noticing yet).
        hub.kick(holder, "You signed in from another connection.", "disconnected")
        log.info("%s reclaimed its nickname from %s", req.nick, holder.host)
    hub.register(peer, req.nick, key, req.client or "")
    peer.username, peer.realname = req.user or "", req.realname or ""
    peer.wants_owners = peer.wants_owners or "owners" in req.features
    peer.wants_edits = peer.wants_edits or "edits" in req.features
    peer.wants_read = "read_markers" in req.features
    if log.isEnabledFor(logging.INFO):
        door = " (web)" if peer.door == "web" else ""
        log.info("%s registered from %s%s", peer.nick, peer.host, door)
    # `account`: signed in to its nickname's account; `nodes`: the chat's other
    # servers (docs/protocol.md, "Cluster")
    reply(hub, peer, Welcome(req.nick, cfg.name, cfg.motd, cfg.limits(),
                             account=key in peer.accounts,
                             nodes=hub.other_servers() or None,
                             counts=hub.counts().numbers() if peer.door == "irc" else None),
          ref)
    if "read_markers" in req.features and key in peer.accounts:
        for conv, last in hub.store.read_markers(key):  # how far its other devices read
            ts = hub.store.ts_of(last)
            if conv.startswith("#"):
                room = hub.rooms.get(conv[1:])
                reply(hub, peer, ReadMarker(last, room=room.name if room else conv[1:],
                                            ts=ts), ref)
            else:
                reply(hub, peer, ReadMarker(last, to=conv[1:], ts=ts), ref)
    for name in req.rooms:
        try:
            join(hub, peer, name, ref, req.since)
        except ProtocolError as exc:  # a room it may not enter: the others are joined
            hub.error(peer, exc, ref)


def join_request(hub: Hub, peer: Peer, req: Join, ref: str | None) -> None:
    key = name_key(req.room)
    if key not in peer.rooms:  # already in: nothing changes, free
        spend_change(hub, peer)
    since = req.since
    if since is None and peer.door in SEEN_DOORS:
        since = hub.seen(peer, key)  # what this nickname saw when it was last here
    join(hub, peer, req.room, ref, since, replay_too=req.replay, room_key=req.key)


def addressed(hub: Hub, peer: Peer, req: Send | TagMsg
              ) -> tuple[Room | None, Peer | Elsewhere | None]:
    """The room (one is in) or the online user that a `send` or `tagmsg` names; its
    rate token is spent once both are known."""
    room = target = None
    if req.room is not None:
        room = peer.rooms.get(name_key(req.room))  # (member_room, inline: per message)
        if room is None:
            room = hub.owners.open_to(req.room)  # a room that takes outside messages
            if room is None:
                member_room(hub, peer, req.room)  # says why
    else:
        assert req.to is not None  # parse_request takes exactly one of them
        target = online(hub, req.to)
    if not peer.bucket.take(hub.clock()):
        raise out_of_tokens(peer, "You are sending too fast; slow down.")
    return room, target


def send(hub: Hub, peer: Peer, req: Send, ref: str | None) -> None:
    room, target = addressed(hub, peer, req)
    try:
        if room is not None:
            hub.owners.may_speak(peer, room)  # a quiet room, a room ban
        reply_to, reply_from = req.reply_to, None
        if reply_to is not None:
            answered = hub.store.message(reply_to)
            reply_from = answered.sender if answered is not None else None
            if answered is None or conversation(peer, answered) != (
                    room.key if room is not None else target.key if target else None):
                if req.tags and "+draft/reply" in req.tags:
                    reply_to = None  # IRC's tag naming something else: relayed as it is
                else:
                    raise ProtocolError("no_such_message", "There is no message "
                                        f"{reply_to} in this conversation to reply to.")
        hub.post(peer, req.text, req.action, ref, room=room, target=target,
                 notice=req.notice, tags=req.tags, reply_to=reply_to,
                 reply_from=reply_from if reply_to is not None else None)
    except BaseException:
        peer.bucket.refund()  # refused: it costs no token
        raise
    peer.last_spoke = hub.clock()
    if log.isEnabledFor(logging.DEBUG):  # a direct message's text stays private
        if room is not None:
            log.debug("%s -> %s: %s", peer.nick, room.name, req.text)
        elif target is not None:
            log.debug("%s -> %s: (direct message)", peer.nick, target.nick)


EDIT_WINDOW_MS = 3_600_000  # one's own message may be edited this long after it was sent
MAX_EDITS = 20  # times one message may be edited
MAX_REACTIONS = 20  # different emoji on one message


def conversation(peer: Peer, message: Target) -> str | None:
    """Where ``message`` was said as ``peer`` sees it: its room's key, the other one's
    nickname key in a direct conversation ``peer`` is part of, or None (not theirs)."""
    if message.room is not None:
        return message.room
    sender, recipient = name_key(message.sender), name_key(message.recipient or "")
    if peer.key == sender:
        return recipient
    return sender if peer.key == recipient else None


def authored(peer: Peer, message: Target) -> bool:
    """``peer`` wrote ``message``: its nickname, and either signed in to that
    nickname's account or sent during this connection (a nickname taken after its
    owner left does not take their messages)."""
    return name_key(message.sender) == peer.key and (
        peer.key in peer.accounts or message.ts >= peer.connected_ts)


def change(hub: Hub, peer: Peer, req: Change, ref: str | None) -> None:
    """`edit`, `delete` and `react` (docs/protocol.md, "Replies, reactions, edits and
    deletes"): checked here, applied when it arrives in the one order."""
    message = hub.store.message(req.id)
    place = None if message is None else conversation(peer, message)
    room = other = None
    if message is not None and message.room is not None:
        room = peer.rooms.get(message.room)
    if message is None or place is None or message.deleted or (
            message.room is not None and room is None):
        raise ProtocolError("no_such_message", f"There is no message {req.id} you can "
                            "see (it may have been deleted).")
    if message.room is None:
        other = message.recipient if name_key(message.sender) == peer.key else message.sender
    kind = CHANGES[req.kind]
    if kind == EDIT:
        if not authored(peer, message):
            raise ProtocolError("not_allowed", "Only its author can edit a message.")
        if hub.now_ms() - message.ts > EDIT_WINDOW_MS:
            raise ProtocolError("not_allowed", "A message can be edited for an hour "
                                "after it was sent.")
        if message.edits >= MAX_EDITS:
            raise ProtocolError("not_allowed", f"A message can be edited {MAX_EDITS} "
                                "times.")
    elif kind == DELETE:
        if not (authored(peer, message) or peer.oper or (
                room is not None and hub.owners.is_operator(peer, room))):
            raise ProtocolError("not_allowed", "Only its author or the room's operators "
                                "can delete a message.")
    elif kind == REACT:
        reactions = hub.store.reactions([req.id]).get(req.id, {})
        if req.text not in reactions and len(reactions) >= MAX_REACTIONS:
            raise ProtocolError("not_allowed", f"A message takes {MAX_REACTIONS} "
                                "different reactions at most.")
    if room is not None and kind != DELETE:
        hub.owners.may_speak(peer, room)  # a quiet room, a room ban
    if not peer.bucket.take(hub.clock()):
        raise out_of_tokens(peer, "You are sending too fast; slow down.")
    hub.change(peer, kind, req.id, req.text, ref, room=room, other=other)


def mark_read(hub: Hub, peer: Peer, req: MarkRead, ref: str | None) -> None:
    """How far a registered nickname has read a conversation: kept (forward only),
    shared across a cluster, told to its next connection (docs/protocol.md)."""
    if peer.key not in peer.accounts:
        raise ProtocolError("account_required", "Read markers are kept for registered "
                            "nicknames signed in to their account.")
    assert peer.key is not None
    if req.room is not None:
        room = member_room(hub, peer, req.room)
        conv, where = f"#{room.key}", {"room": room.name}
    else:
        assert req.to is not None
        conv, where = f"@{name_key(req.to)}", {"to": req.to}
    if req.id is None and req.ts is None:  # a question: the marker as it stands
        last = hub.store.read_marker(peer.key, conv)
    else:
        last = min(req.id if req.id is not None else
                   hub.store.id_at(req.ts + 1) - 1 if req.ts is not None else 0,
                   hub.store.last_id)
        spend_change(hub, peer, spend=False)
        if last > 0:
            hub.read_marker(peer.key, conv, last)
        last = hub.store.read_marker(peer.key, conv)  # (never moved back)
    reply(hub, peer, ReadMarker(last, ts=hub.store.ts_of(last) if last else None,
                                **where), ref)


def part(hub: Hub, peer: Peer, req: Part, ref: str | None) -> None:
    room = member_room(hub, peer, req.room)
    spend_change(hub, peer)
    hub.leave(peer, room, "part", req.message, ref=ref)
    log.info("%s parted %s", peer.nick, room.name)


def nick(hub: Hub, peer: Peer, req: Nick, ref: str | None) -> None:
    new = req.nick
    if new == peer.nick:
        return
    key = name_key(new)
    if key != peer.key:
        if key in hub.users:
            raise ProtocolError("nick_taken", f"The nickname '{new}' is taken.")
        if hub.gate.nick_ban(key) is not None:
            raise ProtocolError("bad_nick", f"The nickname '{new}' is banned here.")
    spend_change(hub, peer, spend=False)  # before a password hash is spent on it
    if key != peer.key:
        hub.gate.authenticate(peer, key, new, req.nick_password)
        hub.claim(peer, key, new)
    spend_change(hub, peer)
    old = peer.nick
    hub.rename(peer, new, key, ref)
    log.info("%s is now %s", old, new)


WHO_MATCHES = 200  # users in one `who` answer for a mask (docs/protocol.md)


def member_of(who: Peer | Elsewhere) -> Member:
    nick = who.nick or ""
    return Member(nick=nick, user=who.username or nick, realname=who.realname,
                  away=who.away, oper=who.oper, host=who.host)


def who_matches(hub: Hub, peer: Peer, mask: str, ref: str | None) -> None:
    """Users matching a nickname mask: those not invisible, or sharing a room with the
    asker; an exact nickname matches whoever holds it. A scan of the users online,
    charged to the pass like a broadcast to as many."""
    exact = "*" not in mask and "?" not in mask
    key = name_key(mask)
    if exact:
        found = hub.users.get(key) or hub.elsewhere.get(key)
        candidates: list[Peer | Elsewhere] = [found] if found is not None else []
    else:  # a scan of everyone online: a token of the search bucket pays for it
        if not peer.searches.take(hub.clock()):
            raise out_of_tokens(peer, "You are asking too fast; wait a second.")
        everyone: list[Peer | Elsewhere] = [*hub.users.values(), *hub.elsewhere.values()]
        candidates = [p for p in everyone
                      if p.nick is not None and glob_match(key, name_key(p.nick))
                      and (not p.invisible or p is peer or (isinstance(p, Peer)
                           and any(r in peer.rooms for r in p.rooms)))]
        hub.cost += len(hub.users) // 10 + 1
    members = [member_of(p) for p in candidates[:WHO_MATCHES]]
    reply(hub, peer, WhoMatches(mask, members, len(candidates) > WHO_MATCHES), ref)


def who(hub: Hub, peer: Peer, req: Who, ref: str | None) -> None:
    if req.room is None:
        assert req.mask is not None
        who_matches(hub, peer, req.mask, ref)
        return
    room = hub.rooms.get(name_key(req.room))
    if room is None or (hub.owners.secret(room.key) and room.key not in peer.rooms):
        raise ProtocolError("not_in_room", f"There is no room named '{req.room}'.")
    if not req.details:
        users(hub, peer, room, ref)
        return
    secret = hub.owners.secret(room.key)
    ops, voiced = hub.owners.roles(room)
    members = [member_of(m) for m in room.members]
    members += [Member(nick=nick, user=nick, realname="", away="", oper=False, host="")
                for nick in room.remote.values()]
    hub.cost += len(members)
    reply(hub, peer, Users(room.name, room.nicks(), ops or None, voiced or None,
                           members, secret, hub.converging), ref)


def rooms(hub: Hub, peer: Peer, req: Rooms, ref: str | None) -> None:
    after = req.after
    page, more = hub.rooms_page(None if after is None else name_key(after))
    secret = hub.owners.secret
    reply(hub, peer, RoomList([{"name": r.name, "users": len(r.members) + len(r.remote)}
                               for r in page
                               if not secret(r.key) or r.key in peer.rooms], more), ref)


def history(hub: Hub, peer: Peer, req: History, ref: str | None) -> None:
    store, limit = hub.store, req.limit
    before, after = req.before, req.after or 0
    if req.peer is not None:  # direct messages: an account holder's own, since then
        account = store.account(peer.key) if peer.key in peer.accounts else None
        if account is None:
            raise ProtocolError("account_required", "Only the holder of a nickname's "
                                "account, signed in, may read its direct messages.")
        after = max(after, store.id_at(account.created) - 1)
    if req.before_ts is not None:  # times become ids (Store.id_at: a few lookups)
        first = store.id_at(req.before_ts)
        before = first if before is None else min(before, first)
    if req.after_ts is not None:
        after = max(after, store.id_at(req.after_ts + 1) - 1)
    around = req.around
    if req.around_ts is not None:
        around = store.id_at(req.around_ts)
    if req.peer is not None:
        read: Reader = partial(direct_bytes, hub, peer.nick or "", req.peer)
        end = HistoryEnd(peer=req.peer)
    else:
        assert req.room is not None  # parse_request takes exactly one of them
        room = member_room(hub, peer, req.room)
        if around is None and not req.oldest:
            replay(hub, peer, room, ref, after=after, before=before, limit=limit)
            return
        read = partial(history_bytes, hub, room)
        end = HistoryEnd(room=room.name)
    budget, _ = answer_budget(hub, peer)
    if around is None:
        chunk, more = read(after=after, before=before, limit=limit, budget=budget,
                           oldest=req.oldest)
    else:  # the message at `around` (or the first after it), half the rest before it
        older, more = read(after=after, before=around, limit=(limit - 1) // 2,
                           budget=budget) if limit > 1 else (Replay([]), False)
        newer, more_newer = read(after=max(after, around - 1), before=before,
                                 limit=limit - len(older), budget=budget - len(older.data),
                                 oldest=True)
        chunk, more = Replay(older.messages + newer.messages), more or more_newer
    if chunk.messages:
        hub.to_peer(peer, chunk)
    end.more = more
    reply(hub, peer, end, ref)


Reader = Callable[..., tuple[Replay, bool]]


def direct_bytes(hub: Hub, me: str, other: str, *, after: int, before: int | None,
                 limit: int, budget: int, oldest: bool = False) -> tuple[Replay, bool]:
    """``history_bytes`` for the direct messages between ``me`` and ``other``."""
    rows = hub.store.direct(me, other, after=after, before=before, limit=limit + 1,
                            oldest=oldest)
    return pack_history(((row, "to", recipient) for row, recipient in rows), limit=limit,
                        budget=budget, oldest=oldest)


def tagmsg(hub: Hub, peer: Peer, req: TagMsg, ref: str | None) -> None:
    room, target = addressed(hub, peer, req)
    hub.relay_tags(peer, req.tags, ref, room=room, target=target)


def online(hub: Hub, nick: str) -> Peer | Elsewhere:
    key = name_key(nick)
    target = hub.users.get(key) or hub.elsewhere.get(key)  # here, or on another node
    if target is None:
        raise ProtocolError("no_such_user", f"Nobody named '{nick}' is online.")
    return target


def whois(hub: Hub, peer: Peer, req: Named, ref: str | None) -> None:
    who = online(hub, req.nick)
    rooms = [r.name for r in list(who.rooms.values())[:WHOIS_ROOMS]]
    assert who.nick is not None
    idle = int(hub.clock() - who.last_spoke) if isinstance(who, Peer) else None
    roles = {}
    for room in list(who.rooms.values())[:WHOIS_ROOMS]:
        rules = hub.owners.rules.get(room.key)
        if rules is not None and isinstance(who, Peer):
            if rules.is_operator(who.key, who.host, who.accounts):
                roles[room.name] = "operator"
            elif rules.has_voice(who.key, who.host, who.accounts):
                roles[room.name] = "voice"
    reply(hub, peer, WhoisAnswer(who.nick, rooms, who.connected_ts, who.door,
                                 who.key in who.accounts, more=len(who.rooms) > WHOIS_ROOMS,
                                 away=who.away or None, user=who.username or None,
                                 realname=who.realname or None, idle=idle,
                                 oper=who.oper, roles=roles or None), ref)


def away(hub: Hub, peer: Peer, req: Away, ref: str | None) -> None:
    hub.set_away(peer, req.text)
    assert peer.nick is not None
    reply(hub, peer, AwayAnswer(peer.nick, peer.away or None), ref)


def whowas(hub: Hub, peer: Peer, req: Named, ref: str | None) -> None:
    reply(hub, peer, WhowasAnswer(req.nick, hub.whowas(name_key(req.nick))), ref)


def monitor(hub: Hub, peer: Peer, req: Monitor, ref: str | None) -> None:
    """Follow nicknames (IRC's MONITOR): the status of those added (or, with
    ``status``, of all followed) as `presence`, then the list followed."""
    if req.clear:
        hub.follow(peer, list(peer.monitors.values()), False)
    hub.follow(peer, req.remove, False)
    hub.follow(peer, req.add, True)
    asked = list(peer.monitors.values()) if req.status else req.add
    if asked:
        online, offline = [], []
        for nick in asked:
            key = name_key(nick)
            who = hub.users.get(key) or hub.elsewhere.get(key)
            if who is not None and who.nick is not None:
                online.append(who.nick)
            else:
                offline.append(nick)
        reply(hub, peer, Presence(online, offline), ref)
    reply(hub, peer, MonitorList(list(peer.monitors.values())), ref)


def lusers(hub: Hub, peer: Peer, req: Nothing, ref: str | None) -> None:
    reply(hub, peer, hub.counts(), ref)


# ---------------------------------------------------------------- the server's operator


def oper(hub: Hub, peer: Peer, req: Oper, ref: str | None) -> None:
    """Sign in as the server's operator (``--oper NAME:PASSWORD``); a try costs a
    token of the change bucket, so that guessing is slow."""
    spend_change(hub, peer)
    name, _, password = hub.config.oper.partition(":")
    if not name:
        raise ProtocolError("no_oper", "This server has no operator sign-in.")
    if not (hmac.compare_digest(req.name.encode(), name.encode())
            & hmac.compare_digest(req.password.encode(), password.encode())):
        log.warning("%s from %s gave a wrong operator sign-in", peer.nick, peer.host)
        raise ProtocolError("bad_oper", "That operator name and password are wrong.")
    peer.oper = True
    log.info("%s signed in as the server's operator", peer.nick)
    reply(hub, peer, OperAnswer(name), ref)


def operator_only(peer: Peer) -> None:
    if not peer.oper:
        raise ProtocolError("not_oper", "Only the server's operator may do that.")


def kill(hub: Hub, peer: Peer, req: Kill, ref: str | None) -> None:
    operator_only(peer)
    target = hub.users.get(name_key(req.nick))
    if target is None:
        raise ProtocolError("no_such_user", f"Nobody named '{req.nick}' is online here.")
    reason = f"Killed by {peer.nick}: {req.reason or 'no reason given'}"
    hub.kick(target, reason, "kicked", reason)
    log.info("%s killed %s", peer.nick, target.nick)


def wallops(hub: Hub, peer: Peer, req: Wallops, ref: str | None) -> None:
    operator_only(peer)
    hub.wallops(peer, req.text)


def ison(hub: Hub, peer: Peer, req: Ison, ref: str | None) -> None:
    elsewhere = hub.elsewhere
    found = [who for who in (hub.users.get(k) or elsewhere.get(k) for k in
                             map(name_key, req.nicks)) if who is not None]
    away = [p.nick for p in found if p.away and p.nick]  # (docs/protocol.md)
    reply(hub, peer, IsonAnswer([p.nick for p in found if p.nick], away or None), ref)


def typing(hub: Hub, peer: Peer, req: InRoom, ref: str | None) -> None:
    room = member_room(hub, peer, req.room)
    if not peer.bucket.take(hub.clock()):
        raise out_of_tokens(peer, "You are sending too fast; slow down.")
    hub.typing(peer, room)


def ping(hub: Hub, peer: Peer, req: Token, ref: str | None) -> None:
    reply(hub, peer, Pong(req.token), ref)


def pong(hub: Hub, peer: Peer, req: Token, ref: str | None) -> None:
    """Nothing to do: hearing from the peer already answered the ping."""


def bye(hub: Hub, peer: Peer, req: Bye, ref: str | None) -> None:
    hub.close(peer, "quit", req.reason)


# ---------------------------------------------------------------- accounts


def register(hub: Hub, peer: Peer, req: Password, ref: str | None) -> None:
    hub.gate.register(peer, req.password)
    reply(hub, peer, Registered(peer.nick or ""), ref)


def unregister(hub: Hub, peer: Peer, req: Nothing, ref: str | None) -> None:
    hub.gate.unregister(peer)
    reply(hub, peer, Unregistered(peer.nick or ""), ref)


Handler = Callable[["Hub", Peer, Any, "str | None"], None]  # takes its type's Request
def search(hub: Hub, peer: Peer, req: Search, ref: str | None) -> None:
    """Full-text search of what the asker may see (docs/protocol.md, "Search"): its
    rooms, and the direct messages of this connection. A bucket of its own pays for it."""
    query = parse_query(req.query)
    if query.empty:
        raise ProtocolError("bad_field", "Type some words to search for (letters or "
                                         "digits), or from:NICK or in:ROOM.")
    if hub.searched:
        raise Later()  # one search a pass: a pass stalls the others one budget at most
    now = hub.clock()
    if not peer.searches.take(now):
        raise ProtocolError("rate_limited", "You are searching too fast; wait a second.")
    hub.searched = True
    scope = Scope(tuple(peer.rooms), tuple(peer.dms), hub.store.last_id)
    started = time.perf_counter()
    try:
        rows, more = hub.store.search(query, scope)
    except TooBroad:
        raise ProtocolError("too_broad", "That search matches too much to answer quickly; "
                                         "add words, or from:NICK or in:ROOM.") from None
    finally:  # a token per SEARCH_TOKEN_S it ran: a too-broad search costs the bucket
        ran = time.perf_counter() - started
        peer.searches.spend(max(0.0, ran / SEARCH_TOKEN_S - 1), now)
    results = []
    for msg_id, ts, room_key, sender, recipient, text, action in rows:
        found: dict[str, Any] = {"id": msg_id, "ts": ts, "from": sender,
                                              "text": text,
                                              "snippet": snippet(text, query.terms)}
        if room_key is not None:
            room = hub.rooms.get(room_key)
            found["room"] = room.name if room is not None else room_key
        else:
            found["to"] = recipient
        if action == ACTION:
            found["action"] = True
        elif action == NOTICE:
            found["notice"] = True
        results.append(found)
    reply(hub, peer, SearchResults(req.query, results, more), ref)


def upload(hub: Hub, peer: Peer, req: Upload, ref: str | None) -> None:
    """An offered file (docs/protocol.md, "Files"): announced at once when the server
    has it already, else `upload_ready` (at the offset a dropped upload reached)."""
    if req.room is not None:
        target: Room | Peer = member_room(hub, peer, req.room)
    else:
        other = hub.users.get(name_key(req.to))
        if other is None:
            raise ProtocolError("no_such_user", f"Nobody named '{req.to}' is online.")
        target = other
    if len(peer.uploads) >= UPLOADS_PER_PEER:
        raise ProtocolError("rate_limited", "Finish the files you are sending first.")
    if not peer.bucket.take(hub.clock()):  # a file is a message: the same bucket
        raise ProtocolError("rate_limited", "You are sending too fast; slow down.")
    files = hub.files
    assert peer.key is not None
    try:
        size = files.size_of(req.sha256)
        if size is not None and hub.may_read_file(peer, req.sha256):
            # kept, and this sender can see it already: announced without its bytes.
            # Anyone else sends the bytes (the server says nothing of what it keeps).
            if req.size != size:
                raise ProtocolError("bad_field", f"'size' is not the size of the file "
                                    f"with that SHA-256 ({size} bytes).")
            announce(hub, peer, req.sha256, size, clean_name(req.name), req.mime, target,
                     ref)
            return
        older = files.sending(req.sha256, peer.key)
        if older is not None:  # the same sender, another connection (cut, not yet noticed)
            hub.cut_upload(older, "This upload goes on from your newer offer of the file.")
        sent = files.offer(req.sha256, req.size, req.name, req.mime, target, ref,
                           peer.key, peer)
    except BaseException:
        peer.bucket.refund()
        raise
    peer.uploads[sent.token] = sent
    if sent.ready:
        reply(hub, peer, UploadReady(sent.token, 0), ref)
    else:
        hub.rehash_later(peer)  # its bytes so far are hashed first, a step per pass


def chunk(hub: Hub, peer: Peer, req: Chunk, ref: str | None) -> None:
    sent = peer.uploads.get(req.upload)
    if sent is None and req.upload in peer.refused:
        return  # its refusal was said once; the chunks that were on their way go
    if sent is None or not sent.ready:
        raise ProtocolError("no_such_upload", "No upload of yours has that id (ready).")
    try:
        data = base64.b64decode(req.data, validate=True)
    except ValueError:
        raise ProtocolError("bad_field", "'data' must be base64.") from None
    files = hub.files
    try:
        done = files.write(sent, req.offset, data)
    except ProtocolError as exc:
        if exc.code == "store_failed":
            del peer.uploads[sent.token]
            peer.refused.append(sent.token)
            files.abandon(sent)
        raise
    if not done:
        if sent.received - sent.reported >= PROGRESS_EVERY:
            sent.reported = sent.received
            reply(hub, peer, UploadProgress(sent.token, sent.received), None)
        return
    del peer.uploads[sent.token]
    files.finish(sent)  # hash_mismatch: the bytes are dropped
    target = sent.target
    assert target is not None  # offered by a peer: it names where the file goes
    if isinstance(target, Peer) and target.closing:
        raise ProtocolError("no_such_user", "The person left before the file was sent; "
                                            "it is kept: offer it again.")
    announce(hub, peer, sent.sha256, sent.size, sent.name, sent.kind, target, sent.ref)


def announce(hub: Hub, peer: Peer, sha256: str, size: int, name: str, kind: str,
             target: Room | Peer, ref: str | None) -> None:
    """The message that carries a stored file, to its room or person (its text: the
    name, for clients that know nothing of files)."""
    file: dict[str, str | int] = {"id": sha256, "name": name, "size": size, "type": kind}
    hub.kept_file(sha256, size)
    if isinstance(target, Room):
        hub.post(peer, name, False, ref, room=target, file=file)
    else:
        hub.post(peer, name, False, ref, target=target, file=file)
    log.info("%s sent a file of %d bytes", peer.nick, size)


def download(hub: Hub, peer: Peer, req: Download, ref: str | None) -> None:
    hub.download(peer, req.file, req.offset, ref)


# ---------------------------------------------------------------- rooms with owners


def existing_room(hub: Hub, peer: Peer, name: str, *, member: bool = False) -> Room:
    """The room ``name`` (`no_such_room`; a secret one is not shown to others); with
    ``member``, one ``peer`` is in (`not_in_room`), unless it is the server's operator."""
    room = hub.rooms.get(name_key(name))
    if room is None or (hub.owners.secret(room.key) and room.key not in peer.rooms
                        and not peer.oper):
        raise ProtocolError("no_such_room", f"There is no room named '{name}'.")
    if member and room.key not in peer.rooms and not peer.oper:
        raise ProtocolError("not_in_room", f"You are not in #{room.name}.")
    return room


def topic(hub: Hub, peer: Peer, req: TopicSet, ref: str | None) -> None:
    if req.topic is None:  # asked: the topic ("" when none)
        reply(hub, peer, hub.owners.topic_of(existing_room(hub, peer, req.room)), ref)
        return
    room = existing_room(hub, peer, req.room, member=True)
    spend_change(hub, peer)
    hub.owners.topic(peer, room, req.topic, ref)


def mode(hub: Hub, peer: Peer, req: ModeSet, ref: str | None) -> None:
    if req.changes is None:
        room_info(hub, peer, InRoom(req.room), ref)
        return
    room = existing_room(hub, peer, req.room, member=True)
    spend_change(hub, peer)
    if not hub.owners.modes(peer, room, req.changes, ref):  # nothing changed: said so
        assert peer.nick is not None
        reply(hub, peer, ModeChange(room.name, peer.nick, [], hub.now_ms()), ref)


def kick(hub: Hub, peer: Peer, req: KickOut, ref: str | None) -> None:
    room = existing_room(hub, peer, req.room, member=True)
    spend_change(hub, peer)
    hub.owners.kick(peer, room, req.nick, req.reason, ref)


def invite(hub: Hub, peer: Peer, req: Invite, ref: str | None) -> None:
    room = existing_room(hub, peer, req.room)
    spend_change(hub, peer)
    hub.owners.invite(peer, room, req.nick, ref)


def room_info(hub: Hub, peer: Peer, req: InRoom, ref: str | None) -> None:
    reply(hub, peer, hub.owners.info(peer, existing_room(hub, peer, req.room)), ref)


HANDLERS: dict[str, Handler] = {
    "hello": hello, "send": send, "join": join_request, "part": part, "nick": nick,
    "who": who, "rooms": rooms, "history": history, "typing": typing, "ping": ping,
    "pong": pong, "bye": bye, "register": register, "unregister": unregister,
    "search": search, "upload": upload, "chunk": chunk, "download": download,
    "tagmsg": tagmsg, "whois": whois, "ison": ison, "away": away,
    "topic": topic, "mode": mode, "kick": kick, "invite": invite, "room_info": room_info,
    "oper": oper, "kill": kill, "wallops": wallops, "whowas": whowas, "lusers": lusers,
    "monitor": monitor, "edit": change, "delete": change, "react": change,
    "mark_read": mark_read,
}
