"""Message history in SQLite (WAL): what the server stores before it delivers.

The server assigns ids itself (one writer, continuing the sequence kept in
``sqlite_sequence``), adds the messages of one loop pass and calls ``commit()``
before it sends any of them. A pass that only added messages is made durable by
appending them to the message log (``chat.journal``: one write and one fdatasync);
SQLite gets them in batches, when something reads them, when another write commits,
or at ``fill()`` (the hub's timer), and the log is emptied once SQLite has committed
them. At start, what the log holds beyond SQLite is put into SQLite first. The store
knows nothing of sockets or frames beyond the rows it returns.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Generator
from contextlib import closing
from functools import cache
from itertools import chain
from operator import itemgetter
from typing import Any, NamedTuple

from chat.accounts import Account
from chat.bans import Ban
from chat.errors import StoreError
from chat.journal import Journal
from chat.protocol import name_key
from chat.search import Query, Scope, Search, enable_fts

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
    action    INTEGER NOT NULL DEFAULT 0,
    file      TEXT,
    -- a message: the id it answers; a change (EDIT and after): the message it changes
    about     INTEGER,
    edited    INTEGER,  -- when its text was last changed (ms), NULL if never
    deleted   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_by_room ON messages (room, id);
-- direct messages between two nicknames, for their account holders' history (a
-- partial index: room messages, the hot path, do not pay for it)
CREATE INDEX IF NOT EXISTS direct_by_pair
    ON messages (sender COLLATE NOCASE, recipient COLLATE NOCASE, id)
    WHERE recipient IS NOT NULL;
-- messages that carry a file, by the file's id: who may read it (docs/protocol.md,
-- "Files"); partial, so messages without a file do not pay for it
CREATE INDEX IF NOT EXISTS messages_by_file
    ON messages (json_extract(file, '$.id')) WHERE file IS NOT NULL;
CREATE TABLE IF NOT EXISTS accounts (
    key     TEXT PRIMARY KEY,
    nick    TEXT NOT NULL,
    salt    BLOB NOT NULL,
    hash    BLOB NOT NULL,
    params  TEXT NOT NULL,
    created INTEGER NOT NULL
) WITHOUT ROWID;
-- per nickname and room, the newest message id when that nickname last left it from
-- a door that cannot say what it saw (IRC): its next JOIN replays only what came after
CREATE TABLE IF NOT EXISTS seen (
    nick    TEXT NOT NULL,
    room    TEXT NOT NULL,
    last_id INTEGER NOT NULL,
    ts      INTEGER NOT NULL,
    PRIMARY KEY (nick, room)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_by_age ON seen (ts);
-- a room's roles and settings (chat.rules), as JSON: operators, voice, topic, modes
CREATE TABLE IF NOT EXISTS room_rules (
    key  TEXT PRIMARY KEY,
    data TEXT NOT NULL
) WITHOUT ROWID;
-- who reacted to a message with what (docs/protocol.md, "Replies, reactions, edits")
CREATE TABLE IF NOT EXISTS reactions (
    msg_id   INTEGER NOT NULL,
    emoji    TEXT NOT NULL,
    nick_key TEXT NOT NULL,
    nick     TEXT NOT NULL,
    seq      INTEGER NOT NULL,  -- the reaction's id in the one order: who came first
    PRIMARY KEY (msg_id, emoji, nick_key)
) WITHOUT ROWID;
-- how far a registered nickname has read each of its conversations ("#" room key,
-- "@" the other one's nickname key): kept so that its next device knows
CREATE TABLE IF NOT EXISTS read_markers (
    nick_key TEXT NOT NULL,
    conv     TEXT NOT NULL,
    last_id  INTEGER NOT NULL,
    ts       INTEGER NOT NULL,
    PRIMARY KEY (nick_key, conv)
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


# SQLite's primary result codes (the low byte of an extended code) and what they mean
# to an operator.
REASONS = {5: "the database is locked by another program",
           6: "the database is locked by another program",
           8: "the database is read-only for the server",
           10: "the disk reports an error",
           11: "the database file is damaged",
           13: "the disk is full",
           14: "the database file cannot be opened",
           26: "the file is not a database"}
READONLY = 8
REOPEN_SECONDS = 1.0  # a read-only connection is reopened at most this often
PAGE_ROWS = 256  # rows fetched at a time when reading history newest first
SEEN_ROWS = 100_000  # (nickname, room) pairs kept in `seen`, the newest
SEEN_PRUNE_EVERY = 1000  # `seen` writes between two prunes
CATCH_UP = 5_000  # messages indexed before a search, at most (a few ms: in the budget)
LOG_SUFFIX = "-messages.log"  # the message log beside the database (chat.journal)
LOG_ROWS = 20_000  # messages kept in the log and not yet in SQLite, at most


def reason_of(exc: sqlite3.Error) -> str:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in REASONS:
        return REASONS[code & 0xFF]
    return str(exc)


# A stored message's row, in the order chat.journal keeps it too.
MESSAGE_ROW = ("id", "ts", "room", "sender", "recipient", "text", "action", "file", "about")
NULLABLE = (2, 4, 7, 8)  # room, recipient, file, about: left out of the INSERT when NULL
# Many rows per statement cost ~40% less per row than a statement per row: chunks of
# 100 rows (at most 900 parameters, under SQLite's oldest limit of 999), the rest in
# chunks of 64, 32, ... 1, so that a handful of statements serve every count (and stay
# cached).
INSERT_CHUNKS = (100, 64, 32, 16, 8, 4, 2, 1)


def _nulls(row: tuple[Any, ...]) -> int:
    """Which of a row's NULLABLE columns are NULL, as bits (its INSERT's shape)."""
    return ((row[2] is None) | (row[4] is None) << 1 | (row[7] is None) << 2
            | (row[8] is None) << 3)


@cache  # 16 shapes times 8 sizes at most
def insert_many(nulls: int, size: int) -> tuple[str, Callable[[tuple[Any, ...]], Any]]:
    """The INSERT of ``size`` rows whose NULL columns are ``nulls`` (``_nulls``), and
    what picks a row's parameters. A NULL is left to the column's default, not bound:
    the sqlite3 module adapts a bound None at the cost of a failed attribute lookup
    (an exception made and cleared), which made up half of a row's insert."""
    present = [i for i in range(len(MESSAGE_ROW))
               if i not in NULLABLE or not nulls >> NULLABLE.index(i) & 1]
    one = "(" + ", ".join("?" * len(present)) + ")"
    return (f"INSERT INTO messages ({', '.join(MESSAGE_ROW[i] for i in present)}) "
            f"VALUES {', '.join([one] * size)}", itemgetter(*present))


