"""Replies, reactions, edits and deletes over real sockets (docs/protocol.md, "Replies,
reactions, edits and deletes"): each on the messages' one road, stored, replayed and
shared across a cluster's nodes."""

from __future__ import annotations

from test_cluster import joined, wait_for
from wire import Wire, connect

from chat.irc import split_line
from tests.ircwire import IrcWire
from tests.test_irc import joined as irc_joined

EDITS = {"features": ["edits"]}


def said(wire: Wire, text: str, **fields) -> dict:
    wire.send(type="send", room="general", text=text, ref=text, **fields)
    return wire.until("message", ref=text)


def asked(wire: Wire, ref: str, **frame) -> dict:
    """Send ``frame`` with ``ref``; the answer that carries it."""
    wire.send(ref=ref, **frame)
    while (answer := wire.next()).get("ref") != ref:
        pass
    return answer


def history(wire: Wire, room: str = "general") -> dict[int, dict]:
    wire.send(type="history", room=room, ref="h")
    found = {}
    while (frame := wire.next())["type"] != "history_end":
        if frame["type"] == "message":
            found[frame["id"]] = frame
    return found


def test_a_reply_names_the_message_it_answers_live_and_in_history(server):
    alice, bob = connect(server.port, "alice"), connect(server.port, "bob")
    first = said(alice, "who has the key?")
    reply = said(bob, "I do", reply_to=first["id"])
    assert reply["reply_to"] == first["id"] and reply["reply_from"] == "alice"
    assert alice.until("message", text="I do")["reply_to"] == first["id"]
    assert history(alice)[reply["id"]]["reply_to"] == first["id"]
    assert history(alice)[reply["id"]]["reply_from"] == "alice"
    answer = asked(bob, "bad", type="send", room="general", text="?", reply_to=10**9)
    assert answer["type"] == "error" and answer["code"] == "no_such_message"
    bob.send(type="join", room="lab", ref="j")
    bob.until("history_end", room="lab")
    answer = asked(bob, "elsewhere", type="send", room="lab", text="?",
                   reply_to=first["id"])  # a message of another room
    assert answer["code"] == "no_such_message"


def test_edits_deletes_and_reactions_reach_those_who_take_them(server):
    alice = connect(server.port, "alice", **EDITS)
    bob = connect(server.port, "bob", **EDITS)
    plain = connect(server.port, "plain")  # a client that knows nothing of them
    msg = said(alice, "the lab opens at 9")
    mid = msg["id"]

    edited = asked(alice, "e", type="edit", id=mid, text="the lab opens at 10")
    assert edited["type"] == "edited" and edited["target"] == mid
    assert edited["text"] == "the lab opens at 10" and edited["by"] == "alice"
    seen = bob.until("edited")
    assert (seen["target"], seen["text"], seen["room"]) == (mid, "the lab opens at 10",
                                                           "general")
    assert seen["id"] > mid  # the change has its own place in the order

    assert asked(bob, "x", type="edit", id=mid, text="mine now")["code"] == "not_allowed"
    reacted = asked(bob, "r", type="react", id=mid, emoji="👍")
    assert (reacted["type"], reacted["emoji"], reacted["on"], reacted["nick"]) == (
        "reaction", "👍", True, "bob")
    assert alice.until("reaction")["emoji"] == "👍"
    asked(alice, "r2", type="react", id=mid, emoji="👍")
    asked(alice, "r3", type="react", id=mid, emoji="🎉")
    off = asked(alice, "r4", type="react", id=mid, emoji="🎉", on=False)
    assert off["on"] is False
    assert history(bob)[mid]["reactions"] == {"👍": ["bob", "alice"]}
    assert history(bob)[mid]["text"] == "the lab opens at 10" and history(bob)[mid]["edited"]
    bad = asked(bob, "b", type="react", id=mid, emoji="not one")
    assert bad["code"] == "bad_field"

    assert asked(bob, "d", type="delete", id=mid)["code"] == "not_allowed"
    gone = asked(alice, "d2", type="delete", id=mid)
    assert gone["type"] == "deleted" and gone["target"] == mid
    assert bob.until("deleted")["target"] == mid
    kept = history(bob)[mid]
    assert kept["deleted"] is True and kept["text"] == "" and "reactions" not in kept
    assert asked(alice, "again", type="edit", id=mid, text="x")["code"] == "no_such_message"

    # the plain client saw the message and nothing of the changes
    frames = plain.barrier()
    assert [f["type"] for f in frames if f["type"] in ("edited", "deleted", "reaction")] == []


def test_a_deleted_message_is_no_longer_found_and_an_edited_one_by_its_new_text(server):
    alice = connect(server.port, "alice", **EDITS)
    mid = said(alice, "zebra crossing")["id"]
    other = said(alice, "quokka sighting")["id"]
    asked(alice, "e", type="edit", id=other, text="wombat sighting")
    asked(alice, "d", type="delete", id=mid)

    def found(query: str) -> list[int]:
        answer = asked(alice, f"s-{query}", type="search", query=query)
        return [r["id"] for r in answer["results"]]
    assert found("zebra") == []
    assert found("quokka") == []
    assert found("wombat") == [other]


