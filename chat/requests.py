"""What the server does for each request of PROTOCOL.md: one function per frame type.

Each handler takes the ``Hub``, the ``Peer`` that asked, the request as
``parse_request`` returned it and its ``ref``; a request that cannot be done raises
``ProtocolError`` before it changes anything. The hub owns the state; nothing here
touches a socket.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any, Callable

from chat.errors import ProtocolError
from chat.gate import ban_sentence
from chat.model import Peer, Room
from chat.protocol import encode, name_key

if TYPE_CHECKING:
    from chat.hub import Hub

REPLAY_DEFAULT = 50  # PROTOCOL.md: latest 50 on join without `since`

log = logging.getLogger("chat.server")


def reply(hub: Hub, peer: Peer, frame: dict[str, Any], ref: str | None) -> None:
    if ref is not None:
        frame["ref"] = ref
    hub.to_peer(peer, encode(frame))


def users(hub: Hub, peer: Peer, room: Room, ref: str | None) -> None:
    reply(hub, peer, {"type": "users", "room": room.name, "users": room.nicks()}, ref)


def join(hub: Hub, peer: Peer, name: str, ref: str | None, since: int | None) -> None:
    key = name_key(name)
    room = hub.rooms.get(key)
    if room is None:
        room = hub.rooms[key] = Room(name, key)
    if key in peer.rooms:
        users(hub, peer, room, ref)
        reply(hub, peer, {"type": "history_end", "room": room.name}, ref)
        return
    hub.deliver()  # the newcomer gets nothing said before it joined
    room.members[peer] = None
    peer.rooms[key] = room
    joined = {"type": "joined", "room": room.name, "nick": peer.nick,
              "ts": hub.now_ms()}
    data = encode(joined)
    hub.to_room(room, data, peer, data if ref is None else encode({**joined, "ref": ref}))
    users(hub, peer, room, ref)
    limit = hub.config.history
    if since is None:
        limit = min(limit, REPLAY_DEFAULT)
    replay(hub, peer, room, ref, after=since or 0, before=None, limit=limit)
    log.info("%s joined %s", peer.nick, room.name)


def replay(hub: Hub, peer: Peer, room: Room, ref: str | None, *, after: int,
           before: int | None, limit: int) -> None:
    """History frames, oldest first, then `history_end` (with `more` if cut)."""
    more = False
    if room.has_history:
        rows, more = hub.store.latest(room.key, after=after, before=before,
                                      limit=limit)
        for row in rows:
            frame = {"type": "message", "id": row.id, "ts": row.ts, "room": room.name,
                     "from": row.sender, "text": row.text}
            if row.action:
                frame["action"] = True
            frame["history"] = True
            hub.to_peer(peer, encode(frame))
    end: dict[str, Any] = {"type": "history_end", "room": room.name}
    if more:
        end["more"] = True
    reply(hub, peer, end, ref)


def member_room(hub: Hub, peer: Peer, name: str) -> Room:
    room = peer.rooms.get(name_key(name))
    if room is None:
        raise ProtocolError("not_in_room", f"You are not in a room named '{name}'.")
    return room


# ---------------------------------------------------------------- requests


def hello(hub: Hub, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
    cfg = hub.config
    refusal = hub.gate.refusal(peer.host)
    if refusal is not None and refusal.code == "banned":  # banned since it connected
        raise refusal
    if cfg.password is not None and not hmac.compare_digest(
            (req["password"] or "").encode(), cfg.password.encode()):
        raise ProtocolError("auth_failed", "Wrong server password.")
    if len(hub.users) >= cfg.max_clients:
        raise ProtocolError("server_full", "The server is full; try again later.")
    key = name_key(req["nick"])
    ban = hub.gate.nick_ban(key)
    if ban is not None:
        raise ProtocolError("banned", ban_sentence(ban))
    holder = hub.users.get(key)
    if holder is not None and (req["nick_password"] is None
                               or not hub.gate.has_account(key)):
        raise ProtocolError("nick_taken", f"The nickname '{req['nick']}' is taken.")
    hub.gate.authenticate(peer, key, req["nick"], req["nick_password"])
    if holder is not None:
        # The account's owner reclaims its nickname from an older connection
        # (often its own, dropped without the server noticing yet).
        hub.to_peer(holder, encode({"type": "kicked", "reason": "You signed in "
                                    "from another connection."}))
        hub.close(holder, "disconnected")
        log.info("%s reclaimed its nickname from %s", req["nick"], holder.host)
    peer.nick, peer.key = req["nick"], key
    peer.client = req["client"] or ""
    hub.users[key] = peer
    log.info("%s registered from %s", peer.nick, peer.host)
    reply(hub, peer, {"type": "welcome", "nick": peer.nick, "server": cfg.name,
                      "motd": cfg.motd, "limits": cfg.limits()}, ref)
    for name in req["rooms"]:
        join(hub, peer, name, ref, req["since"])


def join_request(hub: Hub, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
    join(hub, peer, req["room"], ref, None)


def send(hub: Hub, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
    room = target = None
    if req["room"] is not None:
        room = member_room(hub, peer, req["room"])
    else:
        target = hub.users.get(name_key(req["to"]))
        if target is None:
            raise ProtocolError("no_such_user", f"Nobody named '{req['to']}' is online.")
    if not peer.bucket.take(hub.clock()):
        raise ProtocolError("rate_limited", "You are sending too fast; slow down.")
    ts, text, action = hub.now_ms(), req["text"], req["action"]
    if room is not None:
        msg_id = hub.store.add(ts, peer.nick, text, room_key=room.key,
                               room_name=room.name, action=action)
        room.has_history = True
        frame = {"type": "message", "id": msg_id, "ts": ts, "room": room.name,
                 "from": peer.nick, "text": text}
    else:
        msg_id = hub.store.add(ts, peer.nick, text, recipient=target.nick,
                               action=action)
        frame = {"type": "message", "id": msg_id, "ts": ts, "to": target.nick,
                 "from": peer.nick, "text": text}
    if action:
        frame["action"] = True
    data = encode(frame)
    echo = data if ref is None else encode({**frame, "ref": ref})
    if room is not None:
        hub.to_room(room, data, peer if ref is not None else None, echo)
    else:
        if target is not peer:
            hub.to_peer(target, data)
        hub.to_peer(peer, echo)
    peer.sent += 1
    hub.messages += 1
    if log.isEnabledFor(logging.DEBUG):  # a direct message's text stays private
        if room is not None:
            log.debug("%s -> %s: %s", peer.nick, room.name, text)
        else:
            log.debug("%s -> %s: (direct message)", peer.nick, target.nick)


def part(hub: Hub, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
    room = member_room(hub, peer, req["room"])
    left = {"type": "left", "room": room.name, "nick": peer.nick, "reason": "part",
            "ts": hub.now_ms()}
    hub.deliver()
    del room.members[peer]
    del peer.rooms[room.key]
    hub.to_room(room, encode(left))
    reply(hub, peer, left, ref)
    hub.drop_if_dead(room)
    log.info("%s parted %s", peer.nick, room.name)


def nick(hub: Hub, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
    new = req["nick"]
    if new == peer.nick:
        return
    key = name_key(new)
    if key != peer.key:
        if key in hub.users:
            raise ProtocolError("nick_taken", f"The nickname '{new}' is taken.")
        if hub.gate.nick_ban(key) is not None:
            raise ProtocolError("bad_nick", f"The nickname '{new}' is banned here.")
        hub.gate.authenticate(peer, key, new, req["nick_password"])
    renamed = {"type": "renamed", "old": peer.nick, "new": new, "ts": hub.now_ms()}
    others: dict[Peer, None] = {}
    for room in peer.rooms.values():
        others.update(room.members)
    others.pop(peer, None)
    del hub.users[peer.key]
    peer.nick, peer.key = new, key
    hub.users[key] = peer
    data = encode(renamed)
    for other in others:
        hub.to_peer(other, data)
    reply(hub, peer, renamed, ref)
    log.info("%s is now %s", renamed["old"], new)


def who(hub: Hub, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
    room = hub.rooms.get(name_key(req["room"]))
    if room is None:
        raise ProtocolError("not_in_room", f"There is no room named '{req['room']}'.")
    users(hub, peer, room, ref)


def rooms(hub: Hub, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
    listing = [{"name": r.name, "users": len(r.members)}
               for r in sorted(hub.rooms.values(), key=lambda r: r.key)]
    reply(hub, peer, {"type": "rooms", "rooms": listing}, ref)


def history(hub: Hub, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
    room = member_room(hub, peer, req["room"])
    replay(hub, peer, room, ref, after=0, before=req["before"], limit=req["limit"])


def typing(hub: Hub, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
    room = member_room(hub, peer, req["room"])
    if not peer.bucket.take(hub.clock()):
        raise ProtocolError("rate_limited", "You are sending too fast; slow down.")
    hub.to_room(room, encode({"type": "typing", "room": room.name, "nick": peer.nick}),
                peer, None)


def ping(hub: Hub, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
    pong: dict[str, Any] = {"type": "pong"}
    if req["token"] is not None:
        pong["token"] = req["token"]
    reply(hub, peer, pong, ref)


def pong(hub: Hub, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
    """Nothing to do: hearing from the peer already answered the ping."""


def bye(hub: Hub, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
    hub.close(peer, "quit", req["reason"])


# ---------------------------------------------------------------- accounts


def register(hub: Hub, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
    hub.gate.register(peer, req["password"])
    reply(hub, peer, {"type": "registered", "nick": peer.nick}, ref)


def unregister(hub: Hub, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
    hub.gate.unregister(peer)
    reply(hub, peer, {"type": "unregistered", "nick": peer.nick}, ref)


Handler = Callable[["Hub", Peer, dict[str, Any], "str | None"], None]
HANDLERS: dict[str, Handler] = {
    "hello": hello, "send": send, "join": join_request, "part": part, "nick": nick,
    "who": who, "rooms": rooms, "history": history, "typing": typing, "ping": ping,
    "pong": pong, "bye": bye, "register": register, "unregister": unregister,
}
