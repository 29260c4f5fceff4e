"""docs/protocol.md rule by rule, over real sockets against ``main.py --server --headless``."""

from __future__ import annotations

import json
import threading
import time

import pytest
from wire import Wire, connect, crowd

# ------------------------------------------------------------------ framing

def test_frame_too_long_keeps_connection_and_is_reported_once(server):
    a = connect(server.port, "alice")
    a.send_raw(b'{"type":"ping","token":"' + b"x" * 20000 + b'"}\n')
    a.error("frame_too_long")
    assert a.barrier() == []  # one error only, and the connection still works


def test_frame_of_exactly_max_frame_is_accepted(start_server):
    server = start_server("--max-frame", "300")
    a = connect(server.port, "alice")
    head, tail = b'{"type":"ping","token":"', b'"}\n'
    a.send_raw(head + b"t" * (300 - len(head) - len(tail)) + tail)
    assert a.next()["type"] == "pong"
    a.send_raw(head + b"t" * (301 - len(head) - len(tail)) + tail)
    a.error("frame_too_long")
    a.send_raw(head + b"t" * (299 - len(head) - len(tail)) + b'"}\r\n')  # \r counts
    assert a.next()["type"] == "pong"


@pytest.mark.parametrize("line", [
    b"hello there", b"[1]", b'{"no":"type"}', b'{"type":3}', b'{"type":"ping","x":NaN}',
    b'{"type":"ping","token":"\xc3\x28"}', b'{"type":"ping"',
])
def test_bad_frames_get_bad_frame(server, line):
    a = connect(server.port, "alice")
    a.send_raw(line + b"\n")
    a.error("bad_frame")
    assert a.barrier() == []


def test_empty_lines_ignored_and_crlf_tolerated(server):
    a = connect(server.port, "alice")
    a.send_raw(b'\n\r\n{"type":"ping","token":"1"}\r\n\n')
    assert a.next() == {"type": "pong", "token": "1"}
    assert a.barrier() == []


def test_unknown_fields_are_ignored(server):
    a = Wire(server.port)
    a.send(type="hello", nick="alice", proto=1, colour="blue", future={"x": [1]})
    assert a.next()["type"] == "welcome"
    a.send(type="ping", token="t", extra=1)
    a.until("pong", token="t")


def test_ref_is_copied_into_every_answer(fast_server):
    a = Wire(fast_server.port)
    a.send(type="hello", nick="alice", proto=1, ref="h")
    frames = [a.next() for _ in range(4)]
    assert [f["type"] for f in frames] == ["welcome", "joined", "users", "history_end"]
    assert all(f["ref"] == "h" for f in frames)
    a.send(type="send", room="general", text="hi", ref="s")
    assert a.next()["ref"] == "s"
    a.send(type="who", room="general", ref="w")
    assert a.next() == {"type": "users", "room": "general", "users": ["alice"], "ref": "w",
                        "operators": ["alice"]}  # the first one in
    a.send(type="rooms", ref="r")
    assert a.next()["ref"] == "r"
    a.send(type="history", room="general", ref="hi")
    assert a.until("history_end")["ref"] == "hi"
    a.send(type="ping", token="p", ref="pi")
    assert a.next() == {"type": "pong", "token": "p", "ref": "pi"}
    a.send(type="join", room="dev", ref="j")
    assert [a.next()["ref"] for _ in range(3)] == ["j", "j", "j"]  # joined, users, end
    a.send(type="send", room="nowhere", text="x", ref="e")
    assert a.error("not_in_room")["ref"] == "e"


def test_refs_are_not_copied_to_others(fast_server):
    a, b = crowd(fast_server.port, "alice", "bob")
    a.send(type="send", room="general", text="hi", ref="mine")
    assert "ref" not in b.until("message")


@pytest.mark.parametrize("ref", [7, "x" * 65, None, "\ud800"])
def test_bad_ref_is_bad_field_without_ref(server, ref):
    a = connect(server.port, "alice")
    a.send(type="ping", token="t", ref=ref)
    assert "ref" not in a.error("bad_field")