def test_an_operator_deletes_others_messages_and_changes_survive_a_restart(start_server,
                                                                         tmp_path):
    server = start_server()
    teacher = connect(server.port, "teacher", **EDITS)  # first in: the room's operator
    student = connect(server.port, "student", **EDITS)
    rude = said(student, "something rude")["id"]
    fine = said(student, "something fine")["id"]
    assert asked(teacher, "d", type="delete", id=rude)["type"] == "deleted"
    asked(teacher, "r", type="react", id=fine, emoji="✅")
    assert server.stop() == 0
    again = start_server(db=server.db)
    reader = connect(again.port, "reader", **EDITS)
    kept = history(reader)
    assert kept[rude]["deleted"] is True and kept[rude]["text"] == ""
    assert kept[fine]["reactions"] == {"✅": ["teacher"]}


def test_a_client_catching_up_with_since_is_told_what_changed(server):
    alice = connect(server.port, "alice", **EDITS)
    mid = said(alice, "draft one")["id"]
    later = Wire(server.port)
    later.send(type="hello", nick="bob", proto=1, since=mid, **EDITS)
    assert later.next()["type"] == "welcome"
    later.until("history_end")
    asked(alice, "e", type="edit", id=mid, text="draft two")
    later.close()
    back = Wire(server.port)
    back.send(type="hello", nick="bob", proto=1, since=mid, **EDITS)
    frames = []
    while (frame := back.next())["type"] != "history_end":
        frames.append(frame)
    change = [f for f in frames if f["type"] == "edited"]
    assert change and change[0]["target"] == mid and change[0]["history"] is True


def test_changes_made_on_one_node_hold_on_another(node):
    a, b = node(), node()
    alice = joined(a.port, "alice", **EDITS)
    bob = joined(b.port, "bob", **EDITS)
    mid = said(alice, "across the cluster")["id"]
    bob.until("message", id=mid)
    asked(alice, "e", type="edit", id=mid, text="across the whole cluster")
    assert bob.until("edited")["text"] == "across the whole cluster"
    asked(bob, "r", type="react", id=mid, emoji="🚀")
    assert alice.until("reaction")["nick"] == "bob"
    reply = said(bob, "indeed", reply_to=mid)
    assert alice.until("message", id=reply["id"])["reply_to"] == mid
    wait_for(lambda: history(bob)[mid]["reactions"] == {"🚀": ["bob"]}, what="b's copy")
    assert history(alice)[mid]["text"] == "across the whole cluster"


def test_irc_replies_reacts_and_redacts_and_sees_edits_and_deletes(irc_server):
    alice = connect(irc_server.port, "alice", **EDITS)
    ada = irc_joined(irc_server.irc_port, "ada", "message-tags draft/message-redaction")
    dee = irc_joined(irc_server.irc_port, "dee")  # a client that negotiated nothing
    mid = said(alice, "who has the key?")["id"]
    ada.until("PRIVMSG", "#general")

    ada.send(f"@+draft/reply={mid} PRIVMSG #general :I do")
    reply = alice.until("message", text="I do")
    assert reply["reply_to"] == mid and reply["from"] == "ada"
    plain = dee.until("PRIVMSG", "#general", "alice: I do")  # without tags: "nick: "
    assert plain[0].startswith(":ada!")
    ada.send(f"@+draft/react=👍;+draft/reply={mid} TAGMSG #general")
    reaction = alice.until("reaction")
    assert (reaction["emoji"], reaction["target"], reaction["nick"]) == ("👍", mid, "ada")

    asked(alice, "e", type="edit", id=mid, text="who has the lab key?")
    line = ada.until("NOTICE", "#general")
    tags, source, _, params = split_line(line[0])
    assert params[-1] == "(edited) who has the lab key?" and source.startswith("alice!")
    assert tags["+draft/reply"] == str(mid)
    assert dee.until("NOTICE", "#general")[-1] == "(edited) who has the lab key?"

    asked(alice, "d", type="delete", id=mid)
    redact = ada.until("REDACT", "#general")
    assert split_line(redact[0])[3][-1] == str(mid)
    assert dee.until("NOTICE", "#general")[-1] == f"(deleted a message: {mid})"

    ada.send(f"REDACT #general {reply['id']}")  # its own reply
    assert alice.until("deleted")["target"] == reply["id"]
    ada.send(f"REDACT #general {mid}")  # gone already
    fail = ada.until("FAIL")
    assert fail[2:4] == ["REDACT", "UNKNOWN_MSGID"], fail
    dee.send("QUIT :back soon")  # coming back, dee is given what it has not seen
    dee.until("ERROR")
    oops = said(alice, "oops, wrong room")["id"]
    asked(alice, "d3", type="delete", id=oops)
    back = irc_joined(irc_server.irc_port, "dee", "server-time")  # (replays need it)
    for _ in range(20):  # the replay comes after the names
        line = back.until_any()
        if " PRIVMSG #general :" in line and line.endswith(":(message deleted)"):
            break
    else:
        raise AssertionError("the deleted message's place is not shown")


