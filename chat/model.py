"""Plain objects of a chat: a connection's ``Peer``, a ``Room``, a ``TokenBucket``.

No sockets here: the server attaches one to each peer, tests use peers without.
Output for a peer is appended to ``Peer.out``; the server sends it after the pass's
commit, so nothing reaches the wire before the store has it.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from chat.events import Event, Message
from chat.protocol import JsonObject, name_key

if TYPE_CHECKING:
    from chat.files import Upload

# Peer.phase: where a connection is before its frames are read as chat.
READY = 0  # frames flow (TLS done, or a plain connection that has sent bytes)
FRESH = 1  # plain server, nothing read yet (a TLS ClientHello here is refused)
SNIFF = 2  # TLS server, waiting for the first byte: a handshake, or plain text?
HANDSHAKE = 3  # TLS handshake under way
SEARCH_BURST = 5  # searches in a row; then one a second (the change bucket's rate)
MAX_DMS = 5000  # direct-message ids a connection remembers for its searches


class TokenBucket:
    """Flood control: ``burst`` tokens, refilled at ``rate`` per second (0: off)."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; return whether there was."""
        if self.rate <= 0:
            return True
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def ready(self, now: float) -> bool:
        """Whether ``take`` would succeed now (spends nothing)."""
        if self.rate <= 0:
            return True
        self._refill(now)
        return self.tokens >= 1

    def spend(self, amount: float, now: float) -> None:
        """Take ``amount`` more tokens for a request that cost more than one (the bucket
        may go below empty: it is then refilled before it serves again)."""
        if self.rate > 0:
            self._refill(now)
            self.tokens = max(-float(self.burst), self.tokens - amount)

    def wait(self, now: float) -> float:
        """Seconds until ``take`` would succeed (0 when it would now)."""
        if self.rate <= 0:
            return 0.0
        self._refill(now)
        return max(0.0, (1 - self.tokens) / self.rate)

    def refund(self) -> None:
        """Give back a token taken for a request that was refused after all."""
        if self.rate > 0:
            self.tokens = min(float(self.burst), self.tokens + 1)


class Codec(Protocol):
    """How a front door puts events on its wire (JSON lines need none)."""

    farewell: bytes  # sent just before the server closes the socket (b"": nothing)

    @property
    def share_key(self) -> Any:
        """Codecs with equal keys write a broadcast to the same bytes."""
        ...

    # Whether its form cannot be read back (IRC): then where each message lands is
    # noted as it is rendered (``Marks``), for taking back a failed commit's messages.
    # Otherwise ``pieces`` reads its bytes back.
    marks: bool

    def render(self, events: Sequence[Event]) -> list[bytes]:
        """Each of ``events`` in this codec's form, one piece each (b"" for an event
        this door does not show)."""
        ...

    def pieces(self, wired: bytes) -> list[tuple[bytes, bytes]]:
        """Its bytes back as units: (the JSON line a unit carries, or b"", the unit)."""
        ...


# Where a codec's rendering holds the pass's live messages: (start, end, the message)
# within its bytes. Made once per rendering, shared by every member that gets it.
Marks = tuple[tuple[int, int, Message], ...]
# The pass's renderings that hold live messages: (peer, where the rendering starts in
# its ``out``, its marks). The hub owns the list, empties it at each commit, and cuts
# these messages out when a commit fails (JSON lines are read back instead: they say
# their id).
Spans = list[tuple["Peer", int, Marks]]


def rendered(codec: Codec, events: Sequence[Event], pieces: Sequence[bytes]
             ) -> tuple[bytes, Marks]:
    """A codec's pieces of ``events`` as one chunk, and where its live messages are
    (the sender's copy too, even when its door shows nothing for it) when the codec
    marks them."""
    if not codec.marks:
        return (pieces[0] if len(pieces) == 1 else b"".join(pieces)), ()
    marks = []
    at = 0
    for event, piece in zip(events, pieces):
        if isinstance(event, Message) and (piece or event.ref is not None) \
                and not event.history:
            marks.append((at, at + len(piece), event))
        at += len(piece)
    return (pieces[0] if len(pieces) == 1 else b"".join(pieces)), tuple(marks)


