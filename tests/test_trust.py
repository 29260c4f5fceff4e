"""Trust on an open network: TLS, nickname accounts, bans, per-address limits,
slowloris (issue 5), over real sockets."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from chat import gate
from chat.accounts import (
    AUTH_BURST,
    AUTH_RATE,
    CONNECTION_AUTH_BURST,
    ROUNDS,
    STEPS_PER_PASS,
    Hashing,
    make_account,
)
from chat.protocol import name_key
from chat.tls import KnownHosts, file_fingerprint
from tests.conftest import MAIN, ROOT
from tests.inproc import Harness
from tests.wire import Wire


def tls_wire(port: int, cafile: str | None = None) -> Wire:
    return Wire(port, tls=True, cafile=cafile)


@pytest.fixture
def harness(tmp_path):
    made = []

    def make(**settings) -> Harness:
        h = Harness(tmp_path / "chat.db", **settings)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


# ---------------------------------------------------------------- TLS

def test_tls_server_makes_a_certificate_once_and_chats_over_tls(start_server, tmp_path):
    server = start_server("--tls")
    cert = tmp_path / "tls" / "cert.pem"
    assert cert.exists() and (tmp_path / "tls" / "key.pem").stat().st_mode & 0o077 == 0
    alice, bob = tls_wire(server.port, str(cert)), tls_wire(server.port, str(cert))
    alice.hello("alice")
    bob.hello("bob")
    alice.barrier()
    bob.send(type="send", room="general", text="secret plans", ref="s1")
    assert alice.until("message")["text"] == "secret plans"
    assert bob.until("message")["ref"] == "s1"
    first = file_fingerprint(str(cert))
    assert server.stop() == 0
    again = start_server("--tls")  # same data directory: the same certificate
    assert file_fingerprint(str(cert)) == first
    tls_wire(again.port, str(cert)).hello("carol")


def test_plain_client_on_tls_server_gets_a_clear_error_not_a_hang(start_server):
    server = start_server("--tls")
    plain = Wire(server.port)
    plain.send(type="hello", nick="alice", proto=1)
    frames = plain.closed(timeout=30)  # answered and closed, not left to hello_timeout
    assert [f["code"] for f in frames] == ["tls_required"]
    assert "TLS" in frames[0]["message"]


def test_tls_client_on_plain_server_fails_fast_with_a_clear_error(harness):
    h = harness()
    client = h.client("alice", tls=True)
    closed = h.wait_event(client, "local.closed", timeout=30)
    assert "TLS" in closed["error"] and not client.ready
    assert h.hub.users == {}


def test_tls_client_pins_on_first_use_and_refuses_a_changed_certificate(harness, tmp_path):
    h = harness(tls=True)
    first = h.client("alice", tls=True)
    tls = h.wait_event(first, "local.tls")
    assert tls["status"] == "new" and tls["fingerprint"] == h.server.fingerprint
    h.ready(first)
    pins = KnownHosts(h.known_hosts)
    assert pins.get("127.0.0.1", h.port) == h.server.fingerprint
    again = h.client("bob", tls=True)
    assert h.wait_event(again, "local.tls")["status"] == "known"
    h.ready(again)
    # The server comes back with another certificate on the same address.
    pins.pin("127.0.0.1", h.port, "0000 " * 15 + "0000")
    third = h.client("carol", tls=True)
    closed = h.wait_event(third, "local.closed")
    assert closed["fatal"] and "CERTIFICATE HAS CHANGED" in closed["error"]
    assert h.server.fingerprint in closed["error"] and h.known_hosts in closed["error"]
    assert "carol" not in [p.nick for p in h.hub.users.values()]


def test_tls_client_with_a_ca_file_verifies_and_refuses_other_servers(harness, tmp_path):
    h = harness(tls=True)
    cert = str(tmp_path / "tls" / "cert.pem")
    good = h.client("alice", cafile=cert)
    assert h.wait_event(good, "local.tls")["status"] == "verified"
    h.ready(good)
    other = tmp_path / "other"
    from chat.tls import self_signed
    other_cert, _ = self_signed(str(other))
    bad = h.client("bob", cafile=other_cert)
    closed = h.wait_event(bad, "local.closed")
    assert closed["fatal"] and "not trusted" in closed["error"]


def test_stalled_handshakes_are_timed_out_and_delay_nobody(start_server):
    server = start_server("--tls", "--tls-timeout", "3")
    stalled = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    for sock in stalled[:10]:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, no more
    alice = tls_wire(server.port)
    alice.hello("alice")
    alice.send(type="send", room="general", text="hi", ref="x")
    assert alice.until("message")["ref"] == "x"  # served while they stall
    for sock in stalled:  # closed by the server once --tls-timeout passed
        sock.settimeout(30)
        try:
            while sock.recv(4096):
                pass
        except ConnectionResetError:
            pass
        sock.close()


def test_bad_tls_options_are_one_line_errors(tmp_path):
    missing = tmp_path / "nope.pem"
    for args, words in [(["--tls-cert", str(missing), "--tls-key", str(missing)],
                         "cannot read"),
                        (["--tls-cert", str(missing)], "go together"),
                        (["--tls", "--tls-cert", "a", "--tls-key", "b"], "--tls")]:
        proc = subprocess.run([sys.executable, MAIN, "--server", "--headless", "--port",
                               "0", "--db", str(tmp_path / "c.db"), *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert proc.returncode != 0 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr


# ---------------------------------------------------------------- accounts

def test_register_then_the_nickname_needs_its_password(server):
    alice = Wire(server.port)
    alice.hello("alice")
    alice.send(type="register", password="short", ref="r0")
    assert alice.error("bad_password")["ref"] == "r0"
    alice.send(type="register", password="correct horse", ref="r1")
    assert alice.next() == {"type": "registered", "nick": "alice", "ref": "r1"}
    alice.send(type="bye")
    alice.closed()

    thief = Wire(server.port)
    thief.send(type="hello", nick="Alice", proto=1)
    thief.error("nick_registered")  # the connection stays open: choose another nick
    thief.hello("mallory")
    thief.send(type="nick", nick="ALICE", ref="n1")
    assert thief.error("nick_registered")["ref"] == "n1"
    thief.send(type="nick", nick="alice", nick_password="guess", ref="n2")
    assert thief.error("auth_failed")["ref"] == "n2"
    thief.closed()

    owner = Wire(server.port)
    owner.send(type="hello", nick="alice", proto=1, nick_password="wrong password")
    owner.error("auth_failed")
    owner.closed()
    owner = Wire(server.port)
    owner.hello("alice", nick_password="correct horse")


def test_account_survives_restart_and_is_stored_hashed(start_server, tmp_path):
    server = start_server()
    alice = Wire(server.port)
    alice.hello("alice")
    alice.send(type="register", password="correct horse")
    assert alice.next()["type"] == "registered"
    assert server.stop() == 0
    import sqlite3
    db = sqlite3.connect(tmp_path / "chat.db")
    (salt, digest, params), = db.execute("SELECT salt, hash, params FROM accounts")
    db.close()
    raw = (tmp_path / "chat.db").read_bytes() + (tmp_path / "chat.db-wal").read_bytes() \
        if (tmp_path / "chat.db-wal").exists() else (tmp_path / "chat.db").read_bytes()
    assert b"correct horse" not in raw
    assert len(salt) == 16 and len(digest) == 32 and params == f"scrypt-chain:256:8:1:{ROUNDS}"
    again = start_server()
    w = Wire(again.port)
    w.send(type="hello", nick="alice", proto=1)
    w.error("nick_registered")
    w.hello("alice", nick_password="correct horse")


def test_unregister_frees_the_nickname_and_old_clients_are_unaffected(server):
    alice = Wire(server.port)
    alice.hello("alice")
    alice.send(type="unregister", ref="u0")
    assert alice.error("no_account")["ref"] == "u0"
    alice.send(type="register", password="correct horse")
    assert alice.next()["type"] == "registered"
    alice.send(type="register", password="better horse", ref="c")  # a new password
    assert alice.next() == {"type": "registered", "nick": "alice", "ref": "c"}
    alice.send(type="unregister", ref="u1")
    assert alice.next() == {"type": "unregistered", "nick": "alice", "ref": "u1"}
    alice.send(type="bye")
    alice.closed()
    # A client that knows nothing of accounts: same frames, same answers as before.
    plain = Wire(server.port)
    frames = plain.hello("alice")
    assert frames[0]["type"] == "welcome"


def test_register_needs_hello_first(server):
    w = Wire(server.port)
    w.send(type="register", password="correct horse")
    w.error("not_registered")


def test_password_guessing_is_rate_limited_server_wide(harness):
    h = harness()
    owner = h.client("alice")
    h.ready(owner)
    owner.register("correct horse")
    h.wait_event(owner, "registered")
    owner.bye()
    h.until(lambda: "alice" not in [p.nick for p in h.hub.users.values()])
    start = time.monotonic()
    guessers = [h.client("alice", nick_password=f"guess {i}") for i in range(30)]
    h.until(lambda: all(any(e["type"] == "error" for e in h.events(g)) for g in guessers))
    elapsed = time.monotonic() - start
    codes = [next(e["code"] for e in h.events(g) if e["type"] == "error") for g in guessers]
    assert codes.count("auth_failed") <= AUTH_BURST + AUTH_RATE * elapsed
    assert "rate_limited" in codes
    assert set(codes) == {"auth_failed", "rate_limited"}


@pytest.fixture
def counted_hashes(monkeypatch):
    """(hashes, per_pass): every password hash the server finished, and how many
    rounds of hashing each pass of a Harness server did."""
    hashes: list[int] = []
    rounds: list[int] = []
    per_pass: list[int] = []
    real_round = Hashing.step

    def counted_round(self):
        rounds.append(1)
        done = real_round(self)
        if done:
            hashes.append(1)
        return done
    monkeypatch.setattr(Hashing, "step", counted_round)

    def count(h: Harness) -> None:
        hashes.clear()  # from here on: not the accounts the test made itself
        real_step = h.server.step

        def counted_step(*args, **kwargs):
            before = len(rounds)
            result = real_step(*args, **kwargs)
            per_pass.append(len(rounds) - before)
            return result
        monkeypatch.setattr(h.server, "step", counted_step)
    return hashes, per_pass, count


def answered(socks: list[socket.socket], answers: dict, lines: int = 1):
    """A condition for ``Harness.until``: each socket has sent ``lines`` lines."""
    def check() -> bool:
        for sock in socks:
            try:
                answers[sock] = answers.get(sock, b"") + sock.recv(65536)
            except BlockingIOError:
                pass
        return all(answers.get(sock, b"").count(b"\n") >= lines for sock in socks)
    return check


def test_pipelined_password_checks_are_hashed_one_per_pass(harness, counted_hashes):
    h = harness()
    hashes, per_pass, count = counted_hashes
    nicks = [f"owner{i}" for i in range(CONNECTION_AUTH_BURST)]  # one connection's share
    for nick in nicks:
        h.hub.gate.store.put_account(make_account(name_key(nick), nick, "pass word", 0))
    h.hub.gate.store.commit()
    count(h)
    sock = socket.create_connection(("127.0.0.1", h.port))
    sock.sendall(b'{"type":"hello","proto":1,"nick":"visitor","rooms":[]}\n' + b"".join(
        b'{"type":"nick","nick":"%s","nick_password":"pass word"}\n' % n.encode()
        for n in nicks))
    sock.setblocking(False)
    answers: dict = {}
    h.until(answered([sock], answers, 1 + len(nicks)))
    sock.close()
    assert answers[sock].count(b'"renamed"') == len(nicks)
    assert len(hashes) == len(nicks)
    assert max(per_pass) == STEPS_PER_PASS  # the loop stalls one round, not three hashes


def test_a_hello_waiting_for_its_password_check_outlives_the_hello_timeout(harness,
                                                                         monkeypatch):
    """The server is the slow party while a hello waits its turn for a hash (a busy
    machine, a guessing flood): the hello timeout does not close it meanwhile."""
    h = harness(hello_timeout=0.3)
    h.hub.gate.store.put_account(make_account("alice", "alice", "correct horse", 0))
    h.hub.gate.store.commit()
    turns = {"open": False}  # while closed, the server has no hash to spare

    class Shut:  # the server-wide hash bucket, empty while the turns are closed
        def __init__(self, bucket):
            self.bucket = bucket

        def take(self, now):
            return turns["open"] and self.bucket.take(now)

        def spend(self, amount, now):
            self.bucket.spend(amount, now)
    monkeypatch.setattr(h.hub.gate, "auth_bucket", Shut(h.hub.gate.auth_bucket))
    sock = socket.create_connection(("127.0.0.1", h.port))
    sock.sendall(b'{"type":"hello","proto":1,"nick":"alice","rooms":[],'
                 b'"nick_password":"correct horse"}\n')
    sock.setblocking(False)
    waited_from = time.monotonic()
    h.until(lambda: time.monotonic() - waited_from > 1.0)  # three hello timeouts
    try:
        early = sock.recv(4096)  # b"": closed by the hello timeout
    except BlockingIOError:
        early = None  # open, nothing said yet: still waiting its turn
    assert early is None, early
    turns["open"] = True
    answers: dict = {}
    h.until(answered([sock], answers))
    sock.close()
    assert b'"welcome"' in answers[sock]


def test_a_password_check_takes_a_round_a_pass_and_others_are_served_between(harness):
    """A hash is a chain of short rounds, one a pass: a ping sent while alice's
    password is being checked is answered before her check is done."""
    h = harness()
    h.hub.gate.store.put_account(make_account("alice", "alice", "correct horse", 0))
    h.hub.gate.store.commit()
    bob = h.client("bob")
    h.ready(bob)
    alice = h.client("alice", nick_password="correct horse")
    h.until(lambda: h.hub.gate.job is not None)  # her hash is under way
    job = h.hub.gate.job
    bob.ping("between")
    h.wait_event(bob, "pong")
    assert h.hub.gate.job is job and not job.hashing.done  # rounds still to go
    h.ready(alice)
    assert h.hub.gate.job is None


def test_the_hash_is_a_chain_of_scrypt_rounds_and_older_hashes_still_check():
    import hashlib

    from chat.accounts import PARAMS, Account, verify
    account = make_account("alice", "alice", "correct horse", 0)
    assert account.params == PARAMS == f"scrypt-chain:256:8:1:{ROUNDS}"
    digest = b""
    for _ in range(ROUNDS):  # each round salted with the salt and the round before
        digest = hashlib.scrypt(b"correct horse", salt=account.salt + digest, n=256, r=8,
                                p=1, dklen=32)
    assert digest == account.hash
    assert verify(account, "correct horse") and not verify(account, "correct horse!")
    salt = b"s" * 16
    legacy = Account("bob", "bob", salt, hashlib.scrypt(
        b"correct horse", salt=salt, n=2 ** 14, r=8, p=1, maxmem=2 ** 25, dklen=32),
        "scrypt:16384:8:1", 0)
    assert verify(legacy, "correct horse") and not verify(legacy, "wrong horse")
    for params in ("bcrypt:1:2:3", "scrypt-chain:256:8:1:100000", "scrypt:x:8:1"):
        assert not verify(legacy._replace(params=params), "correct horse")


def test_an_account_of_the_older_hash_is_hashed_again_at_sign_in(harness, tmp_path):
    """Accounts made before the chain (one scrypt call of N=2**14, ~60 ms in one
    pass) are hashed again with today's parameters once their owner signs in."""
    import hashlib

    from chat.accounts import PARAMS, Account
    h = harness()
    salt = b"s" * 16
    legacy = Account("alice", "alice", salt, hashlib.scrypt(
        b"correct horse", salt=salt, n=2 ** 14, r=8, p=1, maxmem=2 ** 25, dklen=32),
        "scrypt:16384:8:1", 0)
    h.hub.gate.store.put_account(legacy)
    h.hub.gate.store.commit()
    alice = h.client("alice", nick_password="correct horse")
    h.ready(alice)
    h.until(lambda: h.hub.gate.store.account("alice").params == PARAMS)
    h.step()  # the pass's commit
    h.close()
    again = harness()
    upgraded = again.hub.gate.store.account("alice")
    assert upgraded.params == PARAMS and upgraded.salt != salt
    assert upgraded.created == legacy.created and upgraded.nick == "alice"
    wrong = again.client("alice", nick_password="wrong horse")
    again.wait_event(wrong, "error", code="auth_failed")
    right = again.client("alice", nick_password="correct horse")
    again.ready(right)