def test_ids_increase_and_ts_is_server_milliseconds(fast_server):
    a = connect(fast_server.port, "alice")
    before = int(time.time() * 1000)
    for i in range(5):
        a.send(type="send", room="general", text=f"m{i}")
    got = [a.until("message") for _ in range(5)]
    after = int(time.time() * 1000)
    ids = [m["id"] for m in got]
    assert ids == sorted(set(ids)) and ids[0] >= 1
    assert all(isinstance(m["ts"], int) and before - 5 <= m["ts"] <= after + 5 for m in got)


# ------------------------------------------------------------------ session

def test_hello_welcome_and_room_frames_in_order(start_server):
    server = start_server("--name", "lab", "--motd", "be nice")
    b = connect(server.port, "bob")
    a = Wire(server.port)
    a.send(type="hello", nick="alice", proto=1, client="test/1")
    welcome = a.next()
    assert welcome == {"type": "welcome", "nick": "alice", "server": "lab", "motd": "be nice",
                       "limits": {"max_frame": 16384, "max_text": 4000, "rate": 5,
                                  "burst": 20, "history": 500}}
    joined = a.next()
    assert joined["type"] == "joined" and joined["room"] == "general"
    assert joined["nick"] == "alice" and isinstance(joined["ts"], int)
    assert a.next() == {"type": "users", "room": "general", "users": ["alice", "bob"],
                        "operators": ["bob"]}  # the first one in
    assert a.next() == {"type": "history_end", "room": "general"}
    assert b.next()["type"] == "joined"


def test_hello_with_no_rooms_joins_nothing(server):
    a = Wire(server.port)
    a.send(type="hello", nick="alice", proto=1, rooms=[])
    assert a.next()["type"] == "welcome"
    assert a.barrier() == []


def test_hello_timeout_closes_and_is_not_extended(start_server):
    server = start_server("--hello-timeout", "0.6")
    b = connect(server.port, "bob")
    a = Wire(server.port)
    start = time.monotonic()
    a.send(type="ping", token="1")  # answered, but does not extend the timeout
    a.send(type="hello", nick="bad nick", proto=1)  # a failed try does not either
    frames = a.closed(timeout=30)
    assert [f["type"] for f in frames] == ["pong", "error"]
    assert frames[1]["code"] == "bad_nick"
    assert time.monotonic() - start > 0.5  # not before its time
    assert b.barrier() == []  # registered peers are not affected


def test_hello_timeout_counts_from_connection_start(start_server):
    """Failed tries and pings, one every 0.2 s, never restart the timer: the
    connection is closed while they go on (a restarted timer would never run out)."""
    server = start_server("--hello-timeout", "0.8")
    a = Wire(server.port)
    pace = threading.Event()  # never set: its wait() paces the tries
    closed = False
    for i in range(150):  # 30 s of tries at most
        try:
            a.send(type="hello", nick="a b", proto=1)
            a.send(type="ping", token=str(i))
            a.until("pong", token=str(i))  # raises at once at EOF
        except OSError:  # a reset, or a send after the close
            closed = True
        except AssertionError:
            closed = a.eof  # not a 30 s silence
        if closed:
            break
        pace.wait(0.2)
    assert closed, "the tries kept the connection open"


def test_before_welcome_only_hello_ping_bye(server):
    a = Wire(server.port)
    for kind in ("send", "join", "who", "rooms", "nick", "pong", "typing", "dance"):
        a.send(type=kind, room="general", text="x", nick="z", ref=kind)
        assert a.error("not_registered")["ref"] == kind
    a.send(type="ping", token="x")
    assert a.next() == {"type": "pong", "token": "x"}
    a.send(type="bye", reason=5)
    assert a.closed() == []


def test_second_hello_is_already_registered(server):
    a = connect(server.port, "alice")
    a.send(type="hello", nick="other", proto=1)
    a.error("already_registered")


@pytest.mark.parametrize("hello,code", [
    ({"nick": "alice"}, "bad_field"),
    ({"proto": 1}, "bad_field"),
    ({"nick": "alice", "proto": "1"}, "bad_field"),
    ({"nick": "a b", "proto": 1}, "bad_nick"),
    ({"nick": "Server", "proto": 1}, "bad_nick"),
    ({"nick": "x" * 25, "proto": 1}, "bad_nick"),
    ({"nick": "alice", "proto": 1, "rooms": ["#bad"]}, "bad_room"),
    ({"nick": "alice", "proto": 1, "rooms": "general"}, "bad_field"),
    ({"nick": "alice", "proto": 1, "since": "5"}, "bad_field"),
])
def test_failed_hello_keeps_connection_for_a_retry(server, hello, code):
    a = Wire(server.port)
    a.send(type="hello", **hello)
    a.error(code)
    a.send(type="hello", nick="alice", proto=1)
    assert a.next()["type"] == "welcome"


