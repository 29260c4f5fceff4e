"""The message log: how a pass's messages are on disk before anyone receives them.

A pass that only adds messages (the common one) appends them to this file as one
record and fdatasyncs it once; SQLite gets them later, many passes at a time
(``chat.store``), and the file is emptied when SQLite has committed them. After a
crash, the records still in it are read back and put into SQLite before the server
serves anyone.

A record is ``<length u32><crc32 u32>`` (little-endian) then ``length`` bytes: a
list of message rows (tuples of ints, strings and None) in ``marshal`` format 4,
which CPython has read the same since 3.4 and which costs a fifth of JSON (a log
lives a second; it is read only by the server that wrote it, after a crash). The
file starts with ``MAGIC``. Reading stops at the first record that is cut short or
fails its checksum (a crash in the middle of an append): everything before it was
fsynced whole, nothing after it was acknowledged. A whole record that does not load
is not taken for a torn one: the server refuses to start and says why.
"""

from __future__ import annotations

import marshal
import os
import struct
import zlib
from typing import Any

from chat.errors import StoreError

MAGIC = b"lanchat-log 1\n"
HEAD = struct.Struct("<II")
MAX_RECORD = 1 << 30
MARSHAL_VERSION = 4
ATOMS = (int, str, type(None))

# what an operator is told for the errors that stop an append
REASONS = {28: "the disk is full", 30: "the database is read-only for the server",
           13: "the database is read-only for the server", 5: "the disk reports an error"}


def _reason(exc: OSError) -> str:
    return REASONS.get(exc.errno or 0, exc.strerror or str(exc))


class Journal:
    """One append-only file of message rows beside the database (see the module)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            existed = os.path.exists(path)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0),
                               0o600)
            if not existed:
                os.write(self._fd, MAGIC)
                _sync(self._fd)
                _sync_dir(os.path.dirname(os.path.abspath(path)))
            self._size = os.fstat(self._fd).st_size  # the end of the last whole record
        except OSError as exc:
            raise StoreError(f"cannot open message log {path}: {_reason(exc)}",
                             _reason(exc)) from None

    @property
    def empty(self) -> bool:
        return self._size <= len(MAGIC)

    def read(self) -> list[tuple[Any, ...]]:
        """The rows of every whole record, oldest first (see the module)."""
        try:
            os.lseek(self._fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(self._fd, 1 << 20):
                chunks.append(chunk)
        except OSError as exc:
            raise StoreError(f"cannot read message log {self.path}: {_reason(exc)}",
                             _reason(exc)) from None
        data = b"".join(chunks)
        rows: list[tuple[Any, ...]] = []
        if not data.startswith(MAGIC):
            if data:  # not ours: never overwritten
                raise StoreError(f"{self.path} is not a lanchat message log: move it "
                                 "away to start", "the message log is damaged")
            return rows
        at = len(MAGIC)
        while at + HEAD.size <= len(data):
            length, crc = HEAD.unpack_from(data, at)
            body = data[at + HEAD.size:at + HEAD.size + length]
            if length > MAX_RECORD or len(body) < length or zlib.crc32(body) != crc:
                break  # a torn append: nothing from here on was acknowledged
            try:
                found = marshal.loads(body)
                if not (isinstance(found, list) and all(
                        type(row) is tuple and all(type(v) in ATOMS for v in row)
                        for row in found)):
                    raise ValueError("not a list of rows")
            except (ValueError, EOFError, TypeError) as exc:
                raise StoreError(f"message log {self.path} holds a record this Python "
                                 f"cannot read ({exc}): run the version that wrote it "
                                 "once, or move the file away", "the message log is "
                                 "damaged") from None
            rows.extend(found)
            at += HEAD.size + length
        self._size = at
        return rows

    def append(self, rows: list[tuple[Any, ...]]) -> None:
        """Append ``rows`` as one record and wait until they are on disk;
        ``StoreError`` (write=True) when they are not (the file is cut back)."""
        body = marshal.dumps(rows, MARSHAL_VERSION)
        record = HEAD.pack(len(body), zlib.crc32(body)) + body
        try:
            os.lseek(self._fd, self._size, os.SEEK_SET)
            written = 0
            while written < len(record):
                written += os.write(self._fd, record[written:])
            _sync(self._fd)
        except OSError as exc:
            try:  # a torn record is cut off (else the next append writes over it)
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            raise StoreError(f"message log {self.path}: {_reason(exc)}", _reason(exc),
                             write=True) from None
        self._size += len(record)

    def reset(self) -> None:
        """Empty the log: everything in it is committed to SQLite."""
        if self.empty:
            return
        try:
            os.ftruncate(self._fd, len(MAGIC))
            _sync(self._fd)
        except OSError:
            return  # kept: its rows are in SQLite, and skipped when read again
        self._size = len(MAGIC)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


def _sync(fd: int) -> None:
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def _sync_dir(path: str) -> None:
    """Make a new file's name durable (POSIX; Windows has no directory handles)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
