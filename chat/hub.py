"""Chat state and the life of a connection: who is where, output, errors, timers.

The hub checks each frame from a ``Peer`` and hands it to its handler in
``chat.requests``, which queues bytes on peers and adds rows to the ``Store``; neither
touches a socket. When a peer must go, ``close`` takes it out of the chat at once and
lists it in ``closing`` for the server, which flushes what is queued (when asked) and
then closes the socket.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from chat.config import ServerConfig
from chat.errors import ProtocolError
from chat.gate import Gate
from chat.model import SNIFF, Peer, Room, TokenBucket
from chat.protocol import check_ref, encode, parse_request
from chat.requests import HANDLERS
from chat.store import Store

MAX_ERRORS_IN_ROW = 20  # PROTOCOL.md: more than 20 error frames in a row closes
CLOSE_FLUSH_SECONDS = 3.0  # how long a closing peer may take to read its last output
BEFORE_HELLO = frozenset({"hello", "ping", "bye"})  # PROTOCOL.md, Session 3

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
            HANDLERS[kind](self, peer, request, ref)
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
            self.drop_if_dead(room)
        peer.rooms = {}

    def drop_if_dead(self, room: Room) -> None:
        if not room.alive:
            del self.rooms[room.key]
