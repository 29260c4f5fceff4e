"""Who gives a message its id and its place in the chat's one order.

Every message takes one road: the hub hands its ``Message`` (id 0) to its sequencer
(``post``); the sequencer gives it an id and hands it back (``Hub.arrived``), and
the hub stores it in this node's copy and queues it for whoever gets it here. On
one node the sequencer is this node's SQLite (``Local``): the id is the store's, and
the message arrives at once. On a node of a cluster it is Redis (``chat.cluster``):
the message arrives when it comes back through the stream, in the stream's order.

The hub knows sequencers only through ``Sequencer``: it never asks which one it has.
What a cluster adds besides messages (nicknames held across nodes, members and users
on other nodes, files kept elsewhere) goes through the same interface; on one node
those calls do nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from chat.events import Event, Message
    from chat.hub import Hub
    from chat.model import Peer, Room


class Sequencer(Protocol):
    """The hub's one way to the chat's order and to other nodes (see the module)."""

    url: str  # where the shared order lives, as the window shows it ("" on one node)
    problem: str | None  # why it cannot take messages now, or None

    @property
    def converging(self) -> bool:
        """Who is where may still change by itself for a few seconds (a cluster
        healing from a gap)."""
        ...

    @property
    def state(self) -> str:
        """One line for the node lists: storing, not storing, converging."""
        ...

    def post(self, sender: Peer | None, message: Message, ref: str | None) -> int:
        """Give ``message`` its id; it reaches ``Hub.arrived`` now or later. Returns
        the id when it is known now, else 0. ``ProtocolError``/``StoreError`` when it
        cannot be taken (nothing changed then)."""
        ...

    def committed(self) -> None:
        """The pass's writes are stored in this node's copy."""
        ...

    def rewind(self) -> bool:
        """This node's copy could not write: whether the pass's messages will arrive
        again (read once more from the shared order) instead of being refused."""
        ...

    def claim(self, peer: Peer, key: str, nick: str) -> None:
        """Hold ``nick`` for ``peer`` everywhere (``Later`` until known, then
        ``nick_taken`` if another node holds it)."""
        ...

    def release(self, key: str, nick: str) -> None: ...

    def joined(self, peer: Peer, room: Room) -> None: ...

    def left(self, peer: Peer, room: Room, reason: str, message: str | None,
             by: str | None = None) -> None: ...

    def renamed(self, peer: Peer, old: str, old_key: str) -> None: ...

    def typing(self, peer: Peer, room: Room) -> None: ...

    def rules_changed(self, room: Room, data: str, event: Event | None) -> None:
        """A room's roles and settings changed here (``data``: their JSON; ``event``:
        what its members were told): every node takes them (``Owners.mirror``)."""
        ...

    def kick(self, room: Room, nick: str, by: str, reason: str) -> None:
        """Kick ``nick``, a member on another node, out of ``room``."""
        ...

    def forget(self, peer: Peer) -> None: ...

    def read_marker(self, nick_key: str, conv: str, last_id: int, ts: int) -> None:
        """A read marker moved here: every node keeps it too."""
        ...

    def addresses(self) -> list[str]:
        """Where the chat's other servers are reached (a welcome's `nodes`)."""
        ...

    def members(self) -> list[tuple[str, str, int, bool]]:
        """The nodes as the server window lists them (none on one node)."""
        ...

    def kept_file(self, sha256: str, size: int) -> None: ...

    def waiting(self, peer: Peer) -> int:
        """Downloads of ``peer`` waiting for a file to reach this node."""
        ...

    def fetch_file(self, peer: Peer, sha256: str, offset: int, ref: str | None) -> bool:
        """Start copying a file this node lacks for ``peer``'s download; False when
        no other node can have it."""
        ...

    def tick(self) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class Local:
    """One node: this node's SQLite gives ids; nothing is shared."""

    url = ""
    problem: str | None = None
    converging = False
    state = "storing"

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def post(self, sender: Peer | None, message: Message, ref: str | None) -> int:
        return self.hub.arrived(None, message, sender, ref)

    def committed(self) -> None:
        pass

    def rewind(self) -> bool:
        return False

    def claim(self, peer: Peer, key: str, nick: str) -> None:
        pass  # the hub's own users are every user

    def release(self, key: str, nick: str) -> None:
        pass

    def joined(self, peer: Peer, room: Room) -> None:
        pass

    def left(self, peer: Peer, room: Room, reason: str, message: str | None,
             by: str | None = None) -> None:
        pass

    def renamed(self, peer: Peer, old: str, old_key: str) -> None:
        pass

    def typing(self, peer: Peer, room: Room) -> None:
        pass

    def rules_changed(self, room: Room, data: str, event: Event | None) -> None:
        pass

    def kick(self, room: Room, nick: str, by: str, reason: str) -> None:
        pass

    def forget(self, peer: Peer) -> None:
        pass

    def read_marker(self, nick_key: str, conv: str, last_id: int, ts: int) -> None:
        pass

    def addresses(self) -> list[str]:
        return []

    def members(self) -> list[tuple[str, str, int, bool]]:
        return []

    def kept_file(self, sha256: str, size: int) -> None:
        pass

    def waiting(self, peer: Peer) -> int:
        return 0

    def fetch_file(self, peer: Peer, sha256: str, offset: int, ref: str | None) -> bool:
        return False

    def tick(self) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