def test_read_markers_are_kept_for_a_registered_nickname_and_told_to_its_next_device(
        server):
    alice = connect(server.port, "alice", features=["edits", "read_markers"])
    bob = connect(server.port, "bob")
    assert asked(alice, "m0", type="mark_read", room="general", id=1)["code"] == \
        "account_required"
    assert asked(alice, "reg", type="register", password="correct horse 1")["type"] == \
        "registered"
    last = said(bob, "two")["id"]
    answer = asked(alice, "m1", type="mark_read", room="general", id=last)
    assert (answer["type"], answer["id"], answer["room"]) == ("read", last, "general")
    asked(alice, "m2", type="mark_read", room="general", id=1)  # never backwards
    bob.send(type="send", to="alice", text="psst", ref="dm")
    dm = bob.until("message", ref="dm")["id"]
    asked(alice, "m3", type="mark_read", to="bob", id=dm)
    alice.close()

    phone = Wire(server.port)
    phone.send(type="hello", nick="alice", proto=1, nick_password="correct horse 1",
               features=["edits", "read_markers"])
    assert phone.next()["type"] == "welcome"
    markers = []
    while (frame := phone.next())["type"] == "read":
        markers.append({k: v for k, v in frame.items() if k not in ("type", "ts")})
    assert {"room": "general", "id": last} in markers and {"to": "bob", "id": dm} in markers
    assert len(markers) == 2


def test_a_read_marker_set_on_one_node_is_told_on_another(node):
    a, b = node(), node()
    alice = joined(a.port, "alice", features=["read_markers"])
    assert asked(alice, "reg", type="register", password="correct horse 1")["type"] == \
        "registered"
    mid = said(alice, "mark me")["id"]
    asked(alice, "m", type="mark_read", room="general", id=mid)
    alice.send(type="bye")
    alice.closed()

    def marker_on_b():
        phone = Wire(b.port)
        phone.send(type="hello", nick="alice", proto=1, nick_password="correct horse 1",
                   features=["read_markers"])
        first = phone.next()
        frames = []
        if first["type"] == "welcome":
            while (frame := phone.next())["type"] == "read":
                frames.append(frame)
        phone.close()
        return [f for f in frames if f.get("room") == "general" and f["id"] == mid]
    wait_for(marker_on_b, what="the marker on the other node")


def test_irc_markread_asks_moves_and_comes_with_join(irc_server):
    import base64

    from chat.irc import irc_time
    owner = connect(irc_server.port, "ada")
    owner.send(type="register", password="correct horse 1", ref="r")
    owner.until("registered")
    first = said(owner, "one")
    second = said(owner, "two")
    owner.send(type="bye")
    owner.closed()

    irc = IrcWire(irc_server.irc_port)
    irc.send("CAP LS 302")
    assert "draft/read-marker" in irc.until("CAP", "*", "LS")[-1].split()
    irc.send("NICK ada", "USER ada 0 * :Ada", "CAP REQ :sasl draft/read-marker",
             "AUTHENTICATE PLAIN")
    irc.until("AUTHENTICATE", "+")
    irc.send("AUTHENTICATE " + base64.b64encode(b"ada\0ada\0correct horse 1").decode())
    irc.until("903", "ada")
    irc.send("CAP END")
    irc.until("001", "ada")
    irc.send("JOIN #general")
    assert irc.until("MARKREAD", "#general")[-1] == "*"  # nothing read yet
    irc.until("366", "ada", "#general")
    irc.send(f"MARKREAD #general timestamp={irc_time(first['ts'])}")
    assert irc.until("MARKREAD", "#general")[-1] == f"timestamp={irc_time(first['ts'])}"
    irc.send("MARKREAD #general timestamp=2001-01-01T00:00:00.000Z")  # never backwards
    assert irc.until("MARKREAD", "#general")[-1] == f"timestamp={irc_time(first['ts'])}"
    irc.send("MARKREAD #general")  # a question
    assert irc.until("MARKREAD", "#general")[-1] == f"timestamp={irc_time(first['ts'])}"
    irc.send("QUIT :bye")
    irc.until("ERROR")

    phone = Wire(irc_server.port)  # another device of the same nickname
    phone.send(type="hello", nick="ada", proto=1, nick_password="correct horse 1",
               features=["read_markers"])
    assert phone.next()["type"] == "welcome"
    marker = phone.next()
    assert (marker["type"], marker["room"], marker["id"]) == ("read", "general", first["id"])
    assert second["id"] > marker["id"]