def test_nick_taken_compares_casefolded_and_nfc(server):
    holder = connect(server.port, "Zoë")
    a = Wire(server.port)
    a.send(type="hello", nick="ZOE\u0308", proto=1)
    a.error("nick_taken")
    a.send(type="hello", nick="zoe", proto=1)
    assert a.next()["type"] == "welcome"


def test_nfc_spelling_is_registered(server):
    a = Wire(server.port)
    a.send(type="hello", nick="Zoe\u0308", proto=1)
    assert a.next()["nick"] == "Zo\u00eb"


@pytest.mark.parametrize("args,hello,code", [
    ((), {"nick": "alice", "proto": 2}, "bad_proto"),
    (("--password", "s3cret"), {"nick": "alice", "proto": 1, "password": "nope"},
     "auth_failed"),
    (("--password", "s3cret"), {"nick": "alice", "proto": 1}, "auth_failed"),
])
def test_fatal_hello_errors_close_after_the_error(start_server, args, hello, code):
    server = start_server(*args)
    a = Wire(server.port)
    a.send(type="hello", **hello)
    frames = a.closed()
    assert [(f["type"], f["code"]) for f in frames] == [("error", code)]


def test_password_lets_the_right_user_in(start_server):
    server = start_server("--password", "s3cret")
    a = Wire(server.port)
    a.send(type="hello", nick="alice", proto=1, password="s3cret")
    assert a.next()["type"] == "welcome"


def test_max_clients_counts_registered_users(start_server):
    server = start_server("--max-clients", "2")
    a, b = connect(server.port, "a"), connect(server.port, "b")
    c = Wire(server.port)  # a third connection before hello is fine
    c.send(type="hello", nick="c", proto=1)
    assert [(f["type"], f.get("code")) for f in c.closed()] == [("error", "server_full")]
    b.send(type="bye")
    b.closed()
    a.until("left")
    d = Wire(server.port)
    d.send(type="hello", nick="d", proto=1)
    assert d.next()["type"] == "welcome"


def test_unregistered_connections_are_capped_too(start_server):
    server = start_server("--max-clients", "3")
    waiting = [Wire(server.port) for _ in range(3)]
    for w in waiting:  # make sure the server has accepted all three
        w.send(type="ping", token="x")
        w.next()
    extra = Wire(server.port)
    assert [f.get("code") for f in extra.closed()] == ["server_full"]


def test_bye_flushes_queued_output_and_others_see_quit(fast_server):
    a, b = crowd(fast_server.port, "alice", "bob")
    a.barrier()
    b.send_raw(json.dumps({"type": "send", "room": "general", "text": "last words",
                           "ref": "lw"}).encode() + b"\n"
               + json.dumps({"type": "bye", "reason": "off to lunch"}).encode() + b"\n")
    frames = b.closed()
    assert [f["type"] for f in frames] == ["message"] and frames[0]["ref"] == "lw"
    assert a.until("message")["text"] == "last words"
    left = a.next()
    assert left["type"] == "left" and left["nick"] == "bob"
    assert left["reason"] == "quit" and left["message"] == "off to lunch"


def test_close_without_bye_is_disconnected(server):
    a, b = crowd(server.port, "alice", "bob")
    b.close()
    left = a.until("left")
    assert left["reason"] == "disconnected" and left["nick"] == "bob"


def test_abrupt_reset_is_disconnected(server):
    import socket
    import struct
    a, b = crowd(server.port, "alice", "bob")
    b.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    b.close()  # RST instead of FIN
    assert a.until("left")["reason"] == "disconnected"
    assert a.barrier() == []


# ------------------------------------------------------------------ messages

