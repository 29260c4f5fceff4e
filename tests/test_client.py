"""The non-blocking client core against a real server."""

from __future__ import annotations

import socket
import time

from chat.client import ChatClient


def pump(clients, until, timeout=30.0):
    """Poll clients until ``until(events)`` holds; returns events per client."""
    events = {c: [] for c in clients}
    deadline = time.monotonic() + timeout
    while not until(events):
        assert time.monotonic() < deadline, events
        for c in clients:
            events[c] += c.poll(0.01)
    return events


def types(events):
    return [e["type"] for e in events]


def test_connect_hello_chat_and_bye(fast_server):
    alice = ChatClient("127.0.0.1", fast_server.port, "alice")
    bob = ChatClient("127.0.0.1", fast_server.port, "bob", rooms=["general", "dev"])
    alice.connect()
    bob.connect()
    got = pump([alice, bob], lambda ev: all(c.ready for c in ev) and
               types(ev[bob]).count("history_end") == 2)
    assert types(got[alice])[:2] == ["local.connected", "welcome"]
    assert bob.rooms == ["general", "dev"]
    alice.say("general", "hello", ref="r1")
    got = pump([alice, bob], lambda ev: "message" in types(ev[bob]) and
               "message" in types(ev[alice]))
    echo = next(e for e in got[alice] if e["type"] == "message")
    assert echo["ref"] == "r1" and alice.last_id == echo["id"] == bob.last_id
    bob.rename("robert")
    pump([alice, bob], lambda ev: "renamed" in types(ev[bob]))
    assert bob.nick == "robert"
    bob.part("dev")
    pump([bob], lambda ev: "left" in types(ev[bob]))
    assert bob.rooms == ["general"]
    bob.bye("done")
    got = pump([alice, bob], lambda ev: "local.closed" in types(ev[bob]))
    assert got[bob][-1] == {"type": "local.closed", "error": None, "fatal": False}
    assert bob.state == "closed"


def test_refused_connection_is_an_event():
    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()  # nothing listens there now
    client = ChatClient("127.0.0.1", port, "alice")
    client.connect()
    got = pump([client], lambda ev: "local.closed" in types(ev[client]))
    assert got[client][-1]["error"].startswith(f"Nothing answers at 127.0.0.1:{port}.")


def test_reconnect_resumes_from_last_id(fast_server):
    alice = ChatClient("127.0.0.1", fast_server.port, "alice")
    bob = ChatClient("127.0.0.1", fast_server.port, "bob")
    for c in (alice, bob):
        c.connect()
    pump([alice, bob], lambda ev: alice.ready and bob.ready)
    alice.say("general", "one")
    pump([alice, bob], lambda ev: bob.last_id > 0)
    bob.close()
    alice.say("general", "two")
    alice.say("general", "three")
    pump([alice], lambda ev: any(e.get("text") == "three" for e in ev[alice]))
    bob.connect()  # same client object: hello carries since=last_id
    got = pump([bob], lambda ev: "history_end" in types(ev[bob]))
    assert [e["text"] for e in got[bob] if e["type"] == "message"] == ["two", "three"]


def test_client_answers_server_pings(start_server):
    server = start_server("--ping-interval", "0.3", "--ping-timeout", "0.3")
    alice = ChatClient("127.0.0.1", server.port, "alice")
    alice.connect()
    got = pump([alice], lambda ev: types(ev[alice]).count("ping") >= 3, timeout=30)
    assert "local.closed" not in types(got[alice])


def test_a_server_that_never_answers_the_tls_handshake_times_out(monkeypatch, tmp_path):
    import chat.client
    monkeypatch.setattr(chat.client, "CONNECT_TIMEOUT", 0.5)
    mute = socket.create_server(("127.0.0.1", 0))  # accepts into its backlog, never reads
    try:
        client = ChatClient("127.0.0.1", mute.getsockname()[1], "alice", tls=True,
                            known_hosts=str(tmp_path / "known_hosts"))
        client.connect()
        start = time.monotonic()
        got = pump([client], lambda ev: "local.closed" in types(ev[client]), timeout=30)
        closed = got[client][-1]
        assert "TLS handshake" in closed["error"] and "took too long" in closed["error"]
        assert time.monotonic() - start > 0.4  # not before its time limit
    finally:
        mute.close()


def test_replies_edits_reactions_and_deletes_through_the_client(fast_server):
    alice = ChatClient("127.0.0.1", fast_server.port, "alice")
    bob = ChatClient("127.0.0.1", fast_server.port, "bob")
    for client in (alice, bob):
        client.connect()
    pump([alice, bob], lambda ev: all(c.ready for c in ev))
    alice.say("general", "lunch at noon?", ref="q")
    got = pump([alice], lambda ev: any(e.get("ref") == "q" for e in ev[alice]))
    asked = next(e for e in got[alice] if e.get("ref") == "q")["id"]
    bob.say("general", "yes", reply_to=asked, ref="a")
    bob.react(asked, "👍", ref="r")
    alice.edit(asked, "lunch at half past twelve?", ref="e")
    got = pump([alice, bob], lambda ev: "reaction" in types(ev[alice])
               and "edited" in types(ev[bob]))
    reply = next(e for e in got[alice] if e["type"] == "message" and e["text"] == "yes")
    assert reply["reply_to"] == asked
    assert next(e for e in got[bob] if e["type"] == "edited")["text"] == \
        "lunch at half past twelve?"
    alice.delete(asked, ref="d")
    got = pump([alice, bob], lambda ev: "deleted" in types(ev[bob]))
    assert next(e for e in got[bob] if e["type"] == "deleted")["target"] == asked