def test_a_slow_hash_is_charged_as_many(harness, monkeypatch):
    """A hash that took ten times what a hash should (a loaded machine) is charged
    ten tokens of the server-wide bucket, so hashing keeps to its share of the loop's
    time however slow it gets."""
    import types

    h = harness()
    h.hub.gate.store.put_account(make_account("alice", "alice", "correct horse", 0))
    h.hub.gate.store.commit()
    clock = iter(range(1000))  # each round takes a tenth of a hash's worth ten times
    monkeypatch.setattr(gate, "time", types.SimpleNamespace(
        perf_counter=lambda: next(clock) * 10 * gate.HASH_S / ROUNDS), raising=False)
    charged: list[float] = []

    class Counted:  # the server-wide hash bucket, noting what each hash is charged
        def __init__(self, bucket):
            self.bucket = bucket

        def take(self, now):
            charged.append(1.0)
            return self.bucket.take(now)

        def spend(self, amount, now):
            charged.append(amount)
            self.bucket.spend(amount, now)
    monkeypatch.setattr(h.hub.gate, "auth_bucket", Counted(h.hub.gate.auth_bucket))
    first = h.client("alice", nick_password="correct horse")
    h.ready(first)
    assert sum(charged) == pytest.approx(10)  # ten hashes' worth, for one