def test_room_message_reaches_every_member_in_id_order(fast_server):
    a, b, c = crowd(fast_server.port, "alice", "bob", "carol")
    c.send(type="join", room="other")
    c.until("history_end")
    a.send(type="send", room="general", text="one", ref="1")
    b.send(type="send", room="general", text="two")
    a.send(type="send", room="general", text="three")
    got_a = [f for f in a.barrier() if f["type"] == "message"]
    got_b = [f for f in b.barrier() if f["type"] == "message"]
    assert [m["id"] for m in got_a] == sorted(m["id"] for m in got_a)
    assert [m["text"] for m in got_b if m["text"] != "two"] == \
           [m["text"] for m in got_a if m["text"] != "two"]
    echo = next(m for m in got_a if m["text"] == "one")
    assert echo["ref"] == "1" and echo["from"] == "alice" and echo["room"] == "general"
    c.send(type="send", room="other", text="elsewhere")
    assert all(m["type"] != "message" or m["room"] != "other" for m in a.barrier())


def test_send_errors(server):
    a = connect(server.port, "alice")
    a.send(type="send", room="dev", text="x")
    a.error("not_in_room")
    a.send(type="send", room="no such", text="x")
    a.error("bad_room")
    a.send(type="send", room="general", to="bob", text="x")
    a.error("bad_field")
    a.send(type="send", text="x")
    a.error("bad_field")
    a.send(type="send", to="nobody", text="x")
    a.error("no_such_user")
    a.send(type="send", to="no body", text="x")
    a.error("bad_nick")
    a.send(type="send", room="general", text="x", action="yes")
    a.error("bad_field")


def test_room_and_nick_lookups_ignore_case(fast_server):
    a, b = crowd(fast_server.port, "Alice", "bob")
    b.send(type="send", room="GENERAL", text="hi")
    assert a.until("message")["room"] == "general"
    b.send(type="send", to="ALICE", text="psst")
    dm = a.until("message")
    assert dm["to"] == "Alice" and dm["from"] == "bob" and "room" not in dm


def test_direct_messages(fast_server):
    a, b, c = crowd(fast_server.port, "alice", "bob", "carol")
    a.send(type="send", to="bob", text="psst", ref="d")
    echo = a.until("message")
    assert echo["to"] == "bob" and echo["ref"] == "d" and isinstance(echo["id"], int)
    got = b.until("message")
    assert got["from"] == "alice" and got["text"] == "psst" and "ref" not in got
    assert not [f for f in c.barrier() if f["type"] == "message"]
    a.send(type="send", to="alice", text="note to self")
    assert len([f for f in a.barrier() if f["type"] == "message"]) == 1


def test_action_flag_only_on_actions(fast_server):
    a = connect(fast_server.port, "alice")
    a.send(type="send", room="general", text="waves", action=True)
    assert a.until("message")["action"] is True
    a.send(type="send", room="general", text="plain", action=False)
    assert "action" not in a.until("message")


def test_text_rules(start_server):
    server = start_server("--max-text", "10", "--rate", "0")
    a = connect(server.port, "alice")
    a.send(type="send", room="general", text="   0123456789  \n")
    assert a.until("message")["text"] == "   0123456789  \n"  # stored exactly as sent
    a.send(type="send", room="general", text="01234567890")
    a.error("text_too_long")
    for bad in ("a\rb", "   ", "\x07", "\ud800"):
        a.send(type="send", room="general", text=bad)
        a.error("bad_text")
    a.send(type="send", room="general", text="\U0001F468\u200d\U0001F469 \t a")
    assert a.until("message")["text"] == "\U0001F468\u200d\U0001F469 \t a"


# ------------------------------------------------------------------ rooms

