"""One road for a message: the hub with a fake sequencer, without sockets or Redis.

The hub hands every message to its sequencer and queues it only when it arrives
back with its id; what a cluster adds (names held across nodes, people elsewhere)
goes through the same interface. These tests hold the hub to that with a sequencer
that keeps what it is given and answers when told to.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from chat.config import ServerConfig
from chat.dispatch import receive
from chat.errors import Later
from chat.events import Message
from chat.hub import Hub
from chat.model import Elsewhere, Peer, Room
from chat.sequencer import Local
from chat.store import Store

ROOT = Path(__file__).resolve().parent.parent


class Fake:
    """A sequencer that holds posts until ``release`` (a slow shared order)."""

    url = "fake://order"
    problem = None
    converging = False
    state = "storing"

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.held: list[tuple[Peer | None, Message, str | None]] = []
        self.next_id = 100
        self.calls: list[tuple] = []
        self.claimed: dict[str, str] = {}  # key -> nick, held until answered

    def post(self, sender, posted, ref):
        self.held.append((sender, posted, ref))
        return 0

    def release(self, key=None, nick=None):
        if key is not None:  # the interface's release of a nickname
            self.calls.append(("release", key, nick))
            return
        for sender, posted, ref in self.held:
            self.next_id += 1
            self.hub.arrived(self.next_id, posted, sender, ref)
        self.held.clear()

    def committed(self):
        self.calls.append(("committed",))

    def rewind(self):
        return True

    def claim(self, peer, key, nick):
        if key not in self.claimed:
            self.claimed[key] = "wait"
            raise Later()
        if self.claimed[key] == "wait":
            raise Later()

    def joined(self, peer, room):
        self.calls.append(("joined", peer.nick, room.name))

    def left(self, peer, room, reason, message, by=None):
        self.calls.append(("left", peer.nick, room.name, reason))

    def rules_changed(self, room, data, event):
        self.calls.append(("rules", room.name))

    def kick(self, room, nick, by, reason):
        self.calls.append(("kick", room.name, nick))

    def renamed(self, peer, old, old_key):
        self.calls.append(("renamed", old, peer.nick))

    def typing(self, peer, room):
        self.calls.append(("typing", peer.nick, room.name))

    def forget(self, peer):
        self.calls.append(("forget",))

    def addresses(self):
        return ["192.0.2.7:7777"]

    def members(self):
        return []

    def kept_file(self, sha256, size):
        pass

    def waiting(self, peer):
        return 0

    def fetch_file(self, peer, sha256, offset, ref):
        return False

    def tick(self):
        pass

    def flush(self):
        pass

    def close(self):
        pass


@pytest.fixture
def hub(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    h = Hub(ServerConfig(rate=0), store)
    h.sequencer = Fake(h)
    yield h
    store.close()


def frames(hub: Hub, peer: Peer) -> list[dict]:
    hub.deliver()
    peer.settle()  # (a room's shared batch, kept by reference: chat.model)
    out = [json.loads(line) for line in bytes(peer.out).splitlines()]
    peer.out.clear()
    return out


def hello(hub: Hub, nick: str, **fields) -> Peer:
    peer = hub.open(("127.0.0.11", 5000))
    frame = {"type": "hello", "nick": nick, "proto": 1, **fields}
    with pytest.raises(Later):  # the name is being claimed: the server asks again
        receive(hub, peer, frame)
    assert frames(hub, peer) == [] and peer.nick is None
    hub.sequencer.claimed[nick.casefold()] = "ok"
    receive(hub, peer, frame)
    return peer


def test_a_message_waits_for_its_id_then_arrives_once_in_order(hub):
    alice, bob = hello(hub, "alice"), hello(hub, "bob")
    welcome = frames(hub, alice)[0]
    assert welcome["nodes"] == ["192.0.2.7:7777"]  # the sequencer's other servers
    frames(hub, bob)
    receive(hub, alice, {"type": "send", "room": "general", "text": "one", "ref": "r1"})
    receive(hub, bob, {"type": "send", "room": "general", "text": "two"})
    assert frames(hub, alice) == [] and frames(hub, bob) == []  # no id yet: nothing sent
    assert hub.store.last_id == 0  # nor stored
    hub.sequencer.release()
    got = frames(hub, bob)
    assert [(f["id"], f["text"], f.get("ref")) for f in got] == [(101, "one", None),
                                                                  (102, "two", None)]
    mine = frames(hub, alice)
    assert [(f["id"], f.get("ref")) for f in mine] == [(101, "r1"), (102, None)]
    assert hub.commit() and hub.store.last_id == 102
    assert ("committed",) in hub.sequencer.calls


def test_changes_of_who_is_where_go_to_the_sequencer(hub):
    alice = hello(hub, "alice")
    receive(hub, alice, {"type": "join", "room": "lab"})
    with pytest.raises(Later):
        receive(hub, alice, {"type": "nick", "nick": "alicia"})
    hub.sequencer.claimed["alicia"] = "ok"
    receive(hub, alice, {"type": "nick", "nick": "alicia"})
    receive(hub, alice, {"type": "part", "room": "lab"})
    calls = [c for c in hub.sequencer.calls if c[0] in ("joined", "renamed", "left")]
    assert calls == [("joined", "alice", "general"), ("joined", "alice", "lab"),
                     ("renamed", "alice", "alicia"), ("left", "alicia", "lab", "part")]
    hub.close(alice, "quit")
    assert ("release", "alicia", "alicia") in hub.sequencer.calls


def test_people_elsewhere_are_hub_state(hub):
    alice = hello(hub, "alice")
    frames(hub, alice)
    hub.elsewhere["carol"] = Elsewhere("Carol", "carol", "node2")
    receive(hub, alice, {"type": "ison", "nicks": ["carol", "dave"]})
    assert frames(hub, alice)[0]["nicks"] == ["Carol"]
    receive(hub, alice, {"type": "send", "to": "carol", "text": "hi", "ref": "d"})
    assert frames(hub, alice) == []  # on its way to its id
    hub.sequencer.release()
    echo = frames(hub, alice)[0]
    assert (echo["to"], echo["text"], echo["ref"]) == ("Carol", "hi", "d")


def test_a_failed_write_waits_for_the_message_to_arrive_again(hub):
    alice = hello(hub, "alice")
    frames(hub, alice)
    receive(hub, alice, {"type": "send", "room": "general", "text": "kept", "ref": "k"})
    hub.sequencer.release()
    from chat.errors import StoreError
    hub.write_failed(StoreError("disk full", write=True))
    # the sequencer reads it again later: no store_failed, the message is not lost
    assert [f["type"] for f in frames(hub, alice)] == []


def test_typing_reaches_other_nodes_only_when_a_room_has_members_there(hub):
    alice = hello(hub, "alice")
    receive(hub, alice, {"type": "typing", "room": "general"})
    assert not [c for c in hub.sequencer.calls if c[0] == "typing"]
    room: Room = hub.rooms["general"]
    room.add_remote("Carol")
    receive(hub, alice, {"type": "typing", "room": "general"})
    assert ("typing", "alice", "general") in hub.sequencer.calls


def test_one_node_posts_through_its_store(tmp_path):
    store = Store(str(tmp_path / "l.db"))
    hub = Hub(ServerConfig(rate=0), store)
    assert isinstance(hub.sequencer, Local)
    peer = hub.open(("127.0.0.11", 1))
    receive(hub, peer, {"type": "hello", "nick": "alice", "proto": 1})
    frames(hub, peer)
    receive(hub, peer, {"type": "send", "room": "general", "text": "now"})
    assert [f["id"] for f in frames(hub, peer)] == [1]
    store.close()


def test_the_hub_and_dispatch_know_no_cluster():
    for name in ("hub.py", "dispatch.py"):
        tree = ast.parse((ROOT / "chat" / name).read_text())
        imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        modules = [getattr(n, "module", None) or "" for n in imports] + \
                  [a.name for n in imports for a in n.names]
        assert not any("cluster" in m for m in modules), name
        attributes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert "cluster" not in attributes, name
        if name == "dispatch.py":  # requests reach the sequencer through the hub only
            assert "sequencer" not in attributes