class Peer:
    """One connection: its chat state and the bytes waiting to be sent to it."""

    __slots__ = ("addr", "host", "nick", "key", "rooms", "out", "borrowed", "bucket", "changes",
                 "errors", "started", "last_heard", "pinged_at", "closing",
                 "close_deadline", "connected_ts", "sent", "client", "sock", "decoder",
                 "events", "_dirty", "accounts", "phase", "held", "owed", "codec", "door",
                 "searches", "_dms", "uploads", "_downloads",
                 "_refused", "wants_tags", "away", "_spans", "work", "oper", "username",
                 "realname", "last_spoke", "wants_away", "wallops", "invisible",
                 "wants_owners", "monitors", "wants_edits", "wants_read",
                 "__weakref__")

    def __init__(self, addr: Any, now: float, wall_ms: int, bucket: TokenBucket,
                 changes: TokenBucket, dirty: dict[Peer, int],
                 spans: Spans | None = None) -> None:
        self.addr = addr
        self.host: str = addr[0] if isinstance(addr, tuple) else str(addr)
        self.nick: str | None = None  # set by a successful hello
        self.key: str | None = None  # name_key(nick)
        self.rooms: dict[str, Room] = {}  # by room key
        self.out = bytearray()
        # bytes shared with other members (a room's batch), queued after ``out`` by
        # reference while nothing follows them: sent without a copy per member
        self.borrowed: bytes | None = None
        self.bucket = bucket  # docs/protocol.md's flood control: send and typing
        self.changes = changes  # join, part and nick (docs/protocol.md)
        # Its door's own work (lines it answers itself, fragments, control frames,
        # blank and bad lines), charged by the server's loop (off until hub.open sets it)
        self.work = TokenBucket(0, 1, now)
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
        self.held: JsonObject | None = None  # a frame put off to a later pass
        self.owed = 0  # bytes for this peer in a room's batch, not yet in ``out``
        # How frames become this connection's bytes: None for JSON lines (the frames'
        # own form), else a ``Codec`` (a WebSocket, an HTTP refusal).
        self.codec: Codec | None = None
        self.door = "json"  # which front door it came in by: "json", "http", "web"
        # `search` (docs/protocol.md): a bucket of its own, as join/part/nick have,
        # and the direct messages of this connection, the only ones it may search.
        self.searches = TokenBucket(changes.rate, SEARCH_BURST, now)
        # These three are made at their first use (``dms``, ``downloads``, ``refused``):
        # a deque is 760 bytes, and most connections never need them.
        self._dms: deque[int] | None = None
        self.uploads: dict[str, Upload] = {}  # by token
        self._downloads: deque[Any] | None = None  # chat.files.Download, first first
        self._refused: deque[str] | None = None  # uploads refused midway: chunks
        # already on their way are dropped quietly (one error said it, not hundreds)
        self.wants_tags = False  # takes `tagmsg` frames (docs/protocol.md): IRC with tags
        self.away = ""  # its away message (docs/protocol.md, "Away"); "" when here
        # the server's operator, signed in from this connection (IRC's OPER): a
        # room operator everywhere, and KILL and WALLOPS (docs/protocol.md)
        self.oper = False
        self.username = ""  # IRC's USER name and real name ("": its nickname, none)
        self.realname = ""
        self.last_spoke = now  # (monotonic) its last message: WHOIS's idle time
        self.wants_away = False  # told when others in its rooms go away (IRC's cap)
        # takes the frames of rooms with owners unasked (`topic`, `mode`, `invited`):
        # IRC, and clients whose hello lists "owners" in `features` (docs/protocol.md)
        self.wants_owners = False
        # takes `edited`, `deleted` and `reaction` (hello `features` lists "edits")
        self.wants_edits = False
        self.wants_read = False  # takes `read` frames (hello `features`: "read_markers")
        self.monitors: dict[str, str] = {}  # followed nicknames (`monitor`): key -> nick
        self.wallops = False  # IRC's user mode +w: takes WALLOPS
        self.invisible = False  # IRC's +i: left out of WHO masks by those not with it
        self._dirty = dirty
        self._spans: Spans = spans if spans is not None else []

    def queue(self, event: Event) -> None:
        """Queue an event for this peer, in its door's form."""
        codec = self.codec
        if codec is None:
            self.queue_wire(event.data)
        else:
            self.queue_rendered(*rendered(codec, (event,), codec.render((event,))))

    def queue_events(self, events: Sequence[Event]) -> None:
        codec = self.codec
        if not events:
            return
        if codec is None:
            self.queue_wire(b"".join([e.data for e in events]))
        else:
            self.queue_rendered(*rendered(codec, events, codec.render(events)))

    def queue_rendered(self, data: bytes, marks: Marks) -> None:
        """What this peer's codec made of some events (``rendered``); where the pass's
        live messages land is noted, so that a failed commit can take them back."""
        if marks:
            self.settle()  # (a span's place is counted in ``out``)
            self._spans.append((self, len(self.out), marks))
        self.queue_wire(data)

    def queue_wire(self, data: bytes) -> None:
        """Append bytes already in this connection's form; the server sends them at
        the pass's end.

        The peer is marked dirty even when output was already waiting, so that a
        reader that has stalled is checked against the backlog cap every pass. The
        mark is where this pass's output starts in ``out``: if the pass's commit
        fails, the hub takes back what depended on it from there.
        """
        dirty = self._dirty
        if self not in dirty:
            dirty[self] = len(self.out)
        if self.borrowed is not None:
            self.out += self.borrowed
            self.borrowed = None
        self.out += data

    def queue_shared(self, data: bytes) -> None:
        """``queue_wire`` of bytes other peers get too (a room's batch): kept by
        reference when nothing else waits, so that the server sends them from the
        one copy (``settle`` makes them part of ``out``)."""
        dirty = self._dirty
        if self not in dirty:
            dirty[self] = len(self.out)
        if self.borrowed is not None:
            self.out += self.borrowed
        elif self.out:
            self.out += data
            return
        self.borrowed = data

    def settle(self) -> None:
        """Make the borrowed bytes part of ``out`` (before ``out`` is read or cut)."""
        if self.borrowed is not None:
            self.out += self.borrowed
            self.borrowed = None

    @property
    def dms(self) -> deque[int]:
        if self._dms is None:
            self._dms = deque(maxlen=MAX_DMS)
        return self._dms

    @property
    def downloads(self) -> deque[Any]:
        if self._downloads is None:
            self._downloads = deque()
        return self._downloads

    @property
    def refused(self) -> deque[str]:
        if self._refused is None:
            self._refused = deque(maxlen=8)
        return self._refused

    @property
    def transferring(self) -> bool:
        """Whether it has uploads or downloads under way (without making the queue)."""
        return bool(self.uploads or self._downloads)

    @property
    def unsent(self) -> int:
        """Bytes queued for this peer and not sent yet (its backlog)."""
        borrowed = self.borrowed
        return len(self.out) + self.owed + (len(borrowed) if borrowed is not None else 0)

    @property
    def registered(self) -> bool:
        return self.nick is not None

    def __repr__(self) -> str:
        return f"<Peer {self.nick or '-'} {self.addr}>"


