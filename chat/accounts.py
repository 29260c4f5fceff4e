"""Nickname accounts: passwords kept as salted scrypt hashes, never in clear.

A hash is a chain of ``ROUNDS`` ``hashlib.scrypt`` calls (N=2**8, r=8, p=1: under a
millisecond and 256 KiB each), every round salted with the account's salt and the
round before's output: 64 rounds cost what one call of N=2**14 costs (about 50 ms),
and an attacker must run them one after another. The server's one loop does one
round a pass (``Hashing.step``), so a password check never holds everyone else for
more than a round. The price: a guess needs 256 KiB of memory instead of 16 MiB, the
same time. The parameters are stored with every hash, so they can be raised later
without breaking older accounts; ``scrypt:N:r:p``, one call, is the chain of one
round (accounts made before the chain, hashed again at their owner's next sign-in).
The loop does at most ``STEPS_PER_PASS`` rounds in a pass and bounds how many hashes
it does per second (``AUTH_RATE``, ``AUTH_BURST``), with a share per address and per
connection: a flood of guesses slows only the guesser.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import NamedTuple

SCRYPT_N = 2 ** 8
SCRYPT_R = 8
SCRYPT_P = 1
ROUNDS = 64
MAX_ROUNDS = 1024  # what a stored hash may ask for
PARAMS = f"scrypt-chain:{SCRYPT_N}:{SCRYPT_R}:{SCRYPT_P}:{ROUNDS}"  # for new hashes
HASH_BYTES = 32
SALT_BYTES = 16
MIN_PASSWORD = 8  # code points; NIST SP 800-63B's minimum for chosen secrets
MAX_PASSWORD = 256
AUTH_RATE = 5.0  # password hashes per second, over the whole server
# What a hash is expected to cost. One that takes longer (a loaded or slow machine) is
# charged as that many hashes, so hashing keeps to AUTH_RATE * HASH_S of the loop's
# time (a quarter) however slow it is.
HASH_S = 0.05
AUTH_BURST = 10
STEPS_PER_PASS = 1  # the loop stalls at most one round (a few ms) before serving others
# Each address and each connection has a share of its own, so that guessing from
# elsewhere (or register spam) cannot take every hash: the owner of a nickname still
# signs in. Addresses take turns for the hashes; a few checks may wait per address.
HOST_AUTH_RATE = 2.0
HOST_AUTH_BURST = 6
CONNECTION_AUTH_RATE = 0.5
CONNECTION_AUTH_BURST = 3
HOST_QUEUE = 4


class Account(NamedTuple):
    key: str  # name_key of the nickname
    nick: str  # the spelling it was registered with
    salt: bytes
    hash: bytes
    params: str  # "scrypt-chain:N:r:p:rounds" (or "scrypt:N:r:p", one round)
    created: int  # ms since the epoch


def check_password(password: str) -> str | None:
    """Why ``password`` cannot be an account password, or None when it can."""
    if len(password) < MIN_PASSWORD:
        return f"A password needs at least {MIN_PASSWORD} characters."
    if len(password) > MAX_PASSWORD:
        return f"A password may have at most {MAX_PASSWORD} characters."
    return None


class Hashing:
    """One password hash, a round at a time: ``step()`` until ``done``, then
    ``digest``. Bad parameters (a hash stored by something else) raise ValueError
    at once."""

    __slots__ = ("password", "salt", "params", "n", "r", "p", "left", "digest")

    def __init__(self, password: str, salt: bytes, params: str) -> None:
        name, *numbers = params.split(":")
        if (name, len(numbers)) == ("scrypt", 3):
            numbers.append("1")
        elif (name, len(numbers)) != ("scrypt-chain", 4):
            raise ValueError(f"unknown password hash {params!r}")
        n, r, p, rounds = (int(x) for x in numbers)
        if not (1 <= rounds <= MAX_ROUNDS and 1 < n <= 2 ** 20 and 1 <= r <= 32
                and 1 <= p <= 16):
            raise ValueError(f"password hash parameters out of range: {params!r}")
        self.password = password.encode("utf-8", "surrogatepass")
        self.salt, self.params = salt, params
        self.n, self.r, self.p, self.left = n, r, p, rounds
        self.digest = b""

    @property
    def done(self) -> bool:
        return self.left == 0

    def step(self) -> bool:
        """One round; whether the hash is done."""
        if self.left:
            self.digest = hashlib.scrypt(self.password, salt=self.salt + self.digest,
                                         n=self.n, r=self.r, p=self.p,
                                         maxmem=256 * self.r * self.n + 1024 * 1024,
                                         dklen=HASH_BYTES)
            self.left -= 1
        return self.left == 0

    def run(self) -> bytes:
        while not self.step():
            pass
        return self.digest


def new_hashing(password: str) -> Hashing:
    """The hash of a new password: a fresh salt, today's parameters."""
    return Hashing(password, os.urandom(SALT_BYTES), PARAMS)


def make_account(key: str, nick: str, password: str, created: int) -> Account:
    """An account for ``password``, hashed in one go (tools and tests; the server
    hashes a round a pass)."""
    hashing = new_hashing(password)
    return Account(key, nick, hashing.salt, hashing.run(), hashing.params, created)


def matches(account: Account, hashing: Hashing) -> bool:
    """Whether a done ``hashing`` of a password is the account's, in constant time."""
    return (hashing.done and hashing.salt == account.salt
            and hashing.params == account.params
            and hmac.compare_digest(hashing.digest, account.hash))


def verify(account: Account, password: str) -> bool:
    """Whether ``password`` is the account's (in one go, like ``make_account``)."""
    try:
        hashing = Hashing(password, account.salt, account.params)
    except ValueError:
        return False
    hashing.run()
    return matches(account, hashing)