def test_a_newcomers_hello_is_handled_in_a_pass_that_overran_its_budget(harness,
                                                                         monkeypatch):
    """Registered users whose requests cost a whole pass (a password hash each, on a
    slow machine) leave room for a newcomer's hello: every pass handles one registered
    user and two arrivals whatever the pass's work already cost."""
    h = harness()
    bob = h.client("bob")
    h.ready(bob)
    monkeypatch.setattr(h.server, "_over_budget", lambda: True)  # every pass overran
    newcomer = socket.create_connection(("127.0.0.1", h.port))
    newcomer.sendall(b'{"type":"hello","proto":1,"nick":"carol","rooms":[]}\n')
    newcomer.setblocking(False)
    bob.ping("b")
    answers: dict = {}
    h.until(answered([newcomer], answers))
    assert b'"welcome"' in answers[newcomer]
    h.wait_event(bob, "pong")
    newcomer.close()


def test_a_burst_of_password_guesses_lets_other_clients_through_between_hashes(
        harness, counted_hashes):
    h = harness()
    hashes, per_pass, count = counted_hashes
    h.hub.gate.store.put_account(make_account("alice", "alice", "correct horse", 0))
    h.hub.gate.store.commit()
    bob = h.client("bob")
    h.ready(bob)
    count(h)
    guessers = [socket.create_connection(("127.0.0.1", h.port),
                                         source_address=(f"127.0.0.{2 + i}", 0))
                for i in range(8)]  # from 8 addresses: each within its own share
    h.until(lambda: h.hub.unregistered == len(guessers))
    for i, sock in enumerate(guessers):
        sock.sendall(b'{"type":"hello","proto":1,"nick":"alice","nick_password":"guess %d"}'
                     b"\n" % i)
        sock.setblocking(False)
    bob.say("general", "still here")
    h.wait_event(bob, "message", text="still here")
    hashed_before_bob = len(hashes)
    answers: dict = {}
    h.until(answered(guessers, answers))
    for sock in guessers:
        sock.close()
    assert all(b'"auth_failed"' in data for data in answers.values())
    assert len(hashes) == len(guessers)
    assert max(per_pass) == STEPS_PER_PASS
    assert hashed_before_bob < len(guessers)  # bob did not wait behind every guess