# A room's gathered broadcast: (the event everyone gets, or None: private to the
# special peer; the special peer; its own version of the event, or None for nothing).
Entry = tuple["Event | None", "Peer | None", "Event | None"]


def _own(member: Peer, entries: list[Entry], start: int, end: int) -> list[Event]:
    """What ``member`` gets of ``entries[start:end]``: its own version of the entries
    that name it (or nothing when that is None), the shared event of the others."""
    out: list[Event] = []
    for event, who, mine in entries[start:end]:
        if who is not member:
            if event is not None:
                out.append(event)
        elif mine is not None:
            out.append(mine)
    return out


Lines = list[tuple[bytes, "Peer | None", "bytes | None"]]


def _own_lines(member: Peer, lines: Lines, start: int, end: int) -> bytes:
    """``_own`` as JSON lines (``lines``: the entries' lines, made once per batch)."""
    parts: list[bytes] = []
    for data, who, mine in lines[start:end]:
        if who is not member:
            parts.append(data)
        elif mine is not None:
            parts.append(mine)
    return b"".join(parts)


def _own_wired(member: Peer, entries: list[Entry], start: int, end: int,
               each: dict[Any, list[bytes | None]]) -> None:
    """``_own`` queued in ``member``'s codec: the entries everyone gets are rendered
    once per codec and batch (``each``), not once per member that also has entries of
    its own (every sender of the batch, for its echo)."""
    codec = member.codec
    assert codec is not None
    cache = each.get(codec.share_key)
    if cache is None:
        cache = each[codec.share_key] = [None] * len(entries)
    parts: list[bytes] = []
    if not codec.marks:  # the common case (a WebSocket): pieces, no bookkeeping
        for index in range(start, end):
            event, who, mine = entries[index]
            if who is not member:
                if event is not None:
                    piece = cache[index]
                    if piece is None:
                        piece = cache[index] = codec.render((event,))[0]
                    parts.append(piece)
            elif mine is not None:
                parts.append(codec.render((mine,))[0])
        if parts:
            member.queue_wire(b"".join(parts))
        return
    marks: list[tuple[int, int, Message]] = []
    at = 0
    for index in range(start, end):
        event, who, mine = entries[index]
        if who is not member:
            if event is None:
                continue
            piece = cache[index]
            if piece is None:
                piece = cache[index] = codec.render((event,))[0]
        elif mine is not None:
            event, piece = mine, codec.render((mine,))[0]
        else:
            continue
        if isinstance(event, Message) and (piece or event.ref is not None) \
                and not event.history:  # (as ``rendered`` notes them)
            marks.append((at, at + len(piece), event))
        parts.append(piece)
        at += len(piece)
    if parts:
        member.queue_rendered(b"".join(parts), tuple(marks))