def test_join_part_and_rejoin(fast_server):
    a, b = crowd(fast_server.port, "alice", "bob")
    a.send(type="join", room="Dev")
    joined = a.next()
    assert joined["type"] == "joined" and joined["room"] == "Dev"
    assert a.next() == {"type": "users", "room": "Dev", "users": ["alice"],
                        "operators": ["alice"]}
    assert a.next() == {"type": "history_end", "room": "Dev"}
    b.send(type="join", room="dev")
    assert b.next()["room"] == "Dev"  # the first creator's spelling
    assert a.next()["type"] == "joined"
    b.until("history_end")
    b.send(type="join", room="DEV", ref="again")
    assert b.next() == {"type": "users", "room": "Dev", "users": ["alice", "bob"],
                        "ref": "again", "operators": ["alice"]}
    assert b.next() == {"type": "history_end", "room": "Dev", "ref": "again"}
    assert a.barrier() == []  # no second joined
    b.send(type="part", room="dev", ref="p")
    left_b = b.next()
    assert left_b["type"] == "left" and left_b["reason"] == "part" and left_b["ref"] == "p"
    left_a = a.next()
    assert left_a["nick"] == "bob" and left_a["reason"] == "part"
    b.send(type="part", room="dev")
    b.error("not_in_room")


def test_empty_room_without_history_disappears(fast_server):
    a = connect(fast_server.port, "alice")
    a.send(type="join", room="tmp")
    a.until("history_end")
    a.send(type="join", room="kept")
    a.until("history_end")
    a.send(type="send", room="kept", text="x")
    a.until("message")
    for room in ("tmp", "kept"):
        a.send(type="part", room=room)
        a.until("left")
    a.send(type="rooms")
    assert a.next()["rooms"] == [{"name": "general", "users": 1},
                                 {"name": "kept", "users": 0}]
    a.send(type="who", room="tmp")
    a.error("not_in_room")
    a.send(type="who", room="kept")
    assert a.next() == {"type": "users", "room": "kept", "users": []}


def test_who_works_for_rooms_one_is_not_in(server):
    a, b = connect(server.port, "alice"), connect(server.port, "bob", rooms=["dev"])
    a.send(type="who", room="dev")
    assert a.next() == {"type": "users", "room": "dev", "users": ["bob"],
                        "operators": ["bob"]}
    a.send(type="who", room="bad room")
    a.error("bad_room")


def test_rename(fast_server):
    a, b = crowd(fast_server.port, "alice", "bob")
    c = connect(fast_server.port, "carol", rooms=["other"])
    b.send(type="join", room="dev")
    b.until("history_end")
    a.send(type="join", room="dev")
    a.until("history_end")
    b.barrier()
    a.send(type="nick", nick="carol")
    a.error("nick_taken")
    a.send(type="nick", nick="server")
    a.error("bad_nick")
    a.send(type="nick", nick="alicia", ref="n")
    mine = a.next()
    assert mine["type"] == "renamed" and mine["old"] == "alice" and mine["new"] == "alicia"
    assert mine["ref"] == "n"
    seen = [f for f in b.barrier() if f["type"] == "renamed"]
    assert len(seen) == 1  # once, though bob shares two rooms with her
    assert not [f for f in c.barrier() if f["type"] == "renamed"]
    a.send(type="nick", nick="ALICIA")  # a case-only rename of one's own nick
    assert a.next()["new"] == "ALICIA"
    b.send(type="send", to="alicia", text="hi")
    assert a.until("message")["to"] == "ALICIA"


def test_typing_goes_to_the_others_only(server):
    a, b = crowd(server.port, "alice", "bob")
    a.send(type="typing", room="general")
    assert b.next() == {"type": "typing", "room": "general", "nick": "alice"}
    assert a.barrier() == []
    a.send(type="typing", room="dev")
    a.error("not_in_room")


# ------------------------------------------------------------------ errors

def test_error_changes_no_state(server):
    a, b = crowd(server.port, "alice", "bob")
    a.send(type="nick", nick="bob")
    a.error("nick_taken")
    a.send(type="join", room="bad room")
    a.error("bad_room")
    a.send(type="rooms")
    assert a.next()["rooms"] == [{"name": "general", "users": 2}]
    assert [f for f in b.barrier() if f["type"] != "joined"] == []


def test_more_than_twenty_errors_in_a_row_closes(server):
    a, b = crowd(server.port, "alice", "bob")
    for _ in range(20):
        a.send_raw(b"junk\n")
    for _ in range(20):
        a.error("bad_frame")
    a.send(type="ping", token="ok")  # success resets the count
    assert a.next()["type"] == "pong"
    a.send_raw(b"junk\n" * 21)
    frames = a.closed()
    assert len(frames) == 21 and all(f["code"] == "bad_frame" for f in frames)
    left = b.until("left")
    assert left["nick"] == "alice" and left["reason"] == "disconnected"


