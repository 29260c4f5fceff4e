"""Plain objects of a chat: a connection's ``Peer``, a ``Room``, a ``TokenBucket``.

No sockets here: the server attaches one to each peer, tests use peers without.
Output for a peer is appended to ``Peer.out``; the server sends it after the pass's
commit, so nothing reaches the wire before the store has it.
"""

from __future__ import annotations

from typing import Any

# Peer.phase: where a connection is before its frames are read as chat.
READY = 0  # frames flow (TLS done, or a plain connection that has sent bytes)
FRESH = 1  # plain server, nothing read yet (a TLS ClientHello here is refused)
SNIFF = 2  # TLS server, waiting for the first byte: a handshake, or plain text?
HANDSHAKE = 3  # TLS handshake under way


class TokenBucket:
    """Flood control: ``burst`` tokens, refilled at ``rate`` per second (0: off)."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; return whether there was."""
        if self.rate <= 0:
            return True
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Peer:
    """One connection: its chat state and the bytes waiting to be sent to it."""

    __slots__ = ("addr", "host", "nick", "key", "rooms", "out", "bucket", "errors",
                 "started", "last_heard", "pinged_at", "closing", "close_deadline",
                 "connected_ts", "sent", "client", "sock", "decoder", "events", "_dirty",
                 "accounts", "phase", "held",
                 "__weakref__")

    def __init__(self, addr: Any, now: float, wall_ms: int, bucket: TokenBucket,
                 dirty: set[Peer]) -> None:
        self.addr = addr
        self.host: str = addr[0] if isinstance(addr, tuple) else str(addr)
        self.nick: str | None = None  # set by a successful hello
        self.key: str | None = None  # name_key(nick)
        self.rooms: dict[str, Room] = {}  # by room key
        self.out = bytearray()
        self.bucket = bucket
        self.errors = 0  # error frames in a row
        self.started = now
        self.last_heard = now
        self.pinged_at: float | None = None
        self.closing: str | None = None  # why the server is closing it
        self.close_deadline = 0.0
        self.connected_ts = wall_ms
        self.sent = 0  # messages this peer sent
        self.client = ""  # the free-text `client` of its hello
        self.sock: Any = None  # the server's socket, None in tests without one
        self.decoder: Any = None  # the server's FrameDecoder for this connection
        self.events = 0  # the selector events the server watches for
        self.accounts: set[str] = set()  # nick keys whose password this peer gave
        self.phase = READY  # see the constants above
        self.held: dict[str, Any] | None = None  # a frame put off to the next pass
        self._dirty = dirty

    def queue(self, data: bytes) -> None:
        """Append bytes for this peer; the server sends them at the pass's end.

        The peer is marked dirty even when output was already waiting, so that a
        reader that has stalled is checked against the backlog cap every pass.
        """
        self._dirty.add(self)
        self.out += data

    @property
    def registered(self) -> bool:
        return self.nick is not None

    def __repr__(self) -> str:
        return f"<Peer {self.nick or '-'} {self.addr}>"


class Room:
    """A room: its first creator's spelling, its members, and whether it has history.

    ``pending`` holds the pass's broadcasts to the room, as (bytes, special peer,
    bytes for that peer or None for nothing); ``deliver`` queues them on every member
    at once, so a member costs one append per pass however many messages there were.
    """

    __slots__ = ("name", "key", "members", "has_history", "pending")

    def __init__(self, name: str, key: str, has_history: bool = False) -> None:
        self.name = name
        self.key = key
        self.members: dict[Peer, None] = {}  # an insertion-ordered set
        self.has_history = has_history
        self.pending: list[tuple[bytes, Peer | None, bytes | None]] = []

    def deliver(self) -> None:
        entries, self.pending = self.pending, []
        if not entries:
            return
        shared = entries[0][0] if len(entries) == 1 else b"".join(e[0] for e in entries)
        special = {who for _, who, _ in entries if who is not None}
        for member in self.members:
            if member not in special:
                member.queue(shared)
                continue
            own = b"".join(mine if who is member else data for data, who, mine in entries
                           if who is not member or mine is not None)
            if own:
                member.queue(own)

    def nicks(self) -> list[str]:
        return sorted((m.nick for m in self.members if m.nick), key=str.casefold)

    @property
    def alive(self) -> bool:
        """A room exists while it has members or history (PROTOCOL.md)."""
        return bool(self.members) or self.has_history