def share(members: Iterable[Peer], event: Event) -> None:
    """Queue the same event on every one of ``members``, rendered once per codec."""
    events = (event,)
    wired: dict[Any, tuple[bytes, Marks]] = {}
    for member in members:
        _share(member, events, event.data, wired)


def _share(member: Peer, events: Sequence[Event], data: bytes,
           wired: dict[Any, tuple[bytes, Marks]]) -> None:
    """Queue ``events`` (``data``: their JSON lines) on ``member``; codecs that write
    them alike share one rendering (``wired``): a member costs one append."""
    codec = member.codec
    if codec is None:
        member.queue_wire(data)
        return
    key = codec.share_key
    done = wired.get(key)
    if done is None:
        done = wired[key] = rendered(codec, events, codec.render(events))
    rendering, marks = done
    if not marks:  # shared by every member of its codec: sent from the one copy
        member.queue_shared(rendering)
        return
    if member.borrowed is not None:  # (queue_rendered, without two calls a member:
        member.settle()               # this is the fan-out)
    member._spans.append((member, len(member.out), marks))
    member.queue_wire(rendering)


class Elsewhere:
    """A user online on another node of a cluster: what a `send`, `whois` or `ison`
    needs of it (chat.cluster keeps them in ``Hub.elsewhere``)."""

    __slots__ = ("nick", "key", "node")
    away = ""
    wants_tags = False
    rooms: ClassVar[dict[str, Room]] = {}  # not in any room of this node
    accounts: ClassVar[frozenset[str]] = frozenset()
    connected_ts = 0
    door = "cluster"
    host = ""
    oper = False
    username = ""
    realname = ""
    invisible = False

    def __init__(self, nick: str, key: str, node: str) -> None:
        self.nick, self.key, self.node = nick, key, node