def test_every_error_code_counts_toward_the_limit(server):
    a = connect(server.port, "alice")
    for i in range(21):
        a.send(type=("dance", "join", "part")[i % 3], room="no where")
    assert len(a.closed()) == 21


# ------------------------------------------------------------------ history

def test_join_replays_latest_fifty_with_original_ts(fast_server):
    a = connect(fast_server.port, "alice")
    for i in range(60):
        a.send(type="send", room="general", text=f"m{i}")
    sent = [a.until("message") for _ in range(60)]
    b = Wire(fast_server.port)
    frames = b.hello("bob")
    replay = [f for f in frames if f["type"] == "message"]
    assert [m["text"] for m in replay] == [f"m{i}" for i in range(10, 60)]
    assert all(m["history"] is True for m in replay)
    assert [(m["id"], m["ts"]) for m in replay] == [(m["id"], m["ts"]) for m in sent[10:]]
    assert frames[-1] == {"type": "history_end", "room": "general", "more": True}


def test_since_resumes_without_gap_or_duplicate(fast_server):
    a = connect(fast_server.port, "alice")
    b = connect(fast_server.port, "bob")
    a.send(type="send", room="general", text="seen")
    last = b.until("message")["id"]
    b.close()
    for i in range(5):
        a.send(type="send", room="general", text=f"missed{i}")
    a.barrier()
    b = Wire(fast_server.port)
    frames = b.hello("bob", since=last)
    replay = [f["text"] for f in frames if f["type"] == "message"]
    assert replay == [f"missed{i}" for i in range(5)]
    assert frames[-1] == {"type": "history_end", "room": "general"}
    a.send(type="send", room="general", text="live")
    assert b.until("message")["text"] == "live"


def test_since_is_capped_by_history(start_server):
    server = start_server("--history", "3", "--rate", "0")
    a = connect(server.port, "alice")
    for i in range(6):
        a.send(type="send", room="general", text=f"m{i}")
    a.barrier()
    b = Wire(server.port)
    frames = b.hello("bob", since=0)
    assert [f["text"] for f in frames if f["type"] == "message"] == ["m3", "m4", "m5"]
    assert frames[-1]["more"] is True


def test_history_requests(fast_server):
    a = connect(fast_server.port, "alice")
    for i in range(10):
        a.send(type="send", room="general", text=f"m{i}")
    ids = [a.until("message")["id"] for _ in range(10)]
    a.send(type="history", room="general", before=ids[5], limit=3, ref="h")
    got = [a.next() for _ in range(4)]
    assert [m["text"] for m in got[:3]] == ["m2", "m3", "m4"]
    assert all(m["history"] for m in got[:3])
    assert got[3] == {"type": "history_end", "room": "general", "more": True, "ref": "h"}
    a.send(type="history", room="general", before=ids[2], limit=5)
    got = [a.next() for _ in range(3)]
    assert [m["text"] for m in got[:2]] == ["m0", "m1"]
    assert got[2] == {"type": "history_end", "room": "general"}
    a.send(type="history", room="general", limit=2)  # no before: the latest
    assert [a.next()["text"] for _ in range(2)] == ["m8", "m9"]
    a.next()
    a.send(type="history", room="dev")
    a.error("not_in_room")
    a.send(type="history", room="general", limit=201)
    a.error("bad_field")


def test_direct_messages_are_not_replayed(fast_server):
    a, b = crowd(fast_server.port, "alice", "bob")
    a.send(type="send", to="bob", text="secret")
    b.until("message")
    c = Wire(fast_server.port)
    assert not [f for f in c.hello("carol", since=0) if f["type"] == "message"]


def test_history_and_ids_survive_a_restart(start_server, tmp_path):
    db = tmp_path / "keep.db"
    first = start_server("--rate", "0", db=db)
    a = connect(first.port, "alice", rooms=["Lab"])
    a.send(type="send", room="Lab", text="before restart")
    old = a.until("message")["id"]
    assert first.stop() == 0
    second = start_server("--rate", "0", db=db)
    b = Wire(second.port)
    frames = b.hello("bob", rooms=["lab"])
    assert [f["text"] for f in frames if f["type"] == "message"] == ["before restart"]
    assert frames[1]["room"] == "Lab"  # spelling kept
    b.send(type="send", room="lab", text="after")
    assert b.until("message")["id"] > old
    b.send(type="rooms")
    assert b.next()["rooms"] == [{"name": "Lab", "users": 1}]


