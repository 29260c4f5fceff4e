"""A cluster that heals: three nodes over a real redis-server, one fault at a time.

A node held (SIGSTOP) long enough to be taken for dead, Redis held 10 s and 40 s, a
user leaving while Redis is away. After each: every node's `who` is the real
connections again, no nickname is held by two connections, the leaver's nickname is
free, and every message that was echoed is stored once on every node. How long each
took is printed (run with -s); no test asserts a time.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
from test_cluster import joined, stored, wait_for
from wire import Wire

pytestmark = pytest.mark.usefixtures("redis")


class User:
    """One client of the cluster, remembering what it was told was stored."""

    def __init__(self, port: int, nick: str) -> None:
        self.nick = nick
        self.wire = joined(port, nick)
        self.echoed: list[str] = []
        self.seen: list[dict] = []  # frames read while looking for something else
        self._refs = 0

    def say(self, text: str, timeout: float = 60.0) -> str:
        """Send ``text``; "ok" once echoed, else the error's code."""
        self._refs += 1
        ref = f"{self.nick}-{self._refs}"
        self.wire.send(type="send", room="general", text=text, ref=ref)
        frame = self.frame(lambda f: f.get("ref") == ref, timeout)
        if frame["type"] == "message":
            self.echoed.append(text)
            return "ok"
        return frame["code"]

    def say_until_stored(self, text: str, timeout: float = 60.0) -> None:
        """Send ``text`` again while it is refused (`store_failed`: it was not sent)."""
        deadline = time.monotonic() + timeout
        while (code := self.say(text)) != "ok":
            assert code == "store_failed", code
            assert time.monotonic() < deadline, f"{text!r} still refused"
            time.sleep(0.2)

    def frame(self, match, timeout: float = 60.0) -> dict:
        """The first frame that ``match``es, among those set aside first."""
        for at, frame in enumerate(self.seen):
            if match(frame):
                return self.seen.pop(at)
        deadline = time.monotonic() + timeout
        while True:
            frame = self.wire.next(max(0.0, deadline - time.monotonic()))
            if match(frame):
                return frame
            self.seen.append(frame)

    def who(self) -> tuple[list[str], bool]:
        self.wire.send(type="who", room="general", ref="who")
        frame = self.frame(lambda f: f["type"] == "users" and f.get("ref") == "who")
        return frame["users"], frame.get("converging", False)


class Steady(threading.Thread):
    """A client of its own that sends the whole time, each message once its last was
    answered; what was echoed and what was refused (`store_failed`) is kept."""

    def __init__(self, port: int, nick: str) -> None:
        super().__init__(daemon=True)
        self.nick = nick
        self.wire = joined(port, nick)
        self.echoed: list[str] = []
        self.refused: list[str] = []
        self.stopping = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 600
        count = 0
        try:
            while not self.stopping.is_set() and time.monotonic() < deadline:
                count += 1
                text = f"{self.nick} #{count}"
                self.wire.send(type="send", room="general", text=text, ref=str(count))
                while (frame := self.wire.next(120)).get("ref") != str(count):
                    pass
                if frame["type"] == "message":
                    self.echoed.append(text)
                    self.stopping.wait(0.02)
                else:
                    assert frame["code"] == "store_failed", frame
                    self.refused.append(text)
                    self.wire.barrier(120)  # 20 errors in a row would close it
                    self.stopping.wait(0.2)
        except BaseException as exc:  # told to the test by `finish`
            self.failure = exc

    def finish(self) -> None:
        self.stopping.set()
        self.join(150)
        assert not self.is_alive(), f"{self.nick} still sending"
        assert self.failure is None, self.failure
        assert self.echoed, f"{self.nick} never got a message through"


def converged(users: list[User], expected: list[str], since: float, what: str) -> float:
    """Wait until every user's node lists ``expected`` in #general, then until none
    says it is still converging; the seconds the lists took after ``since``."""
    want = sorted(expected, key=str.casefold)
    wait_for(lambda: all(u.who()[0] == want for u in users), timeout=90,
             what=f"every node listing {expected} ({what})")
    took = time.monotonic() - since
    wait_for(lambda: all(u.who() == (want, False) for u in users), timeout=90,
             what=f"every node settled ({what})")
    print(f"\n{what}: every node's `who` right {took:.1f} s after recovery, settled "
          f"{time.monotonic() - since:.1f} s after")
    return took


def complete(nodes, users: list[User]) -> None:
    """Wait until every node's copy holds as many messages as were echoed."""
    echoed = sum(len(u.echoed) for u in users)
    wait_for(lambda: all(len(stored(n.db)) >= echoed for n in nodes),
             what=f"{echoed} messages in every copy")


def check_messages(nodes, users: list) -> None:
    """Every echoed message is stored once on every node, the same on all of them,
    under the nickname that sent it; nothing else is stored but a message whose
    sender was told `store_failed` after Redis had run it (docs/protocol.md: its
    answer was lost with the connection), once at most."""
    copies = [stored(n.db) for n in nodes]
    for copy in copies[1:]:
        assert copy == copies[0]
    texts = [text for _, _, text in copies[0]]
    for user in users:
        for text in user.echoed:
            assert texts.count(text) == 1, (text, texts.count(text))
    late = 0
    for msg_id, sender, text in copies[0]:
        owners = [u.nick for u in users if text in u.echoed]
        if not owners:
            owners = [u.nick for u in users if text in getattr(u, "refused", ())]
            late += 1
        assert owners == [sender] and texts.count(text) == 1, (msg_id, sender, text)
    print(f"{len(texts)} messages stored the same on {len(nodes)} nodes; {late} of them "
          "after their sender was told store_failed")