# ---------------------------------------------------------------- bans

def test_address_ban_closes_refuses_and_outlasts_a_restart(harness, tmp_path):
    h = harness()
    alice, bob = h.client("alice"), h.client("bob")
    h.ready(alice)
    h.ready(bob)
    ban, closed = h.operator.ban("address", "127.0.0.1", "spamming")
    assert closed == 2 and ban.value == "127.0.0.1"
    kicked = h.wait_event(alice, "kicked")
    assert "spamming" in kicked["reason"]
    h.close()
    h2 = harness()  # the same database
    assert [b.value for b in h2.operator.ban_list()] == ["127.0.0.1"]
    carol = h2.client("carol")
    err = h2.wait_event(carol, "error")
    assert err["code"] == "banned" and "spamming" in err["message"]
    h2.wait_event(carol, "local.closed")
    assert h2.operator.unban("address", ban.key)
    dave = h2.client("dave")
    h2.ready(dave)


def test_network_ban_with_expiry_lifts_itself(harness):
    h = harness()
    h.operator.ban("address", "127.0.0.0/8", "cool off", seconds=1.0)
    early = h.client("alice")
    assert h.wait_event(early, "error")["code"] == "banned"
    h.until(lambda: not h.operator.ban_list(), timeout=30)
    h.until(lambda: h.server.store.bans() == [], timeout=30)  # dropped from the store
    later = h.client("bob")
    h.ready(later)