# ------------------------------------------------------------------ flood control

def test_rate_limit_refuses_without_storing(start_server):
    server = start_server("--rate", "0.01", "--burst", "3")
    a, b = crowd(server.port, "alice", "bob")
    for i in range(5):
        a.send(type="send", room="general", text=f"m{i}")
    frames = a.barrier()
    assert [f["type"] for f in frames] == ["message"] * 3 + ["error"] * 2
    assert frames[3]["code"] == "rate_limited"
    assert [f["text"] for f in b.barrier() if f["type"] == "message"] == ["m0", "m1", "m2"]


def test_refused_requests_cost_no_token(start_server):
    server = start_server("--rate", "0.01", "--burst", "2")
    a = connect(server.port, "alice")
    for _ in range(5):
        a.send(type="send", room="nowhere", text="x")
        a.error("not_in_room")
        a.send(type="send", room="general", text="   ")
        a.error("bad_text")
    a.send(type="typing", room="general")
    a.send(type="send", room="general", text="ok")
    assert a.next()["type"] == "message"
    a.send(type="typing", room="general")
    a.error("rate_limited")


# ------------------------------------------------------------------ liveness

def test_server_pings_silent_clients_and_closes_unanswered(start_server):
    server = start_server("--ping-interval", "0.4", "--ping-timeout", "0.4")
    a, b = crowd(server.port, "alice", "bob")
    ping = a.until("ping", timeout=30)
    assert isinstance(ping["token"], str)
    a.send(type="pong", token=ping["token"])
    b_frames = b.closed(timeout=30)  # bob never answers
    assert [f["type"] for f in b_frames if f["type"] != "joined"] == ["ping"]
    left = a.until("left", timeout=30)
    assert left["nick"] == "bob" and left["reason"] == "timeout"


def test_any_frame_answers_a_ping(start_server):
    server = start_server("--ping-interval", "0.3", "--ping-timeout", "0.6")
    a = connect(server.port, "alice")
    for _ in range(3):
        a.until("ping", timeout=30)
        a.send_raw(b"not json\n")  # even a bad frame is not silence
        a.error("bad_frame")
    a.send(type="ping", token="still here")
    a.until("pong", token="still here")


def test_shutdown_notice_and_exit_zero(server):
    import signal
    a = connect(server.port, "alice")
    assert server.stop(signal.SIGINT) == 0
    frames = a.closed()
    assert frames and frames[-1]["type"] == "notice"
    assert "shutting down" in frames[-1]["text"]


# ---------------------------------------------------------------- docs/protocol.md additions

def replayed(client: Wire, **request) -> tuple[list[str], dict]:
    """The texts a `history` request returns, and its `history_end`."""
    client.send(type="history", room="general", ref="h", **request)
    texts = []
    while (frame := client.next())["type"] != "history_end":
        texts.append(frame["text"])
    assert frame["ref"] == "h"
    return texts, frame


def test_history_ranges_by_id_and_by_time(start_server):
    server = start_server("--rate", "0")
    alice, = crowd(server.port, "alice")
    sent = []
    for n in range(8):
        alice.send(type="send", room="general", text=f"m{n}", ref=str(n))
        sent.append(alice.until("message", ref=str(n)))
        time.sleep(0.003)  # distinct millisecond stamps
    ids = [m["id"] for m in sent]
    texts = [f"m{n}" for n in range(8)]
    assert replayed(alice, after=ids[5])[0] == texts[6:]
    assert replayed(alice, after=ids[1], limit=2)[0] == texts[6:]  # the newest of the range
    got, end = replayed(alice, after=ids[1], limit=2, oldest=True)
    assert got == texts[2:4] and end["more"] is True  # the oldest, newer ones left out
    assert replayed(alice, after=ids[1], before=ids[4])[0] == texts[2:4]
    assert replayed(alice, around=ids[4], limit=3)[0] == texts[3:6]
    assert replayed(alice, around=ids[4], limit=1)[0] == texts[4:5]
    assert replayed(alice, before_ts=sent[3]["ts"], limit=2)[0] == texts[1:3]
    assert replayed(alice, after_ts=sent[5]["ts"])[0] == texts[6:]
    assert replayed(alice, around_ts=sent[2]["ts"], limit=3)[0] == texts[1:4]
    alice.send(type="history", room="general", around=ids[2], after=ids[1])
    alice.error("bad_field")
    alice.send(type="history", room="general", after_ts=-1)
    alice.error("bad_field")


