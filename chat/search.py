"""Full-text search over the history a user may see: SQLite FTS5, or a scan.

A query is words and filters: ``from:NICK`` (messages by that nickname), ``in:ROOM``
(one room). Words are matched accent- and case-insensitively, all of them, as whole
words; they are never read as FTS5 syntax (``"``, ``*``, ``NEAR``, ``OR`` are just
words or nothing). Results are ranked by BM25 (FTS5's formula), newest first among
equals, and carry a snippet with the matched words marked.

Where the Python build's SQLite lacks FTS5, ``Search`` scans the messages and ranks
them with the same formula in Python: slower, the same answers. The index is filled
in batches off the message path (``Store.index``) and caught up before a search. The
FTS5 query runs under a time budget (a progress handler), so a search that matches
too much is refused instead of holding the loop.
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

from chat.protocol import name_key

MAX_QUERY = 200  # characters of a query
MAX_TERMS = 8  # words of a query (the rest are ignored)
RESULTS_MAX = 50
SNIPPET_CHARS = 120  # around the first match
BUDGET_S = 0.15  # a search longer than this is stopped: "too broad"
PROGRESS_STEPS = 2000  # SQLite VM steps between checks of the budget
SCAN_CHECK = 500  # messages between checks of the budget when scanning without FTS5
K1, B = 1.2, 0.75  # BM25 as FTS5 computes it
# The index of message texts. It is filled after the fact, in batches (``Store.index``),
# not by a trigger: indexing each message in the transaction that stores it halved
# the rate at which a small room takes messages (bench/ab.py, 10:10).
FTS_TABLE = ("CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(text, "
             "content='messages', content_rowid='id', "
             "tokenize='unicode61 remove_diacritics 2')")
_TOKEN = re.compile(r"[^\W_]+")  # letters and digits (unicode61: "_" separates)


class TooBroad(Exception):
    """The search ran past its time budget."""


def fold(word: str) -> str:
    """A token as FTS5's unicode61 tokenizer (remove_diacritics 2) keeps it."""
    decomposed = unicodedata.normalize("NFD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def tokens(text: str) -> list[str]:
    return [fold(m.group()) for m in _TOKEN.finditer(text)]


@dataclass(frozen=True)
class Query:
    terms: tuple[str, ...]
    sender: str | None  # a nickname key (from:)
    room: str | None  # a room key (in:)

    @property
    def empty(self) -> bool:
        return not self.terms and self.sender is None and self.room is None


def parse_query(text: str) -> Query:
    terms: list[str] = []
    sender = room = None
    for word in text[:MAX_QUERY].split():
        lowered = word.lower()
        if lowered.startswith("from:") and len(word) > 5:
            sender = name_key(word[5:].lstrip("@"))
        elif lowered.startswith("in:") and len(word) > 3:
            room = name_key(word[3:].lstrip("#"))
        else:
            for token in tokens(word):
                if token not in terms:
                    terms.append(token)
    return Query(tuple(terms[:MAX_TERMS]), sender, room)


def snippet(text: str, terms: tuple[str, ...]) -> list[list[Any]]:
    """The text around the first match, as [piece, matched] pairs."""
    wanted = set(terms)
    hits = [(m.start(), m.end()) for m in _TOKEN.finditer(text) if fold(m.group()) in wanted]
    start = 0
    if hits and hits[0][0] > SNIPPET_CHARS // 3:
        start = hits[0][0] - SNIPPET_CHARS // 3
    end = min(len(text), start + SNIPPET_CHARS)
    parts: list[list[Any]] = []
    if start > 0:
        parts.append(["…", False])
    at = start
    for a, b in hits:
        if b <= start or a >= end:
            continue
        if a > at:
            parts.append([text[at:a], False])
        parts.append([text[max(a, at):min(b, end)], True])
        at = min(b, end)
    if at < end:
        parts.append([text[at:end], False])
    if end < len(text):
        parts.append(["…", False])
    return parts


class Scope(NamedTuple):
    """What the asker may see: these rooms, and these direct messages."""

    rooms: tuple[str, ...]  # room keys
    dm_ids: tuple[int, ...]  # ids of the direct messages of this connection
    upto: int  # the newest committed id: nothing the pass may still take back


def enable_fts(db: sqlite3.Connection) -> int | None:
    """Make the index if it is missing; return the newest message id it holds, or
    None when this SQLite has no FTS5 or the file cannot take the index now
    (read-only, locked): searches then scan."""
    try:
        db.execute(FTS_TABLE)
        row = db.execute("SELECT rowid FROM messages_fts ORDER BY rowid DESC LIMIT 1"
                         ).fetchone()
    except sqlite3.OperationalError:
        return None
    return row[0] if row else 0


class Search:
    """Searches of one database connection; ``fts`` False: the scan, same answers.
    SQLite errors come out as they are (the store turns them into ``StoreError``)."""

    def __init__(self, db: sqlite3.Connection, fts: bool) -> None:
        self.db = db
        self.fts = fts
        db.create_function("name_key", 1, name_key, deterministic=True)

    def find(self, query: Query, scope: Scope, limit: int = RESULTS_MAX
             ) -> tuple[list[tuple], bool]:
        """Matching rows (id, ts, room, sender, recipient, text, action), best first,
        at most ``limit``; and whether more matched."""
        rooms = [r for r in scope.rooms if query.room is None or r == query.room]
        dm_ids = list(scope.dm_ids) if query.room is None else []
        if not rooms and not dm_ids:
            return [], False
        where = [f"(m.room IN ({','.join('?' * len(rooms))})"
                 f" OR m.id IN ({','.join('?' * len(dm_ids))}))"]
        args: list[Any] = [*rooms, *dm_ids]
        where.append("m.id <= ?")
        args.append(scope.upto)
        where.append("m.action < 3 AND m.deleted = 0")  # messages (not changes), not deleted
        if query.sender is not None:
            where.append("name_key(m.sender) = ?")
            args.append(query.sender)
        if not query.terms:  # filters only: the newest first
            rows = self._run(f"SELECT m.id, m.ts, m.room, m.sender, m.recipient, m.text, "
                             f"m.action FROM messages m WHERE {' AND '.join(where)} "
                             f"ORDER BY m.id DESC LIMIT ?", (*args, limit + 1))
            return rows[:limit], len(rows) > limit
        if self.fts:
            match = " AND ".join(f'"{t}"' for t in query.terms)  # letters and digits only
            rows = self._run(
                "SELECT m.id, m.ts, m.room, m.sender, m.recipient, m.text, m.action "
                "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
                f"WHERE messages_fts MATCH ? AND {' AND '.join(where)} "
                "ORDER BY bm25(messages_fts), m.id DESC LIMIT ?", (match, *args, limit + 1))
            return rows[:limit], len(rows) > limit
        return self._scan(query, where, args, limit)

    def _run(self, sql: str, args: tuple) -> list[tuple]:
        deadline = time.perf_counter() + BUDGET_S
        self.db.set_progress_handler(lambda: int(time.perf_counter() > deadline),
                                     PROGRESS_STEPS)
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                raise TooBroad from None
            raise
        finally:
            self.db.set_progress_handler(None, 0)

    def _scan(self, query: Query, where: list[str], args: list[Any], limit: int
              ) -> tuple[list[tuple], bool]:
        """BM25 over every message, as FTS5 computes it (the corpus is the whole table)."""
        deadline = time.perf_counter() + BUDGET_S  # the same budget as FTS5's
        total = 0
        length_sum = 0
        frequency: Counter[str] = Counter()
        for (text,) in self.db.execute("SELECT text FROM messages WHERE action < 3 "
                                       "AND deleted = 0"):  # what the index holds
            if total % SCAN_CHECK == 0 and time.perf_counter() > deadline:
                raise TooBroad
            words = tokens(text)
            total += 1
            length_sum += len(words)
            frequency.update(set(words) & set(query.terms))
        if not total:
            return [], False
        average = length_sum / total
        idf = {t: max(1e-6, math.log((total - frequency[t] + 0.5) / (frequency[t] + 0.5)))
               for t in query.terms}
        scored = []
        for seen, row in enumerate(self.db.execute(
                "SELECT m.id, m.ts, m.room, m.sender, m.recipient, m.text, m.action "
                f"FROM messages m WHERE {' AND '.join(where)}", args)):
            if seen % SCAN_CHECK == 0 and time.perf_counter() > deadline:
                raise TooBroad
            words = tokens(row[5])
            counts = Counter(words)
            if any(counts[t] == 0 for t in query.terms):
                continue
            norm = K1 * (1 - B + B * len(words) / average)
            score = -sum(idf[t] * counts[t] * (K1 + 1) / (counts[t] + norm)
                         for t in query.terms)
            scored.append((score, -row[0], row))
        scored.sort()
        rows = [row for _, _, row in scored[:limit + 1]]
        return rows[:limit], len(rows) > limit