def test_nick_ban_keeps_the_nick_out_but_not_the_address(harness):
    h = harness()
    troll, other = h.client("troll"), h.client("other")
    h.ready(troll)
    h.ready(other)
    h.operator.ban("nick", "Troll", "behave")
    left = h.wait_event(other, "left", nick="troll")
    assert left["reason"] == "banned" and left["message"].endswith("behave")
    again = h.client("TROLL")
    assert h.wait_event(again, "error")["code"] == "banned"
    other.rename("troll", ref="r")
    assert h.wait_event(other, "error", ref="r")["code"] == "bad_nick"
    fresh = h.client("newbie")
    h.ready(fresh)
    with pytest.raises(ValueError):
        h.operator.ban("address", "not an address")
    with pytest.raises(ValueError):
        h.operator.ban("nick", "two words")


# ---------------------------------------------------------------- connection limits

def test_per_address_limit_with_loopback_exempt_unless_asked(start_server):
    relaxed = start_server("--max-per-address", "2")
    wires = [Wire(relaxed.port) for _ in range(5)]
    for i, w in enumerate(wires):
        w.hello(f"user{i}")  # loopback is exempt by default
    strict = start_server("--max-per-address", "2", "--limit-loopback",
                          db=relaxed.db.parent / "strict.db")
    first, second = Wire(strict.port), Wire(strict.port)
    first.hello("a")
    second.hello("b")
    third = Wire(strict.port)
    third.send(type="hello", nick="c", proto=1)  # refused at its first bytes
    frames = third.closed()
    assert [f["code"] for f in frames] == ["server_full"]
    assert "address" in frames[0]["message"]
    first.send(type="bye")
    first.closed()
    deadline = time.monotonic() + 30
    while True:  # the freed slot can be used again
        fourth = Wire(strict.port)
        fourth.send(type="hello", nick="d", proto=1)
        frame = fourth.next()
        if frame["type"] == "welcome":
            break
        assert time.monotonic() < deadline, frame


