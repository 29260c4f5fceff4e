"""The IRC gateway over real sockets, in rooms shared with JSON-protocol clients."""

from __future__ import annotations

import base64
import time

import pytest

from chat.irc import irc_time, split_line
from tests.conftest import launch
from tests.ircwire import IrcWire
from tests.wire import connect


def joined(port: int, nick: str, caps: str = "") -> IrcWire:
    """An IRC client registered and in #general."""
    irc = IrcWire(port)
    irc.register(nick, caps)
    irc.send("JOIN #general")
    irc.until("366", nick, "#general")
    return irc


def test_registration_with_caps_isupport_and_motd(irc_server):
    irc = IrcWire(irc_server.irc_port)
    irc.send("CAP LS 302")
    caps = irc.until("CAP", "*", "LS")[-1].split()
    assert {"server-time", "message-tags", "echo-message"} <= set(caps)
    irc.send("NICK ada", "USER ada 0 * :Ada")
    irc.send("CAP REQ :server-time echo-message", "CAP END")  # registration waits for END
    assert irc.until("CAP", "ada", "ACK")[-1] == "server-time echo-message"
    assert "Welcome" in irc.until("001", "ada")[-1]
    isupport = irc.until("005", "ada")
    assert "CHANTYPES=#" in isupport and "NICKLEN=24" in isupport
    assert irc.until("372", "ada")[-1] == "- Hi IRC"
    irc.until("376", "ada")


def test_irc_and_json_clients_talk_in_one_room(irc_server):
    irc = IrcWire(irc_server.irc_port)
    irc.register("ada", "server-time message-tags")
    irc.send("JOIN #general")
    irc.until("JOIN", "#general")
    assert irc.until("353", "ada", "=", "#general")[-1] == "@ada"  # the first one in
    plain = connect(irc_server.port, "bob")
    assert irc.until("JOIN", "#general")[1] == "bob!bob@lanchat"
    plain.send(type="send", room="general", text="hello ada", ref="1")
    echo = plain.until("message", ref="1")
    got = irc.until("PRIVMSG", "#general")
    assert got[-1] == "hello ada" and got[1].startswith("bob!")
    assert got[0].startswith("@time=") and f"msgid={echo['id']}" in got[0]
    irc.send("PRIVMSG #general :hello bob", "PRIVMSG #general :\x01ACTION waves\x01")
    assert plain.until("message", text="hello bob")["from"] == "ada"
    assert plain.until("message", text="waves")["action"] is True
    irc.send("PRIVMSG bob :a private word")
    dm = plain.until("message", text="a private word")
    assert dm["to"] == "bob" and dm["from"] == "ada"
    plain.send(type="send", to="ada", text="back to you")
    assert irc.until("PRIVMSG", "ada")[-1] == "back to you"
    plain.send(type="send", room="general", text="line one\nline two")
    assert irc.until("PRIVMSG", "#general")[-1] == "line one"
    assert irc.until("PRIVMSG", "#general")[-1] == "line two"


def test_queries_names_who_list_topic_mode_ping(irc_server):
    irc = IrcWire(irc_server.irc_port)
    irc.register("ada")
    bob = connect(irc_server.port, "bob")
    irc.send("JOIN #general,#lab")
    irc.until("366", "ada", "#lab")
    irc.send("NAMES #general")
    assert sorted(irc.until("353", "ada", "=", "#general")[-1].split()) == ["@bob", "ada"]
    irc.send("WHO #general")
    who = {irc.until("352", "ada", "#general")[7] for _ in range(2)}
    assert who == {"ada", "bob"}
    irc.until("315", "ada", "#general")
    irc.send("LIST")
    rooms = {}
    irc.until("321", "ada")
    for _ in range(2):
        entry = irc.until("322", "ada")
        rooms[entry[3]] = entry[4]
    assert rooms == {"#general": "2", "#lab": "1"}
    irc.send("TOPIC #general", "MODE #general", "PING :tok")
    irc.until("331", "ada", "#general")
    irc.until("324", "ada", "#general")
    assert irc.until("PONG")[-1] == "tok"
    irc.send("MODE #general b", "MODE #general +o bob", "TOPIC #general :new topic",
             "KICK #general bob", "MODE ada", "AWAY :lunch", "AWAY", "MOTD", "CAP LIST")
    irc.until("368", "ada", "#general")  # no bans to list
    irc.until("482", "ada", "#general")  # modes are fixed
    irc.until("482", "ada", "#general")  # topics are not kept
    irc.until("482", "ada", "#general")  # only the operator kicks
    irc.until("221", "ada")
    irc.until("306", "ada")
    irc.until("305", "ada")
    assert irc.until("372", "ada")[-1] == "- Hi IRC"
    assert irc.until("CAP", "ada", "LIST")[-1] == ""
    bob.send(type="who", room="general", ref="w")
    assert bob.until("users", ref="w")["users"] == ["ada", "bob"]  # nobody was kicked