def test_whois_ison_notices_tags_and_tagmsg(start_server):
    server = start_server("--rate", "0")
    alice, bob = crowd(server.port, "alice", "bob")
    alice.send(type="whois", nick="BOB", ref="w")
    who = alice.until("whois")
    assert (who["nick"], who["rooms"], who["door"], who["account"], who["ref"]) == \
        ("bob", ["general"], "json", False, "w")
    alice.send(type="whois", nick="carol")
    alice.error("no_such_user")
    alice.send(type="ison", nicks=["carol", "Bob", "alice"], ref="i")
    assert alice.until("ison")["nicks"] == ["bob", "alice"]
    alice.send(type="ison", nicks=["x"] * 65)
    alice.error("bad_field")
    alice.send(type="send", room="general", text="class is over", notice=True,
               tags={"+draft/reply": "3"}, ref="n")
    echo = alice.until("message", ref="n")
    assert echo["notice"] is True and echo["tags"] == {"+draft/reply": "3"}
    got = bob.until("message", text="class is over")
    assert got["notice"] is True and got["tags"] == {"+draft/reply": "3"}
    for bad in ({"noplus": "x"}, {"+ok": 3}, {"+big": "x" * 5000}, ["+a"]):
        alice.send(type="send", room="general", text="x", tags=bad)
        alice.error("bad_field")
    alice.send(type="send", room="general", text="x", notice=True, action=True)
    alice.error("bad_field")
    alice.send(type="tagmsg", room="general", tags={"+draft/react": "ok"}, ref="t")
    mine = alice.until("tagmsg", ref="t")
    assert mine["tags"] == {"+draft/react": "ok"} and mine["tag_id"].startswith("t")
    assert not any(f["type"] == "tagmsg" for f in bob.barrier())  # bob did not ask
    alice.send(type="tagmsg", room="general", tags={})
    alice.error("bad_field")


def test_direct_history_for_the_signed_in_account_holder_only(start_server):
    server = start_server("--rate", "0")
    ada, bob, cy = crowd(server.port, "ada", "bob", "cy")

    def dm(sender, to, text):
        sender.send(type="send", to=to, text=text, ref="d")
        sender.until("message", ref="d")

    dm(ada, "bob", "before ada had an account")
    time.sleep(0.005)  # a later millisecond: the account's creation
    ada.send(type="register", password="long enough secret", ref="r")
    ada.until("registered")
    dm(ada, "bob", "one")
    dm(bob, "ada", "two")
    dm(bob, "cy", "not ada's")
    dm(ada, "ada", "a note to myself")

    def direct(client, **request):
        client.send(type="history", ref="h", **request)
        texts = []
        while (frame := client.next())["type"] != "history_end":
            assert frame["history"] is True
            texts.append((frame["from"], frame["to"], frame["text"]))
        assert frame["ref"] == "h" and "room" not in frame
        return texts, frame

    got, end = direct(ada, **{"with": "BOB"})  # nicknames compare without case
    assert got == [("ada", "bob", "one"), ("bob", "ada", "two")] and end["with"] == "BOB"
    assert direct(ada, **{"with": "bob", "limit": 1})[0] == [("bob", "ada", "two")]
    assert direct(ada, **{"with": "bob", "limit": 1, "oldest": True})[0] == \
        [("ada", "bob", "one")]
    assert direct(ada, **{"with": "ada"})[0] == [("ada", "ada", "a note to myself")]
    assert direct(ada, **{"with": "cy"})[0] == []
    bob.send(type="history", ref="x", **{"with": "ada"})  # bob has no account
    assert bob.error("account_required")["ref"] == "x"
    ada.send(type="history", room="general", **{"with": "bob"})
    ada.error("bad_field")
