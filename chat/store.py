"""Message history in SQLite (WAL): what the server stores before it delivers.

The server assigns ids itself (one writer, continuing the sequence kept in
``sqlite_sequence``), adds the messages of one loop pass inside one transaction and
calls ``commit()`` before it sends any of them. It knows nothing of sockets or
frames beyond the rows it returns.
"""

from __future__ import annotations

import os
import sqlite3
from typing import NamedTuple

from chat.accounts import Account
from chat.bans import Ban
from chat.errors import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    key  TEXT PRIMARY KEY,
    name TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    ts        INTEGER NOT NULL,
    room      TEXT,
    sender    TEXT NOT NULL,
    recipient TEXT,
    text      TEXT NOT NULL,
    action    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_by_room ON messages (room, id);
CREATE TABLE IF NOT EXISTS accounts (
    key     TEXT PRIMARY KEY,
    nick    TEXT NOT NULL,
    salt    BLOB NOT NULL,
    hash    BLOB NOT NULL,
    params  TEXT NOT NULL,
    created INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bans (
    kind    TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    reason  TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
"""


class Row(NamedTuple):
    id: int
    ts: int
    sender: str
    text: str
    action: bool


class Store:
    """One SQLite database file of rooms and messages.

    ``synchronous=FULL`` makes each commit durable against power loss, not only
    against a killed process; a commit covers a whole loop pass, so it is paid once
    per pass, not once per message.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            if path != ":memory:":
                parent = os.path.dirname(os.path.abspath(path))
                os.makedirs(parent, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            row = self._db.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from None
        self._last_id = row[0] if row else 0
        self._in_transaction = False
        self._known_rooms: set[str] = set()

    @property
    def last_id(self) -> int:
        """The id of the newest message added (committed or not)."""
        return self._last_id

    def rooms(self) -> list[tuple[str, str]]:
        """(key, name) of every room that has history."""
        rows = self._db.execute("SELECT key, name FROM rooms").fetchall()
        self._known_rooms.update(key for key, _ in rows)
        return rows

    def add(self, ts: int, sender: str, text: str, *, room_key: str | None = None,
            room_name: str | None = None, recipient: str | None = None,
            action: bool = False) -> int:
        """Add one message to the open transaction and return its new id."""
        self._begin()
        if room_key is not None and room_key not in self._known_rooms:
            self._execute("INSERT OR IGNORE INTO rooms (key, name) VALUES (?, ?)",
                          (room_key, room_name))
            self._known_rooms.add(room_key)
        self._last_id += 1
        self._execute(
            "INSERT INTO messages (id, ts, room, sender, recipient, text, action) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self._last_id, ts, room_key, sender, recipient, text, int(action)))
        return self._last_id

    def _begin(self) -> None:
        if not self._in_transaction:
            self._execute("BEGIN")
            self._in_transaction = True

    # Accounts and bans are written in the pass's transaction too: the reply that
    # confirms one goes out only after the pass's commit.

    def account(self, key: str) -> Account | None:
        row = self._db.execute("SELECT key, nick, salt, hash, params, created "
                               "FROM accounts WHERE key = ?", (key,)).fetchone()
        return Account(*row) if row else None

    def put_account(self, account: Account) -> None:
        self._begin()
        self._execute("INSERT OR REPLACE INTO accounts (key, nick, salt, hash, params, "
                      "created) VALUES (?, ?, ?, ?, ?, ?)", tuple(account))

    def accounts(self) -> list[tuple[str, int]]:
        """(nick, created) of every account, by nickname."""
        return self._db.execute("SELECT nick, created FROM accounts ORDER BY key").fetchall()

    def drop_account(self, key: str) -> None:
        self._begin()
        self._execute("DELETE FROM accounts WHERE key = ?", (key,))

    def bans(self) -> list[Ban]:
        rows = self._db.execute("SELECT kind, key, value, reason, created, expires "
                                "FROM bans").fetchall()
        return [Ban(*row) for row in rows]

    def put_ban(self, ban: Ban) -> None:
        self._begin()
        self._execute("INSERT OR REPLACE INTO bans (kind, key, value, reason, created, "
                      "expires) VALUES (?, ?, ?, ?, ?, ?)", tuple(ban))

    def drop_ban(self, kind: str, key: str) -> None:
        self._begin()
        self._execute("DELETE FROM bans WHERE kind = ? AND key = ?", (kind, key))

    def commit(self) -> None:
        """Make every message added since the last commit durable."""
        if self._in_transaction:
            self._in_transaction = False
            self._execute("COMMIT")

    def latest(self, room_key: str, *, after: int = 0, before: int | None = None,
               limit: int) -> tuple[list[Row], bool]:
        """The newest ``limit`` messages of a room with ``after < id < before``.

        Returns them oldest first, and whether older matching ones were left out.
        """
        upper = before if before is not None else self._last_id + 1
        rows = self._db.execute(
            "SELECT id, ts, sender, text, action FROM messages "
            "WHERE room = ? AND id > ? AND id < ? ORDER BY id DESC LIMIT ?",
            (room_key, after, upper, limit + 1)).fetchall()
        more = len(rows) > limit
        return [Row(*r[:4], bool(r[4])) for r in reversed(rows[:limit])], more

    def _execute(self, sql: str, args: tuple = ()) -> None:
        try:
            self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"database {self.path}: {exc}") from None

    def close(self) -> None:
        self.commit()
        self._db.close()