def test_errors_are_numerics_and_nothing_else_breaks(irc_server):
    bob = connect(irc_server.port, "bob")
    taken = IrcWire(irc_server.irc_port)
    taken.send("NICK bob", "USER bob 0 * :Bob")
    assert taken.until("433")[3] == "bob"  # nickname in use: choose another
    taken.send("NICK bobby")
    taken.until("001", "bobby")
    taken.send("PRIVMSG nobody :hi")
    assert taken.until("401", "bobby")[3] == "nobody"
    taken.send("PRIVMSG #nowhere :hi")
    assert taken.until("404", "bobby")[3] == "#nowhere"  # cannot send to channel
    taken.send("FROBNICATE")
    assert taken.until("421", "bobby")[3] == "FROBNICATE"
    bob.send(type="send", room="general", text="still fine", ref="s")
    assert bob.until("message", ref="s")["text"] == "still fine"


def test_nick_part_quit_reach_json_clients(irc_server):
    irc = joined(irc_server.irc_port, "ada")
    bob = connect(irc_server.port, "bob")
    irc.send("NICK adele")
    assert irc.until("NICK")[-1] == "adele"
    assert bob.until("renamed")["new"] == "adele"
    irc.send("PART #general :off to lunch")
    left = bob.until("left", nick="adele")
    assert left["reason"] == "part"
    irc.send("JOIN #general")
    bob.until("joined", nick="adele")
    irc.send("QUIT :bye all")
    left = bob.until("left", nick="adele")
    assert (left["reason"], left["message"]) == ("quit", "bye all")


def test_echo_message_only_for_those_who_ask(irc_server):
    quiet, echoed = IrcWire(irc_server.irc_port), IrcWire(irc_server.irc_port)
    quiet.register("quiet")
    echoed.register("loud", "echo-message")
    for irc, nick in ((quiet, "quiet"), (echoed, "loud")):
        irc.send("JOIN #general")
        irc.until("366", nick, "#general")
    echoed.send("PRIVMSG #general :mine")
    assert echoed.until("PRIVMSG", "#general")[-1] == "mine"  # its own, echoed
    quiet.send("PRIVMSG #general :also mine")
    assert quiet.until("PRIVMSG", "#general")[-1] == "mine"  # the other's, not its own
    assert echoed.until("PRIVMSG", "#general")[-1] == "also mine"
    quiet.send("PING :after")
    quiet.until("PONG")
    assert not any("also mine" in line for line in quiet.seen)


def test_irc_over_tls_and_the_closing_line(tmp_path):
    srv = launch(tmp_path / "ircs.db", "--tls", "--irc-tls-port", "0")
    line = srv.proc.stdout.readline()
    assert line.startswith("ircs listening on 127.0.0.1:")
    irc = IrcWire(int(line.rsplit(":", 1)[1]), tls=True)
    irc.register("secure")
    irc.send("JOIN #general")
    irc.until("366", "secure", "#general")
    plain = connect(srv.port, "bob", tls=True)
    plain.send(type="send", room="general", text="over TLS both ways")
    assert irc.until("PRIVMSG", "#general")[-1] == "over TLS both ways"
    assert srv.stop() == 0  # shutdown: a notice, then the closing line
    assert "shutting down" in irc.until("NOTICE", "*")[-1]
    irc.until("ERROR")