# messages.action: what kind of message it is (the column's name is from when
# actions were the only other kind). From EDIT on, a row is a change to the message
# ``about`` names, kept in the one order with the messages (a client resuming with
# `since` is told it); history, search and replays read messages only (action < EDIT).
PLAIN, ACTION, NOTICE = 0, 1, 2
EDIT, DELETE, REACT, UNREACT = 3, 4, 5, 6
CHANGES = {"edit": EDIT, "delete": DELETE, "react": REACT, "unreact": UNREACT}
MESSAGE_COLUMNS = ("id, ts, sender, text, action, file, about, edited, deleted, "
                   "(SELECT r.sender FROM messages r WHERE r.id = messages.about)")


class Row(NamedTuple):
    id: int
    ts: int
    sender: str
    text: str
    kind: int  # PLAIN, ACTION or NOTICE; or a change: EDIT, DELETE, REACT, UNREACT
    file: str | None = None  # the file it carries, as JSON (docs/protocol.md, "Files")
    about: int | None = None  # the id it answers (a change: the message it changes)
    edited: int | None = None  # when its text was last changed
    deleted: bool = False
    reactions: dict[str, list[str]] | None = None  # emoji -> nicknames, in order
    about_from: str | None = None  # who sent the message it answers


class Target(NamedTuple):
    """A message as a change to it is checked against (``Store.message``)."""

    id: int
    ts: int
    room: str | None  # its room's key, or None for a direct message
    sender: str
    recipient: str | None
    kind: int
    deleted: bool
    edits: int  # how many times it was edited


