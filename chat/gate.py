"""Who may come in, and under which name: bans, the per-address limit, accounts.

The hub asks the ``Gate`` at each door (a new connection, `hello`, `nick`) and hands
it the account requests; the gate answers or raises ``ProtocolError``. Bans and
accounts are written to the store in the pass's transaction, so a confirmation
reaches the wire only after the commit. Closing the connections a new ban matches is
the hub's job, since only the hub knows the rooms to tell.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container
from typing import Any, NamedTuple

from chat.accounts import (
    AUTH_BURST,
    AUTH_RATE,
    CONNECTION_AUTH_BURST,
    CONNECTION_AUTH_RATE,
    HASH_S,
    HOST_AUTH_BURST,
    HOST_AUTH_RATE,
    HOST_QUEUE,
    PARAMS,
    STEPS_PER_PASS,
    Account,
    Hashing,
    check_password,
    matches,
    new_hashing,
)
from chat.bans import Ban, Bans, ban_target, host_address
from chat.config import ServerConfig
from chat.errors import Later, ProtocolError, StoreError
from chat.model import Peer, TokenBucket
from chat.store import Store

SIGN_IN, REGISTER = "sign-in", "register"  # what a password check is for
MAX_UPGRADES = 64  # accounts hashed again at once (more wait for their next sign-in)

log = logging.getLogger("chat.server")


class Job(NamedTuple):
    """The password hash under way: whose request, what for, and its rounds."""
    peer: Peer
    purpose: str
    hashing: Hashing
    took: list[float]  # seconds its rounds took so far


class Gate:
    def __init__(self, config: ServerConfig, store: Store, clock: Callable[[], float],
                 now_ms: Callable[[], int], commit: Callable[[], bool]) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.now_ms = now_ms
        self.commit = commit  # the hub's: True when what was written is stored
        self.bans = Bans(store.bans())
        self.per_host: dict[str, int] = {}  # open connections per peer address
        self.let_in: dict[str, int] = {}  # of them, those admitted (--max-per-address)
        self.admitted: set[Peer] = set()
        self.auth_bucket = TokenBucket(AUTH_RATE, AUTH_BURST, clock())
        self.steps_left = STEPS_PER_PASS
        self.job: Job | None = None  # one hash at a time, a round a pass
        # Accounts whose hash is of older parameters, hashed again with today's after
        # their owner signed in, a round a pass while no password check waits.
        self.upgrades: dict[str, tuple[Account, Hashing]] = {}
        # Password checks waiting for their turn, by address, served in turn: a flood
        # of guesses from some addresses delays the others by one hash per address.
        # Lines are by (address, what for): signing in and registering wait apart, so
        # register spam cannot push a sign-in from the same address out of line.
        self.turns: dict[tuple[str, str], list[Peer]] = {}
        self.queued: set[Peer] = set()  # everyone in those lines
        self.host_buckets: dict[tuple[str, str], TokenBucket] = {}
        self.peer_buckets: dict[Peer, TokenBucket] = {}
        # --redis: told of every account and ban this node stored, to share them
        # (chat.cluster); what other nodes share comes in through ``mirror_*``.
        self.shared: Callable[[str, Any], None] | None = None

    def new_pass(self, held: Container[Peer]) -> None:
        """A new pass of the loop: its one round of hashing is available again, and
        waiting requests that are no longer held (answered otherwise, or closed) give
        up their place, and their hash if it is under way."""
        self.steps_left = STEPS_PER_PASS
        job = self.job
        if job is not None and (job.peer not in held or job.peer.closing):
            self.job = None
        for line in list(self.turns):
            waiting = [p for p in self.turns[line] if p in held and not p.closing]
            if waiting:
                self.turns[line] = waiting
            else:
                del self.turns[line]
        if self.queued:
            self.queued = {p for line in self.turns.values() for p in line}
        if self.upgrades and self.job is None and not self.turns:
            self._upgrade()

    def _upgrade(self) -> None:
        """A round of the first account upgrade; stored when done, unless the account
        changed meanwhile."""
        key, (old, hashing) = next(iter(self.upgrades.items()))
        self.steps_left -= 1
        if not hashing.step():
            return
        del self.upgrades[key]
        if self.store.account(key) != old:
            return
        account = old._replace(salt=hashing.salt, hash=hashing.digest, params=hashing.params)
        try:
            self.store.put_account(account)  # stored with the pass's writes
        except StoreError:
            return  # the pass's commit tells; the account keeps its older hash
        if self.shared is not None:
            self.shared("account", account)

    @property
    def hashing(self) -> bool:
        """Whether a round of hashing can run at the next pass."""
        return self.job is not None or (bool(self.upgrades) and not self.turns)

    # ------------------------------------------------------------ connections

    def opened(self, host: str) -> None:
        self.per_host[host] = self.per_host.get(host, 0) + 1

    def closed(self, peer: Peer) -> None:
        host = peer.host
        if peer in self.admitted:
            self.admitted.discard(peer)
            let_in = self.let_in[host] - 1
            if let_in:
                self.let_in[host] = let_in
            else:
                del self.let_in[host]
        left = self.per_host[host] - 1
        if left:
            self.per_host[host] = left
        else:
            del self.per_host[host]
            for line in ((host, SIGN_IN), (host, REGISTER)):
                bucket = self.host_buckets.get(line)
                if bucket is not None and bucket.ready(self.clock()) and \
                        bucket.tokens >= bucket.burst:
                    del self.host_buckets[line]  # full again: nothing to remember
        self.peer_buckets.pop(peer, None)

    def refusal(self, host: str) -> ProtocolError | None:
        """A ban on ``host``, as the error that refuses it, or None."""
        ban = self.bans.host(host, self.now_ms())
        if ban is not None:
            return ProtocolError("banned", ban_sentence(ban))
        return None

    def admit(self, peer: Peer) -> ProtocolError | None:
        """Why a new connection may not stay (a ban, the per-address limit), or None:
        then it counts toward its address's limit until it closes. Only connections
        let in count, not those still waiting for their first bytes: a burst from one
        address (a lab behind one NAT reconnecting at once) gets its limit's worth."""
        host = peer.host
        refusal = self.refusal(host)
        if refusal is not None:
            return refusal
        cfg = self.config
        let_in = self.let_in.get(host, 0)
        if cfg.max_per_address and let_in >= cfg.max_per_address:
            addr = host_address(host)
            if cfg.limit_loopback or addr is None or not addr.is_loopback:
                return ProtocolError("server_full", "Too many connections from your "
                                     f"address (at most {cfg.max_per_address}).")
        self.let_in[host] = let_in + 1
        self.admitted.add(peer)
        return None

    def nick_ban(self, key: str) -> Ban | None:
        return self.bans.nick(key, self.now_ms())

    # ------------------------------------------------------------ bans

    def add_ban(self, kind: str, value: str, reason: str, seconds: float | None) -> Ban:
        """Store a ban; ``ValueError`` with a sentence for a value that is no nick or
        address, or a duration that is not positive."""
        key, value = ban_target(kind, value)
        if seconds is not None and seconds <= 0:
            raise ValueError("A ban lasts a positive number of seconds (or forever).")
        now = self.now_ms()
        ban = Ban(kind, key, value, reason.strip(), now,
                  None if seconds is None else now + int(seconds * 1000))
        try:
            self.store.put_ban(ban)
        except StoreError:
            self.commit()  # takes back the pass's unstored writes
            raise ValueError("The ban could not be stored: the database cannot be "
                             "written now.") from None
        if not self.commit():
            raise ValueError("The ban could not be stored: the database cannot be "
                             "written now.")
        self.bans.add(ban)
        if self.shared is not None:
            self.shared("ban", ban)
        return ban

    def lift(self, kind: str, key: str) -> Ban | None:
        ban = self.bans.remove(kind, key)
        if ban is not None:
            try:  # lifted now; kept in the file only if it cannot be written (it
                self.store.drop_ban(kind, key)  # expires or is lifted again later)
            except StoreError as exc:
                log.warning("could not remove the ban on %s from the database: %s",
                            ban.value, exc.reason)
            self.commit()
            if self.shared is not None:
                self.shared("lift", (kind, key))
        return ban

    def mirror_ban(self, ban: Ban) -> None:
        """A ban another node of the cluster made (written in the pass's transaction)."""
        self.bans.add(ban)
        self.store.put_ban(ban)

    def mirror_lift(self, kind: str, key: str) -> None:
        if self.bans.remove(kind, key) is not None:
            self.store.drop_ban(kind, key)

    def mirror_account(self, account: Account | None, key: str) -> None:
        """An account another node made, changed or dropped (None)."""
        if account is None:
            self.store.drop_account(key)
        else:
            self.store.put_account(account)

    def listing(self) -> list[Ban]:
        return self.bans.listing(self.now_ms())

    def expired(self) -> list[Ban]:
        return self.bans.expired(self.now_ms()) if len(self.bans) else []

    def matches(self, ban: Ban, peer: Peer) -> bool:
        if ban.kind == "nick":
            return peer.key == ban.key
        return self.bans.host(peer.host, self.now_ms()) is ban

    # ------------------------------------------------------------ accounts

    def _spend_auth(self, peer: Peer, purpose: str) -> None:
        """Password hashing is slow on purpose: the loop does one hash at a time, a
        round a pass, and ``AUTH_RATE`` hashes a second. A request that needs one
        waits (``Later``) in the line of its address and purpose until its turn, lines
        taking turns; an address or a connection asking for more than its own share
        is refused (``rate_limited``) without a hash. So nobody's guessing from
        elsewhere, and nobody's register spam, can lock out a nickname's owner."""
        now = self.clock()
        line = (peer.host, purpose)
        queue = self.turns.get(line)
        if queue is None or peer not in queue:
            if queue is not None and len(queue) >= HOST_QUEUE:
                raise self._busy()
            own = self.peer_buckets.get(peer)
            if own is None:
                own = self.peer_buckets[peer] = TokenBucket(
                    CONNECTION_AUTH_RATE, CONNECTION_AUTH_BURST, now)
            host = self.host_buckets.get(line)
            if host is None:
                host = self.host_buckets[line] = TokenBucket(
                    HOST_AUTH_RATE, HOST_AUTH_BURST, now)
            if not (own.ready(now) and host.ready(now)):
                raise self._busy()
            own.take(now)
            host.take(now)
            queue = self.turns.setdefault(line, [])
            queue.append(peer)
            self.queued.add(peer)
        if (self.job is not None or self.steps_left <= 0 or queue[0] is not peer
                or next(iter(self.turns)) != line or not self.auth_bucket.take(now)):
            raise Later()
        del queue[0]
        self.queued.discard(peer)
        del self.turns[line]  # its turn is over: to the back of the line
        if queue:
            self.turns[line] = queue

    def _hashed(self, peer: Peer, purpose: str, start: Callable[[], Hashing]) -> Hashing:
        """The done hash for ``peer``'s request: started (``start()``) at its turn,
        then a round a pass, the request waiting (``Later``) in between. A hash is
        charged to the server's bucket by the time its rounds took (``HASH_S`` a
        token), so hashing keeps to its share of the loop's time however slow the
        machine is."""
        job = self.job
        if job is None or job.peer is not peer or job.purpose != purpose:
            self._spend_auth(peer, purpose)
            job = self.job = Job(peer, purpose, start(), [0.0])
        if self.steps_left <= 0:
            raise Later()
        self.steps_left -= 1
        started = time.perf_counter()
        try:
            done = job.hashing.step()
        finally:
            job.took[0] += time.perf_counter() - started
        if not done:
            raise Later()
        self.job = None
        self.auth_bucket.spend(max(0.0, job.took[0] / HASH_S - 1), self.clock())
        return job.hashing

    def in_line(self, peer: Peer) -> bool:
        """Whether ``peer`` waits for a password check (its turn, or its rounds)."""
        return (self.job is not None and self.job.peer is peer) or peer in self.queued

    def blocked(self, peer: Peer) -> bool:
        """Whether ``peer`` waits in a line while another's hash is under way: asking
        again this pass cannot get it through."""
        return self.job is not None and self.job.peer is not peer and peer in self.queued

    @staticmethod
    def _busy() -> ProtocolError:
        return ProtocolError("rate_limited", "Too many password checks from your "
                                             "address; try again in a few seconds.")

    def has_account(self, key: str) -> bool:
        return self.store.account(key) is not None

    def authenticate(self, peer: Peer, key: str, nick: str, password: str | None) -> None:
        """Let ``peer`` take ``nick`` only with its account's password, if it has one."""
        if key in peer.accounts:
            return
        account = self.store.account(key)
        if account is None:
            return
        if password is None:
            raise ProtocolError("nick_registered", f"The nickname '{nick}' is registered; "
                                "give its password or choose another nickname.")
        try:
            hashing = self._hashed(peer, SIGN_IN,
                                   lambda: Hashing(password, account.salt, account.params))
        except ValueError:  # parameters this server cannot use
            log.error("the account of %s has a password hash this server cannot check "
                      "(%s)", nick, account.params)
            hashing = None
        if hashing is None or not matches(account, hashing):
            log.info("wrong password for %s from %s", nick, peer.host)
            raise ProtocolError("auth_failed", f"Wrong password for the nickname '{nick}'.")
        peer.accounts.add(key)
        if account.params != PARAMS and len(self.upgrades) < MAX_UPGRADES:
            self.upgrades.setdefault(key, (account, new_hashing(password)))

    def register(self, peer: Peer, password: str) -> None:
        """Make the nickname ``peer`` holds an account (or change its password)."""
        problem = check_password(password)
        if problem is not None:
            raise ProtocolError("bad_password", problem)
        assert peer.key is not None and peer.nick is not None
        if peer.key not in peer.accounts and self.store.account(peer.key) is not None:
            raise ProtocolError("nick_registered",
                                f"The nickname '{peer.nick}' is already registered.")
        hashing = self._hashed(peer, REGISTER, lambda: new_hashing(password))
        account = Account(peer.key, peer.nick, hashing.salt, hashing.digest, hashing.params,
                          self.now_ms())
        self.store.put_account(account)
        self._stored()
        peer.accounts.add(peer.key)
        if self.shared is not None:
            self.shared("account", account)
        log.info("%s registered its nickname", peer.nick)

    def _stored(self) -> None:
        """Commit at once what was just written; refuse the request if it failed."""
        if not self.commit():
            raise ProtocolError("store_failed", "The server could not store that "
                                                "(its database cannot be written now); "
                                                "try again later.")

    def unregister(self, peer: Peer) -> None:
        if peer.key not in peer.accounts:
            raise ProtocolError("no_account", f"The nickname '{peer.nick}' has no account "
                                              "you are signed in to.")
        assert peer.key is not None
        self.store.drop_account(peer.key)
        self._stored()
        peer.accounts.discard(peer.key)
        if self.shared is not None:
            self.shared("drop", peer.key)
        log.info("%s dropped its nickname's account", peer.nick)

    def drop(self, key: str) -> bool:
        """The operator drops the account of nick ``key``; whether there was one."""
        if self.store.account(key) is None:
            return False
        try:
            self.store.drop_account(key)
        except StoreError:
            self.commit()  # takes back the pass's unstored writes
            raise ValueError("The database cannot be written now; try again later.") \
                from None
        if not self.commit():
            raise ValueError("The database cannot be written now; try again later.")
        if self.shared is not None:
            self.shared("drop", key)
        return True


def when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


def ban_sentence(ban: Ban) -> str:
    """What a banned user is told."""
    text = "You are banned from this server"
    if ban.expires is not None:
        text += f" until {when(ban.expires)}"
    return text + (f": {ban.reason}" if ban.reason else ".")