def test_irc_tls_port_needs_tls(tmp_path):
    import subprocess
    import sys

    from tests.conftest import MAIN
    result = subprocess.run([sys.executable, MAIN, "--server", "--headless", "--port", "0",
                             "--irc-tls-port", "0", "--db", str(tmp_path / "x.db")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "--irc-tls-port needs TLS" in result.stderr


def test_a_broadcast_is_written_once_per_set_of_capabilities():
    from chat.events import Message
    from chat.irc import IrcCodec
    from chat.model import Peer, Room, TokenBucket

    calls = []

    class Counting(IrcCodec):
        def render(self, events):
            calls.append(self.caps)
            return super().render(events)

    room, dirty = Room("general", "general"), {}
    members = []
    for n, caps in enumerate([(), (), ("server-time",), ("server-time",), ()]):
        peer = Peer(("127.0.0.1", n), 0.0, 0, TokenBucket(0, 1, 0.0),
                    TokenBucket(0, 1, 0.0), dirty)
        peer.nick = f"u{n}"
        peer.codec = Counting("lanchat")
        peer.codec.enable(frozenset(caps))
        room.add(peer)
        members.append(peer)
    room.fresh.clear()
    message = Message(id=7, ts=1, room="general", to=None, sender="x", text="hi")
    room.pending.append((message, None, None))
    room.deliver()
    assert sorted(map(sorted, calls)) == [[], ["server-time"]]  # twice, not five times
    assert bytes(members[0].out) == bytes(members[4].out)
    assert bytes(members[2].out).startswith(b"@time=")


def test_senders_echoes_do_not_make_the_batch_written_per_sender():
    from chat.events import Message
    from chat.irc import IrcCodec
    from chat.model import Peer, Room, TokenBucket

    written = []

    class Counting(IrcCodec):
        def render(self, events):
            written.append(len(events))
            return super().render(events)

    room, dirty = Room("general", "general"), {}
    senders = []
    for n in range(4):
        peer = Peer(("127.0.0.1", n), 0.0, 0, TokenBucket(0, 1, 0.0),
                    TokenBucket(0, 1, 0.0), dirty)
        peer.nick = f"u{n}"
        peer.codec = Counting("lanchat")
        peer.codec.enable(frozenset({"echo-message"}))
        room.add(peer)
        senders.append(peer)
    room.fresh.clear()
    for n, peer in enumerate(senders):  # each says one thing: everyone's, its echo its own
        message = Message(id=n + 1, ts=1, room="general", to=None, sender=f"u{n}",
                          text=f"hi {n}")
        room.pending.append((message, peer, message.answering("r")))
    room.deliver()
    # 4 entries written once each for everyone, 4 echoes: not 4 x 4 lines
    assert sum(written) == 8
    for peer in senders:
        lines = bytes(peer.out).decode().splitlines()
        assert [line.rsplit(":", 1)[1] for line in lines] == ["hi 0", "hi 1", "hi 2", "hi 3"]


def test_part_messages_long_lines_and_notices_that_are_never_answered(irc_server):
    irc = joined(irc_server.irc_port, "ada")
    bob = connect(irc_server.port, "bob")
    irc.send("PART #general :bye everyone")
    assert irc.until("PART", "#general")[-1] == "bye everyone"
    left = bob.until("left", nick="ada")
    assert (left["reason"], left["message"]) == ("part", "bye everyone")
    irc.send("PRIVMSG #general :" + "x" * 600)
    irc.until("417", "ada")  # input line too long: nothing sent
    irc.send("NOTICE nobody :hello?", "NOTICE #nowhere :hello?", "PING :end")
    irc.until("PONG")
    assert not any(" 401 " in line or " 404 " in line for line in irc.seen)
    bob.send(type="part", room="general", message="x\u0000")  # the part word is text
    assert bob.error("bad_text")


def test_history_on_join_for_clients_that_can_show_its_time(irc_server):
    bob = connect(irc_server.port, "bob")
    bob.send(type="send", room="general", text="said before", ref="1")
    bob.until("message", ref="1")
    timed, plain = IrcWire(irc_server.irc_port), IrcWire(irc_server.irc_port)
    timed.register("timed", "server-time")
    plain.register("plain")
    for irc in (timed, plain):
        irc.send("JOIN #general", "PING :joined")
        irc.until("PONG")
    assert any("said before" in line and line.startswith("@time=") for line in timed.seen)
    assert not any("said before" in line for line in plain.seen)


def test_irssi_in_tmux_signs_in_joins_sees_history_and_talks(irc_server, tmp_path):
    import os
    import shutil
    import subprocess
    import time

    if not (shutil.which("irssi") and shutil.which("tmux")):
        pytest.skip("needs irssi and tmux (python tests/prepare.py installs them)")
    owner = connect(irc_server.port, "ircuser", rooms=[])  # the account irssi signs in to
    owner.send(type="register", password="irssi's secret")
    owner.until("registered")
    owner.send(type="bye")
    owner.closed()
    bob = connect(irc_server.port, "bob")
    bob.send(type="send", room="general", text="said before irssi came", ref="h")
    bob.until("message", ref="h")
    home = tmp_path / "home"
    (home / ".irssi").mkdir(parents=True)
    (home / ".irssi" / "config").write_text(f"""
servers = ( {{ address = "127.0.0.1"; chatnet = "lab"; port = "{irc_server.irc_port}";
               use_tls = "no"; autoconnect = "yes"; }} );
chatnets = {{ lab = {{ type = "IRC"; sasl_mechanism = "PLAIN";
                      sasl_username = "ircuser"; sasl_password = "irssi's secret"; }}; }};
settings = {{ core = {{ nick = "ircuser"; user_name = "ircuser"; real_name = "IRC user"; }}; }};
""")
    session = f"lanchat{os.getpid()}"
    tmux = ["tmux", "-L", session]  # a tmux server of the test's own

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", session],
                              capture_output=True, text=True).stdout

    def until(text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in screen():
            assert time.monotonic() < deadline, f"irssi never showed {text!r}:\n{screen()}"
            time.sleep(0.1)  # polling the screen, each look bounded by the deadline

    subprocess.run([*tmux, "new-session", "-d", "-s", session, "-x", "160", "-y", "40",
                    f"HOME={home} TERM=xterm irssi --home={home}/.irssi"], check=True)
    try:
        until("SASL authentication succeeded")  # irssi's SASL, then the welcome
        until("Welcome to")
        bob.send(type="whois", nick="ircuser")
        assert bob.until("whois")["account"] is True
        subprocess.run([*tmux, "send-keys", "-t", session, "/join #general", "Enter"])
        until("has joined #general")
        until("said before irssi came")  # the history, shown on joining
        bob.send(type="send", room="general", text="hello irssi user")
        until("hello irssi user")
        subprocess.run([*tmux, "send-keys", "-t", session, "hello from irssi", "Enter"])
        assert bob.until("message", text="hello from irssi")["from"] == "ircuser"
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def test_irssi_in_tmux_shows_each_line_once_through_two_server_restarts(tmp_path):
    import os
    import shutil
    import socket
    import subprocess
    import time

    if not (shutil.which("irssi") and shutil.which("tmux")):
        pytest.skip("needs irssi and tmux (python tests/prepare.py installs them)")
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    db = tmp_path / "restarts.db"

    def start():
        srv = launch(db, "--port", str(ports[0]), "--irc-port", str(ports[1]), "--rate", "0")
        srv.proc.stdout.readline()  # irc listening on ...
        return srv

    def say(text: str) -> None:
        bob = connect(ports[0], "bob")
        bob.send(type="send", room="general", text=text, ref="s")
        bob.until("message", ref="s")
        bob.send(type="bye")
        bob.closed()

    srv = start()
    say("said before irssi came")
    home = tmp_path / "home"
    (home / ".irssi").mkdir(parents=True)
    # irssi as it comes (show_server_time off), reconnecting after 3 s, in #general
    (home / ".irssi" / "config").write_text(f"""
servers = ( {{ address = "127.0.0.1"; chatnet = "lab"; port = "{ports[1]}";
               use_tls = "no"; autoconnect = "yes"; }} );
chatnets = {{ lab = {{ type = "IRC"; }}; }};
channels = ( {{ name = "#general"; chatnet = "lab"; autojoin = "yes"; }} );
settings = {{ core = {{ nick = "ada"; user_name = "ada"; real_name = "Ada";
                       server_reconnect_time = "3"; }}; }};
""")
    session = f"lanchat{os.getpid()}r"
    tmux = ["tmux", "-L", session]

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", session],
                              capture_output=True, text=True).stdout

    def until(check, what: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while not check(shown := screen()):
            assert time.monotonic() < deadline, f"irssi never showed {what}:\n{shown}"
            time.sleep(0.1)  # polling the screen, each look bounded by the deadline
        return shown

    subprocess.run([*tmux, "new-session", "-d", "-s", session, "-x", "160", "-y", "60",
                    f"HOME={home} TERM=xterm irssi --home={home}/.irssi"], check=True)
    try:
        def in_general(shown: str) -> bool:
            if "2:lab/#general" in shown:
                return True
            if "Act: 2" in shown:  # joined: show its window
                subprocess.run([*tmux, "send-keys", "-t", session, "/window 2", "Enter"])
            return False

        until(in_general, "the #general window")
        until(lambda s: "said before irssi came" in s, "the history on joining")
        for n in (1, 2):
            joins = screen().count("has joined #general")
            assert srv.stop() == 0
            srv = start()
            until(lambda s, j=joins: s.count("has joined #general") > j, f"rejoin {n}")
            say(f"said after restart {n}")
            until(lambda s, n=n: f"said after restart {n}" in s, f"line {n}")
        shown = screen()
        for text in ("said before irssi came", "said after restart 1",
                     "said after restart 2"):
            assert shown.count(text) == 1, shown
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        srv.stop()


# ---------------------------------------------------------------- IRCv3 and more

MODERN = "server-time message-tags echo-message batch labeled-response draft/chathistory"


def batch_lines(irc: IrcWire, kind: str, *params: str) -> tuple[list[str], list[str]]:
    """The lines of the next batch of ``kind``: (its BATCH + line, the lines in it)."""
    start = irc.until("BATCH", timeout=30)
    tags, _, _, args = split_line(start[0])
    assert args[1:] == [kind, *params], start
    ident = args[0][1:]
    inside = []
    while True:
        line = irc.until_any()
        tags, _, command, args = split_line(line)
        if command == "BATCH" and args == [f"-{ident}"]:
            return start, inside
        assert tags.get("batch") == ident, line
        inside.append(line)


def test_labeled_responses_acks_and_batches(irc_server):
    irc = IrcWire(irc_server.irc_port)
    irc.register("ada", "batch labeled-response echo-message")
    irc.send("@label=p1 PING here")
    pong = irc.until("PONG")
    assert split_line(pong[0])[0] == {"label": "p1"} and pong[-1] == "here"
    irc.send("@label=p2 PONG late")  # answers nothing: an ACK says so
    ack = irc.until("ACK")
    assert split_line(ack[0])[0] == {"label": "p2"}
    # several lines: one labeled batch, with the door's own answers and the hub's
    irc.send("@label=j1 JOIN #general,#no@such,nohash")
    start, inside = batch_lines(irc, "labeled-response")
    assert split_line(start[0])[0]["label"] == "j1"
    lines = [split_line(line) for line in inside]
    assert [(cmd, args[1] if cmd == "403" else "") for _, _, cmd, args in lines] == [
        ("403", "nohash"), ("JOIN", ""), ("353", ""), ("366", ""), ("403", "#no@such")]
    irc.send("@label=m1 PRIVMSG #general :labeled hello")  # echo-message: the echo
    echo = irc.until("PRIVMSG", "#general")
    assert split_line(echo[0])[0]["label"] == "m1" and echo[-1] == "labeled hello"
    irc.send("@label=x1 FROBNICATE")
    unknown = irc.until("421")
    assert split_line(unknown[0])[0] == {"label": "x1"}


def test_history_on_join_comes_in_a_chathistory_batch(irc_server):
    bob = connect(irc_server.port, "bob")
    for n in range(3):
        bob.send(type="send", room="general", text=f"earlier {n}", ref=str(n))
        bob.until("message", ref=str(n))
    irc = IrcWire(irc_server.irc_port)
    irc.register("ada", "server-time batch message-tags")
    irc.send("JOIN #general")
    irc.until("366", "ada", "#general")
    _, inside = batch_lines(irc, "chathistory", "#general")
    texts = [split_line(line)[3][-1] for line in inside]
    assert texts == ["earlier 0", "earlier 1", "earlier 2"]
    assert all("time=" in line and "msgid=" in line for line in inside)
    bob.send(type="send", room="general", text="live now")
    live = irc.until("PRIVMSG", "#general")
    assert live[-1] == "live now" and "batch=" not in live[0]


def test_chathistory_reads_the_store_by_msgid_and_time(irc_server):
    bob = connect(irc_server.port, "bob")
    sent = []
    for n in range(10):
        bob.send(type="send", room="general", text=f"m{n}", ref=str(n))
        sent.append(bob.until("message", ref=str(n)))
        time.sleep(0.003)  # distinct millisecond stamps, for the timestamp bounds
    irc = IrcWire(irc_server.irc_port)
    irc.register("ada", MODERN)
    irc.send("JOIN #general")
    irc.until("366", "ada", "#general")
    assert not any(" BATCH " in line for line in irc.seen)  # it asks: nothing unasked

    def ask(line: str) -> list[str]:
        irc.send(line)
        _, inside = batch_lines(irc, "chathistory", "#general")
        return [split_line(text)[3][-1] for text in inside]

    ids = [m["id"] for m in sent]
    stamp = [irc_time(m["ts"]) for m in sent]
    texts = [f"m{n}" for n in range(10)]
    assert ask("CHATHISTORY LATEST #general * 3") == texts[-3:]
    assert ask(f"CHATHISTORY LATEST #general msgid={ids[6]} 50") == texts[7:]
    assert ask(f"CHATHISTORY BEFORE #general msgid={ids[4]} 2") == texts[2:4]
    assert ask(f"CHATHISTORY AFTER #general msgid={ids[4]} 2") == texts[5:7]
    assert ask(f"CHATHISTORY AROUND #general msgid={ids[5]} 3") == texts[4:7]
    assert ask(f"CHATHISTORY BETWEEN #general msgid={ids[1]} msgid={ids[8]} 3") == \
        texts[2:5]
    assert ask(f"CHATHISTORY BETWEEN #general msgid={ids[8]} msgid={ids[1]} 3") == \
        texts[5:8]
    assert ask(f"CHATHISTORY BEFORE #general timestamp={stamp[6]} 2") == texts[4:6]
    assert ask(f"CHATHISTORY AFTER #general timestamp={stamp[3]} 3") == texts[4:7]
    irc.send("CHATHISTORY LATEST #elsewhere * 10")  # not a member
    assert irc.until("FAIL")[2:4] == ["CHATHISTORY", "INVALID_TARGET"]
    irc.send("CHATHISTORY LATEST bob * 10")  # direct messages are not replayed
    assert irc.until("FAIL")[2:4] == ["CHATHISTORY", "INVALID_TARGET"]
    irc.send("CHATHISTORY BEFORE #general msgid=abc 10")
    assert irc.until("FAIL")[2:4] == ["CHATHISTORY", "INVALID_PARAMS"]
    irc.send("PING still-here")
    irc.until("PONG")


def test_sasl_plain_signs_in_to_a_nickname_account(irc_server):
    owner = connect(irc_server.port, "ada")
    owner.send(type="register", password="correct horse", ref="r")
    owner.until("registered")
    owner.send(type="bye")

    def sasl(password: str) -> IrcWire:
        irc = IrcWire(irc_server.irc_port)
        irc.send("CAP LS 302")
        assert "sasl=PLAIN" in irc.until("CAP", "*", "LS")[-1].split()
        irc.send("NICK ada", "USER ada 0 * :Ada", "CAP REQ :sasl", "AUTHENTICATE PLAIN")
        irc.until("AUTHENTICATE", "+")
        irc.send("AUTHENTICATE " + base64.b64encode(f"ada\0ada\0{password}".encode())
                 .decode())
        return irc

    irc = sasl("correct horse")
    assert irc.until("900", "ada")[-1] == "You are now logged in as ada"
    irc.until("903", "ada")
    assert not any(" 001 " in line for line in irc.seen)  # the welcome waits for END
    irc.send("CAP END")
    irc.until("001", "ada")
    irc.send("WHOIS ada")
    assert irc.until("330", "ada", "ada", "ada")[-1] == "is logged in as"
    irc.until("318")
    irc.send("QUIT :bye")
    irc.until("ERROR")

    wrong = sasl("wrong horse")
    assert "failed" in wrong.until("904")[-1]
    wrong.until("ERROR")  # a wrong password closes, as it does for every door

    plain = IrcWire(irc_server.irc_port)  # the account's nickname without its password
    plain.send("NICK ada", "USER ada 0 * :Ada")
    assert "registered" in plain.until("433")[-1]


def test_client_tags_tagmsg_and_typing_cross_the_doors(irc_server):
    tagger = IrcWire(irc_server.irc_port)
    tagger.register("ada", "message-tags echo-message")
    tagger.send("JOIN #general")
    tagger.until("366", "ada", "#general")
    friend = joined(irc_server.irc_port, "cy", "message-tags")
    old = joined(irc_server.irc_port, "dee")  # no tags negotiated
    bob = connect(irc_server.port, "bob")
    tagger.send("@+draft/reply=7;+draft/react=\\s:-) PRIVMSG #general :see above")
    relayed = friend.until("PRIVMSG", "#general")
    tags = split_line(relayed[0])[0]
    assert tags["+draft/reply"] == "7" and tags["+draft/react"] == " :-)"
    assert "msgid" in tags
    assert old.until("PRIVMSG", "#general")[0].startswith(":ada!")  # no tags at all
    frame = bob.until("message", text="see above")
    assert frame["tags"] == {"+draft/reply": "7", "+draft/react": " :-)"}
    tagger.send("@+draft/react=:+1: TAGMSG #general")
    got = friend.until("TAGMSG", "#general")
    assert split_line(got[0])[0]["+draft/react"] == ":+1:"
    echo = tagger.until("TAGMSG", "#general")
    assert split_line(echo[0])[0]["msgid"] == split_line(got[0])[0]["msgid"]
    assert not any(f["type"] == "tagmsg" for f in bob.barrier())  # IRC's own
    old.send("PING sync")
    old.until("PONG")
    assert not any(split_line(line)[2] == "TAGMSG" for line in old.seen)
    tagger.send("@+typing=active TAGMSG #general")
    assert bob.until("typing")["nick"] == "ada"  # typing reaches every door


def test_whois_ison_notice_and_quit(irc_server):
    irc = joined(irc_server.irc_port, "ada", "echo-message")
    bob = connect(irc_server.port, "bob")
    irc.send("WHOIS bob")
    assert irc.until("311", "ada", "bob")[2:4] == ["ada", "bob"]
    assert irc.until("319", "ada", "bob")[-1] == "#general"
    irc.until("318", "ada", "bob")
    irc.send("WHOIS nobody")
    irc.until("401", "ada", "nobody")
    irc.until("318", "ada", "nobody")
    irc.send("ISON bob nobody ada")
    assert irc.until("303", "ada")[-1] == "bob ada"
    irc.send("NOTICE #general :the bell rang")
    assert irc.until("NOTICE", "#general")[-1] == "the bell rang"  # echoed as a NOTICE
    got = bob.until("message", text="the bell rang")
    assert got["notice"] is True and "action" not in got
    bob.send(type="history", room="general", ref="h")
    replayed = []
    while (frame := bob.next())["type"] != "history_end":
        replayed.append(frame)
    assert [f.get("notice") for f in replayed] == [True]  # stored as a notice
    bob.send(type="bye", reason="lunch")
    quit_line = irc.until("QUIT")
    assert quit_line[1].startswith("bob!") and quit_line[-1] == "lunch"


def test_a_failed_commit_is_taken_back_from_irc_output_too(tmp_path, monkeypatch):
    from chat.config import ServerConfig
    from chat.dispatch import receive
    from chat.errors import StoreError
    from chat.hub import Hub
    from chat.irc import IrcCodec
    from chat.store import Store

    hub = Hub(ServerConfig(rate=0), Store(str(tmp_path / "t.db")))
    peers = []
    for nick, caps in (("ada", ()), ("cy", ("echo-message", "message-tags"))):
        peer = hub.open(("127.0.0.1", len(peers)))
        peer.codec = IrcCodec("lanchat")
        peer.codec.enable(frozenset(caps))
        receive(hub, peer, {"type": "hello", "nick": nick, "proto": 1})
        peers.append(peer)
    hub.commit()
    for peer in peers:
        peer.out.clear()
    ada, cy = peers
    receive(hub, ada, {"type": "send", "room": "general", "text": "kept"})
    hub.commit()
    receive(hub, cy, {"type": "send", "room": "general", "text": "lost", "ref": "c"})
    receive(hub, cy, {"type": "send", "room": "general", "text": "lost too\nand more"})
    receive(hub, ada, {"type": "ping", "token": "p"})

    def fail():
        raise StoreError("the disk is full", write=True)
    monkeypatch.setattr(hub.store, "commit", fail)
    assert not hub.commit()
    seen_by_ada = bytes(ada.out).decode()
    assert "kept" in seen_by_ada and "lost" not in seen_by_ada and "PONG" in seen_by_ada
    seen_by_cy = bytes(cy.out).decode()
    assert "lost" not in seen_by_cy and "could not store your message" in seen_by_cy


def test_kick_ban_and_shutdown_as_irc_users_see_them(tmp_path):
    import subprocess

    from tests.test_console import Answers

    srv = launch(tmp_path / "k.db", "--irc-port", "0", "--rate", "0", "--console",
                 stdin=subprocess.PIPE)
    srv.irc_port = int(srv.proc.stdout.readline().rsplit(":", 1)[1])
    console = Answers(srv.proc)
    ada = joined(srv.irc_port, "ada")
    cy = joined(srv.irc_port, "cy")
    dee = joined(srv.irc_port, "dee")
    console.command("kick ada shouting")
    kicked = cy.until("KICK", "#general", "ada")
    assert kicked[-1] == "shouting"
    assert ada.until("ERROR")[-1].endswith("shouting")
    ada.closed()
    assert [line for line in ada.lines if line.startswith("ERROR")] == []  # said once
    console.command("ban nick cy 1h spam")
    assert cy.until("ERROR")[-1].endswith("spam")
    assert dee.until("QUIT")[1].startswith("cy!")
    again = IrcWire(srv.irc_port)
    again.send("NICK cy", "USER cy 0 * :cy")
    assert "banned" in again.until("465", "*", "cy")[-1]  # ERR_YOUREBANNEDCREEP, then ERROR
    again.until("ERROR")
    console.command("stop")
    assert "shutting down" in dee.until("NOTICE", "*")[-1]
    dee.until("ERROR")
    assert srv.proc.wait(10) == 0


def test_away_is_seen_by_others_on_every_door(irc_server):
    ada = joined(irc_server.irc_port, "ada")
    cy = joined(irc_server.irc_port, "cy")
    bob = connect(irc_server.port, "bob")
    ada.send("AWAY :at lunch")
    ada.until("306", "ada")
    cy.send("PRIVMSG ada :are you there?")
    assert cy.until("301", "cy", "ada")[-1] == "at lunch"  # RPL_AWAY to the sender
    cy.send("WHOIS ada")
    assert cy.until("301", "cy", "ada")[-1] == "at lunch"
    cy.until("318", "cy", "ada")
    bob.send(type="send", to="ada", text="ping?", ref="d")
    assert bob.until("message", ref="d")["away"] == "at lunch"
    bob.send(type="whois", nick="ada", ref="w")
    assert bob.until("whois", ref="w")["away"] == "at lunch"
    cy.send("USERHOST ada cy nobody")
    assert cy.until("302", "cy")[-1] == "ada=-ada@lanchat cy=+cy@lanchat"
    ada.send("AWAY")
    ada.until("305", "ada")
    bob.send(type="send", to="ada", text="back?", ref="e")
    assert "away" not in bob.until("message", ref="e")
    bob.send(type="away", text="x" * 201)
    bob.error("text_too_long")
    bob.send(type="away", text="gone\x07")
    bob.error("bad_text")
    bob.send(type="away", text="in a meeting", ref="a")
    assert bob.until("away", ref="a") == {"type": "away", "nick": "bob", "text": "in a meeting",
                                           "ref": "a"}
    ada.send("PRIVMSG bob :hello")
    assert ada.until("301", "ada", "bob")[-1] == "in a meeting"


def test_chathistory_of_direct_messages_after_sasl(irc_server):
    owner = connect(irc_server.port, "ada", rooms=[])
    owner.send(type="register", password="correct horse", ref="r")
    owner.until("registered")
    owner.send(type="bye")
    owner.closed()
    bob = connect(irc_server.port, "bob")
    irc = IrcWire(irc_server.irc_port)
    irc.send("CAP LS 302", "NICK ada", "USER ada 0 * :Ada",
             f"CAP REQ :sasl {MODERN}", "AUTHENTICATE PLAIN")
    irc.until("AUTHENTICATE", "+")
    irc.send("AUTHENTICATE " + base64.b64encode(b"ada\0ada\0correct horse").decode())
    irc.until("903", "ada")
    irc.send("CAP END")
    irc.until("001", "ada")
    bob.send(type="send", to="ada", text="psst", ref="1")
    bob.until("message", ref="1")
    irc.until("PRIVMSG", "ada")
    irc.send("PRIVMSG bob :what?")
    irc.until("PRIVMSG", "bob")  # the echo
    irc.send("CHATHISTORY LATEST bob * 10")
    _, inside = batch_lines(irc, "chathistory", "bob")
    lines = [split_line(line) for line in inside]
    assert [(src.split("!")[0], args[0], args[1]) for _, src, _, args in lines] == [
        ("bob", "ada", "psst"), ("ada", "bob", "what?")]
    plain = IrcWire(irc_server.irc_port)
    plain.register("cy", MODERN)
    plain.send("CHATHISTORY LATEST bob * 10")  # no account: no direct history
    assert plain.until("FAIL")[2:4] == ["CHATHISTORY", "INVALID_TARGET"]


def test_a_bots_burst_is_slowed_not_dropped(start_server):
    """Past its rate an IRC client's lines wait their turn (its socket is not read
    meanwhile) instead of being refused: a bot's burst of 40 arrives whole, in order,
    with no "sending too fast" notice; a JSON client is still refused (its contract)."""
    srv = start_server("--irc-port", "0", "--rate", "5", "--burst", "20")
    srv.irc_port = int(srv.proc.stdout.readline().rsplit(":", 1)[1])
    watcher = connect(srv.port, "watcher")
    bot = joined(srv.irc_port, "bot")
    bot.send(*[f"PRIVMSG #general :answer {i}" for i in range(40)], "PING :done")
    got = [watcher.until("message", timeout=60)["text"] for _ in range(40)]
    assert got == [f"answer {i}" for i in range(40)]
    bot.until("PONG", timeout=60)
    assert not [line for line in bot.seen + bot.lines if split_line(line)[2] == "NOTICE"]
    hasty = connect(srv.port, "hasty")
    for i in range(25):
        hasty.send(type="send", room="general", text=f"json {i}", ref=str(i))
    answers = [hasty.until("error" if i >= 20 else "message", ref=str(i)) for i in range(25)]
    assert {a["code"] for a in answers[20:]} == {"rate_limited"}


def test_a_turn_reads_a_bounded_number_of_irc_lines(tmp_path):
    """Lines the door answers itself (MODE, CAP, unknown commands, empty lines) make
    no request: each next_event reads at most LINES_PER_CALL of them and says there
    is more, so a flood of them is worked off a bounded piece per turn."""
    from chat.config import ServerConfig
    from chat.hub import Hub
    from chat.irc import LINES_PER_CALL, IrcCodec, IrcDoor
    from chat.protocol import NEED_DATA
    from chat.store import Store

    hub = Hub(ServerConfig(rate=0), Store(str(tmp_path / "i.db")))
    peer = hub.open(("127.0.0.1", 1))
    peer.codec = IrcCodec("lanchat")
    peer.decoder = IrcDoor(peer, peer.codec, say=lambda data: hub.to_peer(peer, data))
    flood = ["MODE x", "CAP LS", "FROB", ""] * 1250
    peer.decoder.receive_data("".join(f"{line}\r\n" for line in flood).encode())
    calls = 0
    while peer.decoder.has_frames:
        answered = bytes(peer.out).count(b"\r\n")
        assert peer.decoder.next_event() is NEED_DATA
        assert bytes(peer.out).count(b"\r\n") - answered <= 2 * LINES_PER_CALL
        calls += 1
        assert calls < 10_000
    assert calls >= len(flood) // LINES_PER_CALL
    hub.store.close()


def replayed(irc: IrcWire, nick: str) -> list[tuple[str, str]]:
    """JOIN #general, then the (time tag, text) of each PRIVMSG its replay had (a PING
    after it: its PONG comes after the replay)."""
    irc.send("JOIN #general", "PING :replayed")
    irc.until("PONG")
    out = []
    for line in irc.seen:
        tags, _source, cmd, args = split_line(line)
        if cmd == "PRIVMSG" and args[0] == "#general":
            out.append((tags.get("time", ""), args[-1]))
    irc.seen.clear()
    return out


def test_a_join_replays_only_what_the_nickname_has_not_seen_across_restarts(tmp_path):
    db = tmp_path / "seen.db"
    args = ("--irc-port", "0", "--rate", "0")
    started = []

    def start():
        srv = launch(db, *args)
        srv.irc_port = int(srv.proc.stdout.readline().rsplit(":", 1)[1])
        started.append(srv)
        return srv

    try:
        run_seen_scenario(start)
    finally:
        codes = [srv.stop() for srv in started]
    assert codes == [0] * len(started)  # each exits cleanly on SIGTERM


def run_seen_scenario(start) -> None:
    srv = start()
    bob = connect(srv.port, "bob")
    sent = {}
    for n in range(3):
        bob.send(type="send", room="general", text=f"before {n}", ref=str(n))
        sent[f"before {n}"] = bob.until("message", ref=str(n))["ts"]
    ada = IrcWire(srv.irc_port)
    ada.register("ada", "server-time")
    first = replayed(ada, "ada")  # first time here: the latest, with their own times
    assert [t for _, t in first] == ["before 0", "before 1", "before 2"]
    assert all(when == irc_time(sent[text]) for when, text in first)
    bob.send(type="send", room="general", text="live", ref="live")
    bob.until("message", ref="live")
    ada.until("PRIVMSG", "#general")
    ada.send("QUIT :bye")
    ada.until("ERROR")
    bob.send(type="send", room="general", text="while ada was away", ref="away")
    away_ts = bob.until("message", ref="away")["ts"]
    ada = IrcWire(srv.irc_port)
    ada.register("ada", "server-time")
    assert replayed(ada, "ada") == [(irc_time(away_ts), "while ada was away")]
    for _ in range(2):  # the server restarts under the client: nothing is shown twice
        assert srv.stop() == 0
        srv = start()
        ada = IrcWire(srv.irc_port)
        ada.register("ada", "server-time")
        assert replayed(ada, "ada") == []
    # another nickname, new to the room, gets the latest as before
    eve = IrcWire(srv.irc_port)
    eve.register("eve", "server-time")
    assert [t for _, t in replayed(eve, "eve")][-2:] == ["live", "while ada was away"]
    # and a JSON client can ask for the same with `since`, or for none
    carol = connect(srv.port, "carol")
    carol.send(type="join", room="lab", ref="j")
    carol.until("history_end", ref="j")
    carol.send(type="send", room="lab", text="in lab", ref="s")
    lab_id = carol.until("message", ref="s")["id"]
    carol.send(type="send", room="lab", text="later in lab", ref="t")
    carol.until("message", ref="t")
    dave = connect(srv.port, "dave")
    dave.send(type="join", room="lab", since=lab_id, ref="d")
    replay = []
    while (frame := dave.next())["type"] != "history_end":
        if frame["type"] == "message":
            replay.append(frame["text"])
    assert replay == ["later in lab"]
    dave.send(type="part", room="lab", ref="p")
    dave.until("left", ref="p")
    dave.send(type="join", room="lab", replay=False, ref="q")
    while (frame := dave.next())["type"] != "history_end":
        assert frame["type"] != "message"
    dave.send(type="join", room="x", since=-1, ref="bad")
    assert dave.until("error", ref="bad")["code"] == "bad_field"