class Store:
    """One SQLite database file of rooms, messages, accounts and bans.

    ``synchronous=FULL`` makes each commit durable against power loss, not only
    against a killed process; a commit covers a whole loop pass, so it is paid once
    per pass, not once per message. The loop never waits on SQLite: a lock held by
    another program fails at once (``timeout=0``), and every SQLite error comes out
    as ``StoreError``. A connection that found the file read-only is reopened (at most
    once a second) when a write is tried again, so fixing the file's permissions is
    enough for writes to work again.
    """

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.clock = clock
        try:
            if path != ":memory:":
                parent = os.path.dirname(os.path.abspath(path))
                os.makedirs(parent, exist_ok=True)
            self._db = self._connect()
            self._db.executescript(SCHEMA)
            self._check()
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(messages)")}
            if "file" not in columns:  # a database from before files: a column more
                self._db.execute("ALTER TABLE messages ADD COLUMN file TEXT")
            for column, kind in (("about", "INTEGER"), ("edited", "INTEGER"),
                                 ("deleted", "INTEGER NOT NULL DEFAULT 0")):
                if column not in columns:  # from before replies and edits
                    self._db.execute(f"ALTER TABLE messages ADD COLUMN {column} {kind}")
            indexed = enable_fts(self._db)  # None: searches scan (the same answers)
            row = self._db.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
            newest = self._db.execute("SELECT max(id) FROM messages").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {path}: {reason_of(exc)}",
                             reason_of(exc)) from None
        except OSError as exc:
            raise StoreError(f"cannot open database {path}: {exc.strerror or exc}") from None
        self._fts = indexed is not None
        self._indexed = self._indexed_committed = indexed or 0  # the index holds ids up to
        self._last_id = max(row[0] if row else 0, newest[0] or 0)
        self._in_transaction = False
        self._rows: list[tuple[Any, ...]] = []  # this pass's messages, not yet durable
        self._logged: list[tuple[Any, ...]] = []  # durable in the log, not yet in SQLite
        self._written = 0  # how many of _logged + _rows the open transaction holds
        self._failing = False  # SQLite could not write: passes commit there until it can
        self._known_rooms: set[str] = set()
        self._new_rooms: set[str] = set()  # rooms first stored in the open transaction
        self._reopen_at: float | None = None  # when a read-only connection may reopen
        self._seen_writes = 0
        self._journal: Journal | None = None
        self.replayed = 0  # messages put into SQLite from the log at start
        if path != ":memory:":
            self._journal = Journal(path + LOG_SUFFIX)
            self.replayed = self._replay()
        self._committed_id = self._last_id

    def _replay(self) -> int:
        """Put the messages the log holds beyond SQLite into it (after a crash
        between a pass's fdatasync and the batch that would have stored them)."""
        assert self._journal is not None
        fresh = []
        for row in self._journal.read():
            if not (len(row) == 9 and type(row[0]) is int):
                raise StoreError(f"message log {self._journal.path} holds rows of another "
                                 "form: move it away to start", "the message log is damaged")
            if row[0] > self._last_id:  # (the older ones SQLite committed already)
                fresh.append(row)
        if fresh:
            self._begin()
            self._insert(fresh, 0)
            self._execute("COMMIT")
            self._in_transaction = False
            self._last_id = max(self._last_id, fresh[-1][0])
        self._journal.reset()
        return len(fresh)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def _check(self) -> None:
        """A damaged file is refused at start, not found out at the first `hello`."""
        problems = [r[0] for r in self._db.execute("PRAGMA quick_check(3)").fetchall()]
        if problems != ["ok"]:
            first = " ".join(str(problems[0]).split())[:120]  # one line
            raise StoreError(f"database {self.path} is damaged ({first}): restore "
                             "a backup, or move the file away to start a new history",
                             "the database file is damaged")

    @property
    def last_id(self) -> int:
        """The id of the newest message added (committed or not)."""
        return self._last_id

    def rooms(self) -> list[tuple[str, str]]:
        """(key, name) of every room that has history."""
        rows = self._read("SELECT key, name FROM rooms", flush=False)
        self._known_rooms.update(key for key, _ in rows)
        return rows

    def add(self, ts: int, sender: str, text: str, *, room_key: str | None = None,
            room_name: str | None = None, recipient: str | None = None,
            kind: int = PLAIN, file: str | None = None, msg_id: int | None = None,
            about: int | None = None) -> int:
        """Add one message to the open transaction and return its new id (``msg_id``:
        the id the cluster gave it, above every id here; chat.cluster). ``about``: the
        id it answers; for a change (``kind`` EDIT and after), the message it changes,
        which ``change`` then changes."""
        if room_key is not None and room_key not in self._known_rooms:
            self._begin()  # (a pass that stores a room commits to SQLite)
            self._execute("INSERT OR IGNORE INTO rooms (key, name) VALUES (?, ?)",
                          (room_key, room_name))
            self._known_rooms.add(room_key)
            self._new_rooms.add(room_key)
        self._last_id = self._last_id + 1 if msg_id is None else msg_id
        self._rows.append((self._last_id, ts, room_key, sender, recipient, text, kind, file,
                           about))
        return self._last_id

    def message(self, msg_id: int) -> Target | None:
        """The message ``msg_id`` as a change is checked against; None when there is
        none (or the id is a change's)."""
        self._flush_rows()
        rows = self._read("SELECT id, ts, room, sender, recipient, action, deleted, "
                          "(SELECT count(*) FROM messages c WHERE c.about = m.id AND "
                          "c.action = ?) FROM messages m WHERE id = ? AND action < ?",
                          (EDIT, msg_id, EDIT))
        if not rows:
            return None
        r = rows[0]
        return Target(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7])

    def change(self, msg_id: int, kind: int, text: str, nick: str, ts: int,
               seq: int = 0) -> bool:
        """Apply a change (added with ``add``) to the message ``msg_id``, in the open
        transaction: EDIT its text, DELETE it (its text, reactions and index entry
        go), REACT or UNREACT with ``text`` as ``nick`` (``seq``: the change's own
        id, which orders reactions as they came). False when it changes nothing
        (a deleted message, a reaction already so): every copy decides the same, in
        the one order."""
        self._flush_rows()
        target = self._read("SELECT deleted FROM messages WHERE id = ? AND action < ?",
                            (msg_id, EDIT))
        if not target or target[0][0]:
            return False
        if kind == EDIT:
            self._execute("UPDATE messages SET text = ?, edited = ? WHERE id = ?",
                          (text, ts, msg_id))
            if self._fts and msg_id <= self._indexed:
                self._execute("DELETE FROM messages_fts WHERE rowid = ?", (msg_id,))
                self._execute("INSERT INTO messages_fts (rowid, text) VALUES (?, ?)",
                              (msg_id, text))
        elif kind == DELETE:
            self._execute("UPDATE messages SET text = '', file = NULL, deleted = 1 "
                          "WHERE id = ?", (msg_id,))
            self._execute("DELETE FROM reactions WHERE msg_id = ?", (msg_id,))
            if self._fts and msg_id <= self._indexed:
                self._execute("DELETE FROM messages_fts WHERE rowid = ?", (msg_id,))
        else:
            key = name_key(nick)
            had = self._read("SELECT 1 FROM reactions WHERE msg_id = ? AND emoji = ? AND "
                             "nick_key = ?", (msg_id, text, key))
            if bool(had) == (kind == REACT):
                return False
            if kind == REACT:
                self._execute("INSERT INTO reactions (msg_id, emoji, nick_key, nick, seq) "
                              "VALUES (?, ?, ?, ?, ?)", (msg_id, text, key, nick, seq))
            else:
                self._execute("DELETE FROM reactions WHERE msg_id = ? AND emoji = ? AND "
                              "nick_key = ?", (msg_id, text, key))
        return True

    def reactions(self, ids: list[int]) -> dict[int, dict[str, list[str]]]:
        """Who reacted with what to each of ``ids`` (those with reactions), the
        emoji in the order first used, the nicknames in the order they came."""
        found: dict[int, dict[str, list[str]]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for msg_id, emoji, nick in self._read(
                    "SELECT msg_id, emoji, nick FROM reactions WHERE msg_id IN "
                    f"({','.join('?' * len(chunk))}) ORDER BY msg_id, seq",
                    tuple(chunk)):
                found.setdefault(msg_id, {}).setdefault(emoji, []).append(nick)
        return found

    def _flush_rows(self) -> None:
        """Write the messages SQLite does not have yet into its open transaction (100
        rows a statement), before anything reads the table or SQLite commits."""
        logged, rows = self._logged, self._rows
        if self._written < len(logged) + len(rows):
            try:
                self._begin()
                pending = logged + rows if rows else logged
                self._insert(pending, self._written)
            except StoreError:
                self._failing = True
                raise
            self._written = len(pending)

    def _insert(self, rows: list[tuple[Any, ...]], start: int) -> None:
        """Insert ``rows[start:]`` into messages: each run of rows with the same NULL
        columns (most often every row) in INSERT_CHUNKS."""
        end = len(rows)
        while start < end:
            nulls = _nulls(rows[start])
            stop = start + 1
            while stop < end:
                row = rows[stop]  # (_nulls, inline: per row)
                if ((row[2] is None) | (row[4] is None) << 1 | (row[7] is None) << 2
                        | (row[8] is None) << 3) != nulls:
                    break
                stop += 1
            for size in INSERT_CHUNKS:
                if stop - start < size:
                    continue
                sql, pick = insert_many(nulls, size)
                while stop - start >= size:
                    self._execute(sql, tuple(chain.from_iterable(
                        map(pick, rows[start:start + size]))))
                    start += size

    def fill(self) -> None:
        """Put the logged messages into SQLite; the pass's commit commits them and
        empties the log (the hub's timer: batches off the message path)."""
        if self._logged:
            self._flush_rows()

    def _begin(self) -> None:
        if self._in_transaction:
            return
        if self._reopen_at is not None:
            if self.clock() < self._reopen_at:
                raise StoreError("database is read-only", REASONS[READONLY], write=True)
            self._reopen()
        self._execute("BEGIN IMMEDIATE")  # the write lock now, or an error now
        self._in_transaction = True

    def _reopen(self) -> None:
        # The old connection goes first: SQLite shares one file handle and one
        # shared-memory map per file within a process, so a new connection opened
        # beside it would inherit its read-only view.
        self._reopen_at = None
        self._db.close()
        try:
            self._db = self._connect()
        except sqlite3.Error as exc:
            self._reopen_at = self.clock() + REOPEN_SECONDS
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=0)
            raise StoreError(f"database {self.path}: {exc}", reason_of(exc),
                             write=True) from None

    # Accounts and bans are written in the pass's transaction too; the hub commits
    # at once after them, so the reply that confirms one goes out only when stored.

    def account(self, key: str) -> Account | None:
        rows = self._read("SELECT key, nick, salt, hash, params, created "
                          "FROM accounts WHERE key = ?", (key,), flush=False)
        return Account(*rows[0]) if rows else None

    def put_account(self, account: Account) -> None:
        self._begin()
        self._execute("INSERT OR REPLACE INTO accounts (key, nick, salt, hash, params, "
                      "created) VALUES (?, ?, ?, ?, ?, ?)", tuple(account))

    def accounts(self) -> list[tuple[str, int]]:
        """(nick, created) of every account, by nickname."""
        return self._read("SELECT nick, created FROM accounts ORDER BY key", flush=False)

    def account_rows(self) -> list[Account]:
        """Every account whole (a cluster node shares them: chat.cluster)."""
        rows = self._read("SELECT key, nick, salt, hash, params, created FROM accounts",
                          flush=False)
        return [Account(*row) for row in rows]

    def drop_account(self, key: str) -> None:
        self._begin()
        self._execute("DELETE FROM accounts WHERE key = ?", (key,))

    def bans(self) -> list[Ban]:
        rows = self._read("SELECT kind, key, value, reason, created, expires FROM bans",
                          flush=False)
        return [Ban(*row) for row in rows]

    def seen(self, nick_key: str, room_key: str) -> int | None:
        """The newest id when ``nick_key`` last left ``room_key`` (see SCHEMA)."""
        rows = self._read("SELECT last_id FROM seen WHERE nick = ? AND room = ?",
                          (nick_key, room_key), flush=False)
        return rows[0][0] if rows else None

    def put_seen(self, nick_key: str, room_key: str, last_id: int, ts: int) -> None:
        """Keep what a nickname saw of a room; past SEEN_ROWS rows the oldest go
        (checked once every SEEN_PRUNE_EVERY writes: an index walk, not a sort)."""
        self._begin()
        self._execute("INSERT OR REPLACE INTO seen (nick, room, last_id, ts) "
                      "VALUES (?, ?, ?, ?)", (nick_key, room_key, last_id, ts))
        self._seen_writes += 1
        if self._seen_writes >= SEEN_PRUNE_EVERY:
            self._seen_writes = 0
            self._execute("DELETE FROM seen WHERE ts <= (SELECT ts FROM seen ORDER BY ts "
                          "DESC LIMIT 1 OFFSET ?)", (SEEN_ROWS,))

    def read_markers(self, nick_key: str, limit: int = 1000) -> list[tuple[str, int]]:
        """(conversation, last id read) of a nickname, the most recently read first."""
        return self._read("SELECT conv, last_id FROM read_markers WHERE nick_key = ? "
                          "ORDER BY ts DESC LIMIT ?", (nick_key, limit), flush=False)

    def read_marker(self, nick_key: str, conv: str) -> int:
        return (self._read("SELECT last_id FROM read_markers WHERE nick_key = ? AND "
                           "conv = ?", (nick_key, conv), flush=False) or [(0,)])[0][0]

    def ts_of(self, msg_id: int) -> int | None:
        """When the message ``msg_id`` (or the last one before it) was sent."""
        self._flush_rows()
        rows = self._read("SELECT ts FROM messages WHERE id <= ? ORDER BY id DESC LIMIT 1",
                          (msg_id,))
        return rows[0][0] if rows else None

    def put_read(self, nick_key: str, conv: str, last_id: int, ts: int) -> bool:
        """Move a read marker forward (never back), in the open transaction; whether
        it moved."""
        if not self._in_transaction:
            self._begin()
        before = self._db.total_changes
        self._execute("INSERT INTO read_markers (nick_key, conv, last_id, ts) VALUES "
                      "(?, ?, ?, ?) ON CONFLICT (nick_key, conv) DO UPDATE SET "
                      "last_id = excluded.last_id, ts = excluded.ts "
                      "WHERE excluded.last_id > read_markers.last_id",
                      (nick_key, conv, last_id, ts))
        return self._db.total_changes > before

    def room_rules(self) -> list[tuple[str, str]]:
        return self._read("SELECT key, data FROM room_rules", flush=False)

    def put_room_rules(self, key: str, data: str) -> None:
        self._begin()
        self._execute("INSERT OR REPLACE INTO room_rules (key, data) VALUES (?, ?)",
                      (key, data))

    def put_ban(self, ban: Ban) -> None:
        self._begin()
        self._execute("INSERT OR REPLACE INTO bans (kind, key, value, reason, created, "
                      "expires) VALUES (?, ?, ?, ?, ?, ?)", tuple(ban))

    def drop_ban(self, kind: str, key: str) -> None:
        self._begin()
        self._execute("DELETE FROM bans WHERE kind = ? AND key = ?", (kind, key))

    def commit(self) -> bool:
        """Make everything written since the last commit durable; whether there was
        anything. Only messages: appended to the log (see the module); else (or
        while SQLite fails to write) SQLite commits, the logged messages with it,
        and the log is emptied. ``StoreError``
        when it cannot: ``rollback`` must be called then (the pass's messages are
        forgotten, those logged earlier are kept) to learn which rooms it had made."""
        if self._in_transaction or (self._rows and (
                self._journal is None or self._failing or len(self._logged) >= LOG_ROWS)):
            self._flush_rows()
            self._execute("COMMIT")
            self._in_transaction = self._failing = False
            self._logged, self._rows, self._written = [], [], 0
            if self._journal is not None:
                self._journal.reset()
        elif self._rows:
            assert self._journal is not None
            self._journal.append(self._rows)
            self._logged += self._rows
            self._rows = []
        else:
            return False
        self._committed_id = self._last_id
        self._indexed_committed = self._indexed
        self._new_rooms.clear()
        return True

    def rollback(self) -> set[str]:
        """Forget the open transaction (after a failed write); return the keys of the
        rooms it had stored for the first time."""
        self._in_transaction = False
        self._failing = True  # the next passes commit to SQLite, until one can
        self._rows = []
        self._written = 0  # the logged messages are SQLite's to take again
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite rolls back by itself after the errors that end a transaction
        self._last_id = self._committed_id
        self._indexed = self._indexed_committed
        rooms, self._new_rooms = self._new_rooms, set()
        self._known_rooms -= rooms
        return rooms

    def newest(self, room_key: str, *, after: int = 0, before: int | None = None,
               limit: int, oldest: bool = False, changes: bool = False
               ) -> Generator[Row, None, None]:
        """A room's messages with ``after < id < before``, newest first (``oldest``:
        oldest first), at most ``limit``; read a page at a time, so stopping early
        costs only what was read. Close the iterator when done
        (``contextlib.closing``). ``changes``: the changes to messages too (a client
        catching up on what it missed)."""
        upper = before if before is not None else self._last_id + 1
        order = "ASC" if oldest else "DESC"
        self._flush_rows()
        try:
            cursor = self._db.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE room = ? AND id > ? AND "
                f"id < ? {'' if changes else f'AND action < {EDIT} '}"
                f"ORDER BY id {order} LIMIT ?", (room_key, after, upper, limit))
        except sqlite3.Error as exc:
            raise StoreError(f"database {self.path}: {exc}", reason_of(exc)) from None
        try:
            while True:
                try:
                    page = cursor.fetchmany(PAGE_ROWS)
                except sqlite3.Error as exc:
                    raise StoreError(f"database {self.path}: {exc}",
                                     reason_of(exc)) from None
                if not page:
                    return
                yield from self._rows_of(page)
        finally:
            cursor.close()

    def _rows_of(self, page: list[tuple]) -> list[Row]:
        """Rows as read (MESSAGE_COLUMNS), with their reactions."""
        reacted = self.reactions([r[0] for r in page if r[4] < EDIT])
        return [Row(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]),
                    reacted.get(r[0]), r[9]) for r in page]

    def direct(self, one: str, other: str, *, after: int = 0, before: int | None = None,
               limit: int, oldest: bool = False, changes: bool = False
               ) -> list[tuple[Row, str]]:
        """Direct messages between ``one`` and ``other`` (nicknames; ASCII case does
        not matter) with ``after < id < before``: the newest ``limit`` (``oldest``:
        the oldest), newest first (oldest first), each with its recipient. Two index
        range reads of at most ``limit`` rows each, whatever the history's size."""
        upper = before if before is not None else self._last_id + 1
        order = "ASC" if oldest else "DESC"
        self._flush_rows()
        found: list[tuple[Row, str]] = []
        try:
            for sender, recipient in ((one, other), (other, one)):
                page = self._db.execute(
                    f"SELECT {MESSAGE_COLUMNS}, recipient FROM messages "
                    "WHERE recipient IS NOT NULL AND sender = ? COLLATE NOCASE AND "
                    "recipient = ? COLLATE NOCASE AND id > ? AND id < ? "
                    f"{'' if changes else f'AND action < {EDIT} '}"
                    f"ORDER BY id {order} LIMIT ?",
                    (sender, recipient, after, upper, limit)).fetchall()
                found += zip(self._rows_of(page), (r[-1] for r in page), strict=True)
                if sender.casefold() == recipient.casefold():
                    break  # notes to oneself: one read
        except sqlite3.Error as exc:
            raise StoreError(f"database {self.path}: {exc}", reason_of(exc)) from None
        found.sort(key=lambda pair: pair[0].id, reverse=not oldest)
        return found[:limit]

    def latest(self, room_key: str, *, after: int = 0, before: int | None = None,
               limit: int) -> tuple[list[Row], bool]:
        """The newest ``limit`` messages of a room with ``after < id < before``,
        oldest first, and whether older matching ones were left out."""
        with closing(self.newest(room_key, after=after, before=before,
                                 limit=limit + 1)) as rows:
            found = list(rows)
        more = len(found) > limit
        return found[:limit][::-1], more

    def id_at(self, ts: int) -> int:
        """The first message id stored at ``ts`` (ms) or later; past the newest when
        none is. Ids and times rise together (the server stamps each message as it
        stores it), so this is a binary search of ~40 lookups by primary key, whatever
        the size of the history."""
        low, high = 1, self._last_id + 1  # the answer is in [low, high]
        self._flush_rows()
        try:
            while low < high:
                mid = (low + high) // 2
                row = self._db.execute("SELECT id, ts FROM messages WHERE id >= ? "
                                       "ORDER BY id LIMIT 1", (mid,)).fetchone()
                if row is None or row[1] >= ts:
                    high = mid
                else:
                    low = row[0] + 1
        except sqlite3.Error as exc:
            raise StoreError(f"database {self.path}: {exc}", reason_of(exc)) from None
        return low

    def index(self, limit: int) -> int:
        """Add up to ``limit`` stored messages to the search index, in the open
        transaction; return how many. Only committed messages: a failed pass never
        leaves an indexed message that is not stored."""
        if not self._fts or self._indexed >= self._committed_id:
            return 0
        upto = self._read("SELECT max(id) FROM (SELECT id FROM messages WHERE id > ? AND "
                          "id <= ? ORDER BY id LIMIT ?)",
                          (self._indexed, self._committed_id, limit))[0][0]
        if upto is None:
            self._indexed = self._committed_id
            return 0
        self._begin()
        self._execute("INSERT INTO messages_fts (rowid, text) SELECT id, text FROM messages "
                      "WHERE id > ? AND id <= ? AND action < ? AND deleted = 0",
                      (self._indexed, upto, EDIT))
        added = upto - self._indexed
        self._indexed = upto
        return added

    def search(self, query: Query, scope: Scope) -> tuple[list[tuple], bool]:
        """Messages matching ``query`` that ``scope`` may see, best first
        (chat.search); ``TooBroad`` past the time budget. The index is caught up
        first (at most ``CATCH_UP`` messages: beyond, the newest are left out)."""
        self.index(CATCH_UP)
        try:
            upto = self._indexed if self._fts else self._committed_id
            return Search(self._db, self._fts).find(query, scope._replace(
                upto=min(scope.upto, upto)))
        except sqlite3.Error as exc:
            raise StoreError(f"database {self.path}: {exc}", reason_of(exc)) from None

    def file_names(self, limit: int = 5000) -> dict[str, str]:
        """File id -> the name it was last sent under (the newest ``limit`` messages
        that carry a file)."""
        rows = self._read("SELECT json_extract(file, '$.id'), json_extract(file, '$.name') "
                          "FROM messages WHERE file IS NOT NULL ORDER BY id DESC LIMIT ?",
                          (limit,))
        names: dict[str, str] = {}
        for sha, name in rows:
            if isinstance(sha, str):
                names.setdefault(sha, name)  # newest first
        return names

    def file_readable(self, sha256: str, rooms: list[str], nick: str) -> bool:
        """Whether a message carrying file ``sha256`` was sent to one of ``rooms``
        (room keys) or in a direct conversation of ``nick`` (ASCII case does not
        matter, as for direct history). One index range read: the messages that
        carry this file."""
        rows = self._read(
            "SELECT 1 FROM messages WHERE file IS NOT NULL "
            "AND json_extract(file, '$.id') = ? AND (room IN (SELECT value FROM json_each(?)) "
            "OR (recipient IS NOT NULL AND (sender = ? COLLATE NOCASE "
            "OR recipient = ? COLLATE NOCASE))) LIMIT 1",
            (sha256, json.dumps(rooms), nick, nick))
        return bool(rows)

    @property
    def full_text(self) -> bool:
        """Whether searches use the FTS5 index (else a scan)."""
        return self._fts

    def _read(self, sql: str, args: tuple = (), flush: bool = True) -> list[Any]:
        """``flush``: the messages not yet in SQLite are written first (a read of
        other tables than messages leaves them where they are)."""
        if flush:
            self._flush_rows()
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"database {self.path}: {exc}", reason_of(exc)) from None

    def _execute(self, sql: str, args: tuple = ()) -> None:
        self._execute_many(sql, args, many=False)

    def _execute_many(self, sql: str, rows: Any, many: bool = True) -> None:
        try:
            if many:
                self._db.executemany(sql, rows)
            else:
                self._db.execute(sql, rows)
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", 0) or 0
            if code & 0xFF == READONLY:
                self._reopen_at = self.clock() + REOPEN_SECONDS
            raise StoreError(f"database {self.path}: {exc}", reason_of(exc),
                             write=True) from None

    def close(self) -> None:
        try:
            self.fill()
            self.commit()
        except StoreError:
            self.rollback()
        self._db.close()
        if self._journal is not None:
            self._journal.close()
