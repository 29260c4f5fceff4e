"""Nickname accounts: passwords kept as salted scrypt hashes, never in clear.

A hash is one ``hashlib.scrypt`` call (N=2**14, r=8, p=1: about 50 ms and 16 MiB),
the cost the scrypt paper gives for interactive logins. The parameters are stored
with every hash, so they can be raised later without breaking older accounts. The
server runs these calls in its one loop, so it does at most ``HASHES_PER_PASS`` in
one pass (a request past that waits for a later pass, so other clients are served
in between) and bounds how many it does per second (``AUTH_RATE``, ``AUTH_BURST``),
with a share per address and per connection: a flood of guesses slows only the
guesser.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import NamedTuple

SCRYPT_N = 2 ** 14
SCRYPT_R = 8
SCRYPT_P = 1
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
HASHES_PER_PASS = 1  # the loop stalls at most one hash (~50 ms) before serving others
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
    params: str  # "scrypt:N:r:p"
    created: int  # ms since the epoch


def check_password(password: str) -> str | None:
    """Why ``password`` cannot be an account password, or None when it can."""
    if len(password) < MIN_PASSWORD:
        return f"A password needs at least {MIN_PASSWORD} characters."
    if len(password) > MAX_PASSWORD:
        return f"A password may have at most {MAX_PASSWORD} characters."
    return None


def _scrypt(password: str, salt: bytes, params: str) -> bytes:
    name, n, r, p = params.split(":")
    if name != "scrypt":
        raise ValueError(f"unknown password hash {name!r}")
    n_, r_, p_ = int(n), int(r), int(p)
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n_,
                          r=r_, p=p_, maxmem=256 * r_ * n_ + 1024 * 1024,
                          dklen=HASH_BYTES)


def make_account(key: str, nick: str, password: str, created: int) -> Account:
    params = f"scrypt:{SCRYPT_N}:{SCRYPT_R}:{SCRYPT_P}"
    salt = os.urandom(SALT_BYTES)
    return Account(key, nick, salt, _scrypt(password, salt, params), params, created)


def verify(account: Account, password: str) -> bool:
    """Whether ``password`` is the account's, compared in constant time."""
    try:
        digest = _scrypt(password, account.salt, account.params)
    except ValueError:
        return False
    return hmac.compare_digest(digest, account.hash)
