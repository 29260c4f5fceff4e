"""Chat semantics without sockets: operator actions and timers on the Hub."""

from __future__ import annotations

import json

import pytest

from chat.config import ServerConfig
from chat.dispatch import receive
from chat.hub import Hub
from chat.operator import Operator
from chat.store import Store

HUBS: list[Hub] = []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hub(tmp_path):
    store = Store(str(tmp_path / "h.db"))
    clock = Clock()
    h = Hub(ServerConfig(rate=0), store, clock=clock)
    h.test_clock = clock
    HUBS.append(h)
    yield h
    store.close()


def frames(peer) -> list[dict]:
    # the hub gathers room broadcasts per pass: deliver them first
    HUBS[-1].deliver()
    peer.settle()  # (a room's shared batch, kept by reference: chat.model)
    out = [json.loads(line) for line in bytes(peer.out).splitlines()]
    peer.out.clear()
    return out


def register(hub, nick, host="127.0.0.11"):
    peer = hub.open((host, 5000))
    receive(hub, peer, {"type": "hello", "nick": nick, "proto": 1})
    assert frames(peer)[0]["type"] == "welcome"
    return peer


def test_kick_tells_the_user_and_the_room(hub):
    alice, bob = register(hub, "alice"), register(hub, "bob")
    frames(alice)
    assert Operator(hub).kick("BOB", "spamming")
    assert frames(bob) == [{"type": "kicked", "reason": "spamming"}]
    left = frames(alice)[0]
    assert (left["reason"], left["message"], left["nick"]) == ("kicked", "spamming", "bob")
    assert bob in hub.closing and "bob" not in hub.users
    assert not Operator(hub).kick("nobody", "x")


def test_banned_host_is_closed_and_refused(hub):
    alice, bob = register(hub, "alice", "127.0.0.11"), register(hub, "bob", "127.0.0.12")
    frames(alice)
    assert Operator(hub).ban("address", "127.0.0.12", "bye")[1] == 1
    assert frames(alice)[0]["reason"] == "banned"
    again = hub.open(("127.0.0.12", 6000))
    receive(hub, again, {"type": "hello", "nick": "bob2", "proto": 1})
    assert frames(again)[0]["code"] == "banned"
    assert again in hub.closing


def test_notice_reaches_registered_users_only(hub):
    alice = register(hub, "alice")
    frames(alice)
    lurker = hub.open(("127.0.0.19", 1))
    hub.notice("hello all")
    assert [f["text"] for f in frames(alice)] == ["hello all"]
    assert frames(lurker) == []


def test_timers(hub):
    cfg = hub.config
    lurker = hub.open(("127.0.0.19", 1))
    alice = register(hub, "alice")
    frames(alice)
    hub.test_clock.now += cfg.hello_timeout
    hub.tick()
    assert lurker.closing == "timeout" and not alice.closing
    hub.test_clock.now += cfg.ping_interval
    hub.tick()
    assert frames(alice)[0]["type"] == "ping"
    hub.test_clock.now += cfg.ping_timeout
    hub.tick()
    assert alice.closing == "timeout"


def test_ids_continue_in_the_store(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    first = store.add(1, "a", "x", room_key="g", room_name="G")
    store.commit()
    store.close()
    store = Store(str(tmp_path / "s.db"))
    assert store.rooms() == [("g", "G")]
    assert store.add(2, "a", "y", room_key="g", room_name="G") == first + 1
    rows, more = store.latest("g", limit=1)
    assert [r.text for r in rows] == ["y"] and more
    store.close()


def test_a_failed_commit_is_taken_back_from_websocket_output_too(hub, monkeypatch):
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import TextMessage

    from chat.errors import StoreError
    from chat.websocket import WEBSOCKET

    def decoded(peer):
        client = Connection(ConnectionType.CLIENT)
        peer.settle()
        client.receive_data(bytes(peer.out))
        peer.out.clear()
        return [json.loads(e.data) for e in client.events() if isinstance(e, TextMessage)]

    web, plain = register(hub, "web"), register(hub, "plain")
    web.codec = WEBSOCKET
    hub.commit()
    frames(plain)
    web.settle()  # (what it got before it spoke WebSocket, kept by reference)
    web.out.clear()
    receive(hub, plain, {"type": "send", "room": "general", "text": "kept"})
    hub.commit()
    receive(hub, web, {"type": "send", "room": "general", "text": "lost", "ref": "w"})
    receive(hub, web, {"type": "ping", "token": "p"})

    def fail():
        raise StoreError("the disk is full", write=True)
    monkeypatch.setattr(hub.store, "commit", fail)
    assert not hub.commit()
    got = decoded(web)
    assert [f["type"] for f in got] == ["message", "error", "pong"]
    assert got[0]["text"] == "kept"
    assert (got[1]["code"], got[1]["ref"]) == ("store_failed", "w")
    assert [f["text"] for f in frames(plain) if f["type"] == "message"] == ["kept"]


def test_messages_of_a_pass_are_read_back_before_its_commit(hub):
    """Messages are written to SQLite in one statement per pass, at its commit; a read
    in the same pass (a newcomer's replay, a history request, a search) sees them."""
    alice = register(hub, "alice")
    hub.commit()
    receive(hub, alice, {"type": "send", "room": "general", "text": "said this pass"})
    bob = hub.open(("127.0.0.12", 5000))  # joins general in the same pass: its replay
    receive(hub, bob, {"type": "hello", "nick": "bob", "proto": 1})  # has it
    got = frames(bob)
    assert [f["text"] for f in got if f["type"] == "message"] == ["said this pass"]
    receive(hub, alice, {"type": "send", "room": "general", "text": "and then"})
    receive(hub, alice, {"type": "history", "room": "general", "ref": "h"})
    texts = [f["text"] for f in frames(alice) if f["type"] == "message" and f.get("history")]
    assert texts == ["said this pass", "and then"]
    assert hub.commit()
    rows, _ = hub.store.latest("general", limit=5)
    assert [r.text for r in rows] == ["said this pass", "and then"]
