"""Chat semantics: registration, rooms, messages, DMs, typing, flood control, timers.

The hub turns validated frames from a ``Peer`` into bytes queued on peers and rows
added to the ``Store``; it never touches a socket. When a peer must go, ``close``
takes it out of the chat at once and lists it in ``closing`` for the server, which
flushes what is queued (when asked) and then closes the socket.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any, Callable

from chat.config import ServerConfig
from chat.errors import ProtocolError
from chat.gate import Gate, ban_sentence
from chat.model import SNIFF, Peer, Room, TokenBucket
from chat.protocol import check_ref, encode, name_key, parse_request
from chat.store import Store

MAX_ERRORS_IN_ROW = 20  # PROTOCOL.md: more than 20 error frames in a row closes
CLOSE_FLUSH_SECONDS = 3.0  # how long a closing peer may take to read its last output
BEFORE_HELLO = frozenset({"hello", "ping", "bye"})  # PROTOCOL.md, Session 3
REPLAY_DEFAULT = 50  # PROTOCOL.md: latest 50 on join without `since`
OPERATOR = "server"  # reserved nickname: what the operator's room messages come from

log = logging.getLogger("chat.server")


class Hub:
    """Everything the server knows about who is where, independent of I/O."""

    def __init__(self, config: ServerConfig, store: Store,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.wall = wall
        self.peers: dict[Peer, None] = {}  # every open connection
        self.users: dict[str, Peer] = {}  # registered peers by nick key
        self.rooms = {key: Room(name, key, True) for key, name in store.rooms()}
        self.dirty: set[Peer] = set()  # peers that got output this pass
        self.closing: dict[Peer, None] = {}  # out of the chat, socket still open
        self.gate = Gate(config, store, clock, self.now_ms)
        self.messages = 0
        self._batch: Room | None = None  # the room whose broadcasts are being gathered
        self._ping_seq = 0
        self._handlers: dict[str, Callable[[Peer, dict[str, Any], str | None], None]] = {
            "hello": self._hello, "send": self._send, "join": self._join_request,
            "part": self._part, "nick": self._nick, "who": self._who,
            "rooms": self._rooms, "history": self._history, "typing": self._typing,
            "ping": self._ping, "pong": self._pong, "bye": self._bye,
            "register": self._register, "unregister": self._unregister,
        }

    def now_ms(self) -> int:
        return int(self.wall() * 1000)

    # ------------------------------------------------------------ output

    def to_room(self, room: Room, data: bytes, special: Peer | None = None,
                special_data: bytes | None = None) -> None:
        """Broadcast to a room's members (``special`` gets ``special_data`` instead,
        or nothing when that is None). Gathered per pass, in one room at a time, so
        every peer still receives everything in the order it happened."""
        if self._batch is not room:
            self.deliver()
            self._batch = room
        room.pending.append((data, special, special_data))

    def to_peer(self, peer: Peer, data: bytes) -> None:
        batch = self._batch
        if batch is not None and peer in batch.members:
            self.deliver()  # what the room was told comes first
        peer.queue(data)

    def deliver(self) -> None:
        """Queue the gathered room broadcasts; before sends and membership changes."""
        if self._batch is not None:
            room, self._batch = self._batch, None
            room.deliver()

    # ------------------------------------------------------------ connections

    def open(self, addr: Any) -> Peer:
        """A new connection: it has ``hello_timeout`` seconds to register."""
        cfg = self.config
        now = self.clock()
        peer = Peer(addr, now, self.now_ms(), TokenBucket(cfg.rate, cfg.burst, now),
                    self.dirty)
        self.peers[peer] = None
        self.gate.opened(peer.host)
        return peer

    def admission(self, peer: Peer) -> ProtocolError | None:
        """Why a new connection may not stay (a ban, the per-address limit), or None."""
        return self.gate.refusal(peer.host)

    @property
    def unregistered(self) -> int:
        return len(self.peers) - len(self.users) - len(self.closing)

    def receive(self, peer: Peer, frame: dict[str, Any]) -> None:
        """Handle one well-formed frame from ``peer``."""
        if peer.closing:
            return
        self._heard(peer)
        ref = None
        try:
            ref = check_ref(frame)
            kind = frame["type"]
            if peer.nick is None and kind == "bye":
                self.close(peer, "quit")  # before welcome, bye just closes
                return
            if peer.nick is None and kind not in BEFORE_HELLO:
                raise ProtocolError("not_registered", "Send 'hello' first.")
            if peer.nick is not None and kind == "hello":
                raise ProtocolError("already_registered", "You are already registered.")
            request = parse_request(frame, self.config.max_text)
            self._handlers[kind](peer, request, ref)
        except ProtocolError as exc:
            self.error(peer, exc, ref)
            return
        peer.errors = 0

    def reject(self, peer: Peer, exc: ProtocolError) -> None:
        """A line from ``peer`` that is not a frame (bad JSON, too long, ...)."""
        if not peer.closing:
            self._heard(peer)
            self.error(peer, exc, None)

    def error(self, peer: Peer, exc: ProtocolError, ref: str | None) -> None:
        frame = {"type": "error", "code": exc.code, "message": exc.message}
        if ref is not None:
            frame["ref"] = ref
        self.to_peer(peer, encode(frame))
        peer.errors += 1
        if exc.closes:
            self.close(peer, "disconnected")
        elif peer.errors > MAX_ERRORS_IN_ROW:
            log.info("closing %s: %d errors in a row", peer.nick or peer.host, peer.errors)
            self.close(peer, "disconnected")

    def lost(self, peer: Peer) -> None:
        """The connection broke or the peer closed it without `bye`."""
        self.close(peer, "disconnected", flush=False)

    def close(self, peer: Peer, reason: str, message: str | None = None, *,
              flush: bool = True) -> None:
        """Take ``peer`` out of the chat now; the server closes its socket later.

        With ``flush`` its queued output is sent first (bounded by a deadline).
        """
        if peer.closing:
            return
        peer.closing = reason
        peer.close_deadline = self.clock() + CLOSE_FLUSH_SECONDS
        if not flush:
            peer.out.clear()
        if peer.nick is not None:
            self._leave_all(peer, reason, message)
            del self.users[peer.key]
            log.info("%s left (%s)", peer.nick, reason)
        self.closing[peer] = None

    def close_all(self) -> None:
        """Shutdown: every peer closes after its queued output, and nobody is told
        of everybody else's leaving (that would be quadratic in a big room)."""
        self.deliver()
        deadline = self.clock() + CLOSE_FLUSH_SECONDS
        for peer in self.peers:
            if not peer.closing:
                peer.closing = "shutdown"
                peer.close_deadline = deadline
                self.closing[peer] = None
        self.users.clear()
        for room in self.rooms.values():
            room.members.clear()

    def forget(self, peer: Peer) -> None:
        """The server closed the socket: drop every trace of the peer."""
        if self.peers.pop(peer, 0) is None:
            self.gate.closed(peer.host)
        self.closing.pop(peer, None)
        self.dirty.discard(peer)

    def _heard(self, peer: Peer) -> None:
        peer.last_heard = self.clock()
        peer.pinged_at = None

    # ------------------------------------------------------------ timers

    def tick(self) -> None:
        """Handshake and hello timeouts, pings to silent peers, closes of unanswered
        ones, and the end of expired bans."""
        cfg = self.config
        now = self.clock()
        for peer in list(self.peers):
            if peer.closing:
                continue
            if peer.nick is None:
                if peer.phase >= SNIFF and now - peer.started >= cfg.tls_timeout:
                    self.close(peer, "timeout", flush=False)  # the TLS handshake stalled
                elif now - peer.started >= cfg.hello_timeout:
                    self.close(peer, "timeout")
            elif peer.pinged_at is None:
                if now - peer.last_heard >= cfg.ping_interval:
                    self._ping_seq += 1
                    self.to_peer(peer, encode({"type": "ping",
                                               "token": str(self._ping_seq)}))
                    peer.pinged_at = now
            elif now - peer.pinged_at >= cfg.ping_timeout:
                self.close(peer, "timeout", flush=False)
        for ban in self.gate.expired():
            self.gate.lift(ban.kind, ban.key)
            log.info("ban on %s %s expired", ban.kind, ban.value)

    # ------------------------------------------------------------ operator

    def notice(self, text: str) -> None:
        """A notice from the operator or the server to every registered user."""
        data = encode({"type": "notice", "text": text, "ts": self.now_ms()})
        for peer in self.users.values():
            self.to_peer(peer, data)

    # ------------------------------------------------------------ rooms

    def _leave_all(self, peer: Peer, reason: str, message: str | None) -> None:
        self.deliver()  # membership changes: what was said before reaches the leaver
        ts = self.now_ms()
        for room in peer.rooms.values():
            del room.members[peer]
            frame = {"type": "left", "room": room.name, "nick": peer.nick,
                     "reason": reason, "ts": ts}
            if message:
                frame["message"] = message
            self.to_room(room, encode(frame))
            self._drop_if_dead(room)
        peer.rooms = {}

    def _drop_if_dead(self, room: Room) -> None:
        if not room.alive:
            del self.rooms[room.key]

    def _reply(self, peer: Peer, frame: dict[str, Any], ref: str | None) -> None:
        if ref is not None:
            frame["ref"] = ref
        self.to_peer(peer, encode(frame))

    def _users(self, peer: Peer, room: Room, ref: str | None) -> None:
        self._reply(peer, {"type": "users", "room": room.name, "users": room.nicks()}, ref)

    def _join(self, peer: Peer, name: str, ref: str | None, since: int | None) -> None:
        key = name_key(name)
        room = self.rooms.get(key)
        if room is None:
            room = self.rooms[key] = Room(name, key)
        if key in peer.rooms:
            self._users(peer, room, ref)
            self._reply(peer, {"type": "history_end", "room": room.name}, ref)
            return
        self.deliver()  # the newcomer gets nothing said before it joined
        room.members[peer] = None
        peer.rooms[key] = room
        joined = {"type": "joined", "room": room.name, "nick": peer.nick,
                  "ts": self.now_ms()}
        data = encode(joined)
        self.to_room(room, data, peer, data if ref is None else encode({**joined, "ref": ref}))
        self._users(peer, room, ref)
        limit = self.config.history
        if since is None:
            limit = min(limit, REPLAY_DEFAULT)
        self._replay(peer, room, ref, after=since or 0, before=None, limit=limit)
        log.info("%s joined %s", peer.nick, room.name)

    def _replay(self, peer: Peer, room: Room, ref: str | None, *, after: int,
                before: int | None, limit: int) -> None:
        """History frames, oldest first, then `history_end` (with `more` if cut)."""
        more = False
        if room.has_history:
            rows, more = self.store.latest(room.key, after=after, before=before,
                                           limit=limit)
            for row in rows:
                frame = {"type": "message", "id": row.id, "ts": row.ts, "room": room.name,
                         "from": row.sender, "text": row.text}
                if row.action:
                    frame["action"] = True
                frame["history"] = True
                self.to_peer(peer, encode(frame))
        end: dict[str, Any] = {"type": "history_end", "room": room.name}
        if more:
            end["more"] = True
        self._reply(peer, end, ref)

    def _member_room(self, peer: Peer, name: str) -> Room:
        room = peer.rooms.get(name_key(name))
        if room is None:
            raise ProtocolError("not_in_room", f"You are not in a room named '{name}'.")
        return room

    # ------------------------------------------------------------ requests

    def _hello(self, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
        cfg = self.config
        refusal = self.gate.refusal(peer.host)
        if refusal is not None and refusal.code == "banned":  # banned since it connected
            raise refusal
        if cfg.password is not None and not hmac.compare_digest(
                (req["password"] or "").encode(), cfg.password.encode()):
            raise ProtocolError("auth_failed", "Wrong server password.")
        if len(self.users) >= cfg.max_clients:
            raise ProtocolError("server_full", "The server is full; try again later.")
        key = name_key(req["nick"])
        ban = self.gate.nick_ban(key)
        if ban is not None:
            raise ProtocolError("banned", ban_sentence(ban))
        holder = self.users.get(key)
        if holder is not None and (req["nick_password"] is None
                                   or not self.gate.has_account(key)):
            raise ProtocolError("nick_taken", f"The nickname '{req['nick']}' is taken.")
        self.gate.authenticate(peer, key, req["nick"], req["nick_password"])
        if holder is not None:
            # The account's owner reclaims its nickname from an older connection
            # (often its own, dropped without the server noticing yet).
            self.to_peer(holder, encode({"type": "kicked", "reason": "You signed in "
                                         "from another connection."}))
            self.close(holder, "disconnected")
            log.info("%s reclaimed its nickname from %s", req["nick"], holder.host)
        peer.nick, peer.key = req["nick"], key
        peer.client = req["client"] or ""
        self.users[key] = peer
        log.info("%s registered from %s", peer.nick, peer.host)
        self._reply(peer, {"type": "welcome", "nick": peer.nick, "server": cfg.name,
                           "motd": cfg.motd, "limits": cfg.limits()}, ref)
        for name in req["rooms"]:
            self._join(peer, name, ref, req["since"])

    def _join_request(self, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
        self._join(peer, req["room"], ref, None)

    def _send(self, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
        room = target = None
        if req["room"] is not None:
            room = self._member_room(peer, req["room"])
        else:
            target = self.users.get(name_key(req["to"]))
            if target is None:
                raise ProtocolError("no_such_user", f"Nobody named '{req['to']}' is online.")
        if not peer.bucket.take(self.clock()):
            raise ProtocolError("rate_limited", "You are sending too fast; slow down.")
        ts, text, action = self.now_ms(), req["text"], req["action"]
        if room is not None:
            msg_id = self.store.add(ts, peer.nick, text, room_key=room.key,
                                    room_name=room.name, action=action)
            room.has_history = True
            frame = {"type": "message", "id": msg_id, "ts": ts, "room": room.name,
                     "from": peer.nick, "text": text}
        else:
            msg_id = self.store.add(ts, peer.nick, text, recipient=target.nick,
                                    action=action)
            frame = {"type": "message", "id": msg_id, "ts": ts, "to": target.nick,
                     "from": peer.nick, "text": text}
        if action:
            frame["action"] = True
        data = encode(frame)
        echo = data if ref is None else encode({**frame, "ref": ref})
        if room is not None:
            self.to_room(room, data, peer if ref is not None else None, echo)
        else:
            if target is not peer:
                self.to_peer(target, data)
            self.to_peer(peer, echo)
        peer.sent += 1
        self.messages += 1
        if log.isEnabledFor(logging.DEBUG):  # a direct message's text stays private
            if room is not None:
                log.debug("%s -> %s: %s", peer.nick, room.name, text)
            else:
                log.debug("%s -> %s: (direct message)", peer.nick, target.nick)

    def _part(self, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
        room = self._member_room(peer, req["room"])
        left = {"type": "left", "room": room.name, "nick": peer.nick, "reason": "part",
                "ts": self.now_ms()}
        self.deliver()
        del room.members[peer]
        del peer.rooms[room.key]
        self.to_room(room, encode(left))
        self._reply(peer, left, ref)
        self._drop_if_dead(room)
        log.info("%s parted %s", peer.nick, room.name)

    def _nick(self, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
        new = req["nick"]
        if new == peer.nick:
            return
        key = name_key(new)
        if key != peer.key:
            if key in self.users:
                raise ProtocolError("nick_taken", f"The nickname '{new}' is taken.")
            if self.gate.nick_ban(key) is not None:
                raise ProtocolError("bad_nick", f"The nickname '{new}' is banned here.")
            self.gate.authenticate(peer, key, new, req["nick_password"])
        renamed = {"type": "renamed", "old": peer.nick, "new": new, "ts": self.now_ms()}
        others: dict[Peer, None] = {}
        for room in peer.rooms.values():
            others.update(room.members)
        others.pop(peer, None)
        del self.users[peer.key]
        peer.nick, peer.key = new, key
        self.users[key] = peer
        data = encode(renamed)
        for other in others:
            self.to_peer(other, data)
        self._reply(peer, renamed, ref)
        log.info("%s is now %s", renamed["old"], new)

    def _who(self, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
        room = self.rooms.get(name_key(req["room"]))
        if room is None:
            raise ProtocolError("not_in_room", f"There is no room named '{req['room']}'.")
        self._users(peer, room, ref)

    def _rooms(self, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
        listing = [{"name": r.name, "users": len(r.members)}
                   for r in sorted(self.rooms.values(), key=lambda r: r.key)]
        self._reply(peer, {"type": "rooms", "rooms": listing}, ref)

    def _history(self, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
        room = self._member_room(peer, req["room"])
        self._replay(peer, room, ref, after=0, before=req["before"], limit=req["limit"])

    def _typing(self, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
        room = self._member_room(peer, req["room"])
        if not peer.bucket.take(self.clock()):
            raise ProtocolError("rate_limited", "You are sending too fast; slow down.")
        self.to_room(room, encode({"type": "typing", "room": room.name, "nick": peer.nick}),
                     peer, None)

    def _ping(self, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
        pong: dict[str, Any] = {"type": "pong"}
        if req["token"] is not None:
            pong["token"] = req["token"]
        self._reply(peer, pong, ref)

    def _pong(self, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
        """Nothing to do: hearing from the peer already answered the ping."""

    def _bye(self, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
        self.close(peer, "quit", req["reason"])

    # ------------------------------------------------------------ accounts

    def _register(self, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
        self.gate.register(peer, req["password"])
        self._reply(peer, {"type": "registered", "nick": peer.nick}, ref)

    def _unregister(self, peer: Peer, req: dict[str, Any], ref: str | None) -> None:
        self.gate.unregister(peer)
        self._reply(peer, {"type": "unregistered", "nick": peer.nick}, ref)