def test_a_node_held_20s_is_taken_back_then_claims_its_users_again(node):
    a, b, c = node(), node(), node()
    a1, old_a2 = User(a.port, "a1"), User(a.port, "a2")
    b1, c1 = User(b.port, "b1"), User(c.port, "c1")
    steady = [Steady(a.port, "sa"), Steady(b.port, "sb"), Steady(c.port, "sc")]
    everyone = ["a1", "a2", "b1", "c1", "sa", "sb", "sc"]
    converged([a1, b1, c1], everyone, time.monotonic(), "start")
    for sender in steady:
        sender.start()
    for user in (a1, old_a2, b1, c1):
        user.say_until_stored(f"before from {user.nick}")

    a.proc.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        # Taken for dead: its users leave the others' rooms, their nicknames are free.
        wait_for(lambda: b1.who()[0] == ["b1", "c1", "sb", "sc"],
                 what="a's users taken out")
        new_a2 = User(b.port, "a2")  # someone else takes the nickname meanwhile
        old_a2.wire.send(type="send", room="general", text="old a2 while held", ref="x")
        a1.wire.send(type="send", room="general", text="a1 while held", ref="held")
        b1.say_until_stored("b1 while a is held")
        new_a2.say_until_stored("new a2 while a is held")
        time.sleep(max(0.0, 20 - (time.monotonic() - stopped)))  # the fault: 20 s held
    finally:
        a.proc.send_signal(signal.SIGCONT)
    resumed = time.monotonic()
    # (its node lists "a2" once: the old holder is closed before its list is right)
    converged([a1, b1, c1, new_a2], everyone, resumed, "node held 20 s")

    # The old holder of "a2" is told, and closed; what it sent while held is not stored.
    frames = old_a2.wire.closed(60)
    assert any(f["type"] == "error" and f["code"] == "nick_taken" for f in frames), frames
    assert any(f["type"] == "kicked" for f in frames), frames
    assert not any(f["type"] == "message" and f.get("ref") == "x" for f in frames)
    # a1 keeps its nickname and connection: what it sent while held was stored, or
    # refused (while its node claimed it again) and then sent again.
    held = a1.frame(lambda f: f.get("ref") == "held")
    if held["type"] == "message":
        a1.echoed.append("a1 while held")
    else:
        assert held["code"] == "store_failed", held
        a1.say_until_stored("a1 while held")
    for user in (a1, b1, c1, new_a2):
        user.say_until_stored(f"after from {user.nick}")
    for sender in steady:
        sender.finish()
    users = [a1, old_a2, b1, c1, new_a2, *steady]
    complete([a, b, c], users)
    check_messages([a, b, c], users)
    assert "old a2 while held" not in [t for _, _, t in stored(a.db)]


@pytest.mark.parametrize("pause_s", [10, 40])
def test_redis_held_refuses_at_once_and_the_cluster_heals(node, redis, pause_s):
    a, b, c = node(), node(), node()
    a1, b1, c1, c2 = User(a.port, "a1"), User(b.port, "b1"), User(c.port, "c1"), \
        User(c.port, "c2")
    steady = [Steady(a.port, "sa"), Steady(b.port, "sb"), Steady(c.port, "sc")]
    converged([a1, b1, c1], ["a1", "b1", "c1", "c2", "sa", "sb", "sc"], time.monotonic(),
              "start")
    for sender in steady:
        sender.start()
    for user in (a1, b1, c1):
        user.say_until_stored(f"before from {user.nick}")

    redis.proc.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        # A send is refused while Redis is still held, not when it comes back.
        b1.wire.send(type="send", room="general", text="while redis is held", ref="h")
        frame = b1.frame(lambda f: f.get("ref") == "h", timeout=pause_s - 2)
        refused_after = time.monotonic() - stopped
        assert frame["type"] == "error" and frame["code"] == "store_failed", frame
        print(f"\nRedis held: a send refused {refused_after:.1f} s after the stop")
        # A newcomer is told, not left to time out.
        newcomer = Wire(c.port)
        newcomer.send(type="hello", nick="late", proto=1)
        newcomer.error("store_failed", timeout=pause_s - 4)
        newcomer.close()
        # A node that cannot reach Redis says its list may change by itself.
        wait_for(lambda: a1.who()[1], timeout=pause_s - 4, what="converging: true")
        # A user leaves while Redis is away.
        c2.wire.send(type="bye", reason="leaving in the outage")
        c2.wire.closed()
        assert time.monotonic() - stopped < pause_s, "the checks outlasted the pause"
        time.sleep(max(0.0, pause_s - (time.monotonic() - stopped)))  # the fault
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    resumed = time.monotonic()

    converged([a1, b1, c1], ["a1", "b1", "c1", "sa", "sb", "sc"], resumed,
              f"Redis held {pause_s} s")
    for user in (a1, b1):  # the leaver was seen leaving on the other nodes
        user.frame(lambda f: f["type"] == "left" and f["nick"] == "c2")
    for port in (a.port, b.port):  # its nickname is free everywhere
        again = joined(port, "c2", deadline_s=30)
        again.send(type="bye")
        again.closed()
    for user in (a1, b1, c1):
        user.say_until_stored(f"after from {user.nick}")
    for sender in steady:
        sender.finish()
    complete([a, b, c], [a1, b1, c1, *steady])
    check_messages([a, b, c], [a1, b1, c1, *steady])