@pytest.mark.parametrize("burst", [17, 20, 32])
def test_a_burst_from_one_address_is_welcomed_up_to_its_limit(start_server, burst):
    """A lab behind one address reconnecting at once after a restart: the first 16
    are welcomed, only the rest refused (the limit counts connections let in, not the
    whole burst waiting for its first bytes)."""
    server = start_server("--max-per-address", "16", "--limit-loopback")
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(burst)]
    for i, sock in enumerate(socks):  # all connected before any says a word
        sock.sendall(b'{"type":"hello","nick":"lab%d","proto":1,"rooms":[]}\n' % i)
    firsts = []
    for sock in socks:
        sock.settimeout(30)
        firsts.append(json.loads(sock.makefile("rb").readline())["type"])
        sock.close()
    assert firsts.count("welcome") == 16 and firsts.count("error") == burst - 16, firsts


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_slowloris_of_200_leaves_a_normal_client_chatting(
        start_server, tls):
    server = start_server(*(["--tls"] if tls else []))
    loris = []
    for i in range(200):
        sock = socket.create_connection(("127.0.0.1", server.port))
        if i % 3 == 1:
            sock.sendall(b'{"type":"hello","nick":"slow' if not tls else b"\x16\x03\x01")
        elif i % 3 == 2:
            sock.sendall(b"{")
        loris.append(sock)
    alice = tls_wire(server.port) if tls else Wire(server.port)
    alice.hello("alice")
    alice.send(type="send", room="general", text="still here", ref="a")
    assert alice.until("message")["ref"] == "a"  # while every loris still holds its socket
    for sock in loris:
        sock.close()


def test_the_owner_reclaims_a_registered_nickname_held_by_an_older_connection(server):
    old = Wire(server.port)
    old.hello("alice")
    old.send(type="register", password="correct horse")
    assert old.next()["type"] == "registered"
    bob = Wire(server.port)
    bob.hello("bob")
    old.barrier()
    impostor = Wire(server.port)
    impostor.send(type="hello", nick="alice", proto=1)
    impostor.error("nick_taken")  # no password: the nickname stays where it is
    new = Wire(server.port)
    new.hello("alice", nick_password="correct horse")
    frames = old.closed()
    assert frames[-1] == {"type": "kicked", "reason": "You signed in from another connection."}
    assert bob.until("left", nick="alice")["reason"] == "disconnected"
    assert bob.until("joined", nick="alice")
    new.send(type="send", room="general", text="back", ref="b")
    assert new.until("message")["ref"] == "b"
    thief = Wire(server.port)
    thief.send(type="hello", nick="alice", proto=1, nick_password="wrong password")
    thief.error("auth_failed")
    new.barrier()  # still connected