class Room:
    """A room: its first creator's spelling, its members, and whether it has history.

    ``pending`` holds the broadcasts gathered for the room, as (bytes for everyone,
    special peer, bytes for that peer or None for nothing); an entry with empty shared
    bytes is private to its peer. ``deliver`` queues them on every member at once, so
    a member costs one append per batch however many frames there were. Members who
    joined during the batch (``fresh``) get only what came after their joining, and
    those who left with their output still to be flushed (``gone``) what came before
    their leaving: membership changes do not break a batch, so a storm of joins or
    leaves costs one append per member, not one per change.
    """

    __slots__ = ("name", "key", "members", "has_history", "pending", "fresh", "gone",
                 "roster", "remote")

    def __init__(self, name: str, key: str, has_history: bool = False) -> None:
        self.name = name
        self.key = key
        self.members: dict[Peer, None] = {}  # an insertion-ordered set
        self.has_history = has_history
        self.pending: list[Entry] = []
        self.fresh: dict[Peer, int] = {}  # joined during the batch: from this entry
        self.gone: dict[Peer, int] = {}  # left during the batch: up to this entry
        self.roster: list[tuple[str, str]] = []  # (casefold, nick), kept sorted
        self.remote: dict[str, str] = {}  # members on other nodes (chat.cluster): key -> nick

    def add(self, peer: Peer) -> None:
        assert peer.nick is not None
        self.fresh[peer] = len(self.pending)
        self.members[peer] = None
        insort(self.roster, (peer.nick.casefold(), peer.nick))

    def remove(self, peer: Peer, flush: bool) -> None:
        """Take ``peer`` out; with ``flush`` it still gets what the batch holds so far."""
        assert peer.nick is not None
        del self.members[peer]
        if flush:
            self.gone[peer] = len(self.pending)
        self._unlist(peer.nick)

    def renamed(self, old: str, new: str) -> None:
        self._unlist(old)
        insort(self.roster, (new.casefold(), new))

    def add_remote(self, nick: str) -> bool:
        """A member on another node of the cluster (listed, never sent to from here);
        False if it was listed already."""
        key = name_key(nick)
        if key in self.remote:
            return False
        self.remote[key] = nick
        insort(self.roster, (nick.casefold(), nick))
        return True

    def remove_remote(self, nick: str) -> bool:
        found = self.remote.pop(name_key(nick), None)
        if found is not None:
            self._unlist(found)
        return found is not None

    def clear_remote(self) -> None:
        for nick in self.remote.values():
            self._unlist(nick)
        self.remote.clear()

    def _unlist(self, nick: str) -> None:
        entry = (nick.casefold(), nick)
        at = bisect_left(self.roster, entry)
        if at < len(self.roster) and self.roster[at] == entry:
            del self.roster[at]

    def deliver(self) -> None:
        entries, self.pending = self.pending, []
        fresh, self.fresh = self.fresh, {}
        gone, self.gone = self.gone, {}
        if not entries:
            return
        events = [e for e, _, _ in entries if e is not None]
        shared = events[0].data if len(events) == 1 else \
            b"".join([e._data or e.data for e in events])
        # (every event's line is made now: below, ``_data`` is read without a call)
        special = {who for _, who, _ in entries if who is not None}
        for who in special:
            who.owed = 0
        wired: dict[Any, tuple[bytes, Marks]] = {}  # the shared events, once per codec
        if special or fresh:
            end = len(entries)
            each: dict[Any, list[bytes | None]] = {}  # per codec: each entry's bytes
            lines: Lines | None = None  # made for the first JSON member that needs it
            for member in self.members:
                if member in special or member in fresh:
                    start = fresh.get(member, 0)
                    if member.codec is None:
                        if lines is None:
                            lines = [(e._data if e is not None else b"",  # type: ignore[misc]
                                      who, mine.data if mine is not None else None)
                                     for e, who, mine in entries]
                        own = _own_lines(member, lines, start, end)
                        if own:
                            member.queue_wire(own)
                    else:
                        _own_wired(member, entries, start, end, each)
                elif not events:
                    continue
                elif member.codec is None:  # the common case, without a call more
                    member.queue_shared(shared)
                else:
                    _share(member, events, shared, wired)
        else:
            for member in self.members:
                if member.codec is None:  # the common case, without a call
                    member.queue_shared(shared)
                else:
                    _share(member, events, shared, wired)
        for member, end in gone.items():
            member.queue_events(_own(member, entries, fresh.get(member, 0), end))

    def nicks(self) -> list[str]:
        """Members' nicknames, sorted case-insensitively (docs/protocol.md's `users`)."""
        return [nick for _, nick in self.roster]

    @property
    def alive(self) -> bool:
        """A room exists while it has members or history (docs/protocol.md)."""
        return bool(self.members) or self.has_history or bool(self.remote)
