"""The IRC gateway over real sockets, in rooms shared with JSON-protocol clients."""

from __future__ import annotations

import pytest

from tests.conftest import launch
from tests.ircwire import IrcWire
from tests.wire import connect


@pytest.fixture
def irc_server(tmp_path):
    srv = launch(tmp_path / "irc.db", "--irc-port", "0", "--rate", "0", "--motd", "Hi IRC")
    line = srv.proc.stdout.readline()
    assert line.startswith("irc listening on 127.0.0.1:")
    srv.irc_port = int(line.rsplit(":", 1)[1])
    yield srv
    assert srv.stop() == 0


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
    assert irc.until("353", "ada", "=", "#general")[-1] == "ada"
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
    assert sorted(irc.until("353", "ada", "=", "#general")[-1].split()) == ["ada", "bob"]
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
    del bob


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
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 1 and "--irc-tls-port needs TLS" in result.stderr


def test_a_broadcast_is_written_once_per_set_of_capabilities():
    from chat.irc import IrcCodec
    from chat.model import Peer, Room, TokenBucket

    calls = []

    class Counting(IrcCodec):
        def wire(self, lines: bytes) -> bytes:
            calls.append(self.caps)
            return super().wire(lines)

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
    room.pending.append((b'{"type":"message","id":7,"ts":1,"room":"general","from":"x",'
                         b'"text":"hi"}\n', None, None))
    room.deliver()
    assert sorted(map(sorted, calls)) == [[], ["server-time"]]  # twice, not five times
    assert bytes(members[0].out) == bytes(members[4].out)
    assert bytes(members[2].out).startswith(b"@time=")


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


def test_irssi_in_tmux_joins_sees_history_and_talks(irc_server, tmp_path):
    import os
    import shutil
    import subprocess
    import time

    if not (shutil.which("irssi") and shutil.which("tmux")):
        pytest.skip("needs irssi and tmux (python tests/prepare.py installs them)")
    bob = connect(irc_server.port, "bob")
    bob.send(type="send", room="general", text="said before irssi came", ref="h")
    bob.until("message", ref="h")
    home = tmp_path / "home"
    home.mkdir()
    session = f"lanchat{os.getpid()}"
    tmux = ["tmux", "-L", session]  # a tmux server of the test's own

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", session],
                              capture_output=True, text=True).stdout

    def until(text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in screen():
            assert time.monotonic() < deadline, f"irssi never showed {text!r}:\n{screen()}"
            time.sleep(0.1)  # polling the screen, each look bounded by the deadline

    subprocess.run([*tmux, "new-session", "-d", "-s", session, "-x", "160", "-y", "40",
                    f"HOME={home} TERM=xterm irssi --home={home}/.irssi -n ircuser "
                    f"-c 127.0.0.1 -p {irc_server.irc_port}"], check=True)
    try:
        until("Welcome to")
        subprocess.run([*tmux, "send-keys", "-t", session, "/join #general", "Enter"])
        until("has joined #general")
        until("said before irssi came")  # the history, shown on joining
        bob.send(type="send", room="general", text="hello irssi user")
        until("hello irssi user")
        subprocess.run([*tmux, "send-keys", "-t", session, "hello from irssi", "Enter"])
        assert bob.until("message", text="hello from irssi")["from"] == "ircuser"
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
