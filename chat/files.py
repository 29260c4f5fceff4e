"""Files sent to rooms and people: stored once by content, moved in chunks.

An upload is offered (name, size, SHA-256), then sent as ``chunk`` frames that the
loop handles like any other frame, so a big file never holds up anyone's messages.
Bytes go to a partial file of their own, ``partial/<sha256>.<owner>`` (the owner: the
sender's nickname, hashed), written by one upload at a time; a dropped connection
leaves it there, and the same sender's next offer of the same file resumes where it
ends (after its SHA-256 is computed again, a bounded amount per pass). A complete
file is checked against its SHA-256, its partial closed, and only then linked as the
kept ``<sha256>``, never over a kept file: a kept file is never opened for writing.
A partial nobody has written for ``idle`` seconds is removed (at start, and by
``expire`` as the server runs).

Space is reserved, not hoped for: an offer reserves the bytes it still needs, and
``kept + partial + reserved <= quota`` always holds; a chunk cannot pass its offer's
size, and an abandoned upload gives its reservation back (its partial's bytes stay
counted until it is resumed, deleted or expired).

Disk I/O here is plain ``os`` calls on local files, bounded per pass (one chunk per
frame, ``HASH_STEP`` bytes of rehashing, ``PUMP_BYTES`` of downloads, ``EXPIRE_STEP``
partials removed); nothing waits on the network.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from chat.errors import ProtocolError

if TYPE_CHECKING:
    from chat.model import Peer, Room

HASH_STEP = 4 * 1024 * 1024  # bytes of a partial file rehashed per pass (resume)
PUMP_BYTES = 2 * 1024 * 1024  # bytes of downloads read per pass, over all readers
UPLOADS_PER_PEER = 4  # uploads one connection may have open at once
PROGRESS_EVERY = 1024 * 1024  # an upload_progress frame per this many bytes received
MAX_NAME = 255  # characters of a file name
SHA256_HEX = frozenset("0123456789abcdef")
EXPIRE_STEP = 256  # partials removed per call of ``expire``
EXPIRE_SCAN = 4096  # partials looked at per call of ``expire`` (a sweep takes turns)
CLUSTER_OWNER = "@cluster"  # copies from other nodes (no nickname can be this)


def owner_tag(owner: str) -> str:
    """The part of a partial's file name that says whose it is."""
    return hashlib.sha256(owner.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class Partial(NamedTuple):
    """An upload's bytes so far, as the operator sees them."""
    name: str  # file name under partial/: "<sha256>.<owner tag>"
    size: int
    idle: float  # seconds since it was last written
    open: bool  # an upload is writing it now


def clean_name(name: str) -> str:
    """A file name as shown: its last path part, without control characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:MAX_NAME] or "file"


def chunk_size(max_frame: int) -> int:
    """Raw bytes per chunk so that the base64 frame fits in ``max_frame``."""
    return max(256, (max_frame - 200) * 3 // 4 // 3 * 3)


@dataclass(eq=False)
class Upload:
    token: str
    sha256: str
    size: int
    name: str
    kind: str  # MIME type as the sender gave it
    target: Room | Peer | None  # where it goes: a room, a person (None: a cluster's copy)
    ref: str | None
    path: str
    sender: Peer | None = None  # whose connection sends it (None: a cluster's copy)
    reserved: int = 0  # bytes of the quota kept for what is still to come
    received: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)
    fd: int | None = None
    hashing: int = 0  # bytes of an existing partial still to rehash (resume)
    reported: int = 0  # received, as last said in upload_progress

    @property
    def ready(self) -> bool:
        return self.hashing == 0


@dataclass(eq=False)
class Download:
    sha256: str
    fd: int
    offset: int
    size: int
    ref: str | None


class Files:
    """The files directory: blobs by SHA-256, partial uploads, the space they use."""

    def __init__(self, root: str, max_size: int, quota: int, idle: float = 86400.0,
                 clock: Any = time.time) -> None:
        self.root = root
        self.partial = os.path.join(root, "partial")
        self.max_size = max_size
        self.quota = quota
        self.idle = idle
        self.clock = clock  # wall-clock seconds, as files' modification times are
        os.makedirs(self.partial, exist_ok=True)
        self.kept = 0  # bytes of kept files
        for entry in os.scandir(root):
            if entry.is_file():
                self.kept += entry.stat().st_size
        self.partials: dict[str, list[float]] = {}  # name: [size, last written]
        self.writing: dict[str, Upload] = {}  # partial path: the upload writing it
        self.reserved = 0
        self._sweep: list[str] = []  # partials' names, looked at in turn by ``expire``
        self._sweep_at = 0
        stale = self.clock() - idle
        for entry in os.scandir(self.partial):
            if entry.is_file():
                info = entry.stat()
                if info.st_mtime < stale:
                    self._remove(entry.path)
                else:
                    self.partials[entry.name] = [info.st_size, info.st_mtime]

    @property
    def used(self) -> int:
        """Bytes on disk: kept files and partials."""
        return self.kept + int(sum(size for size, _ in self.partials.values()))

    # ------------------------------------------------------------ uploads

    def blob(self, sha256: str) -> str:
        return os.path.join(self.root, sha256)

    def stored(self, sha256: str) -> bool:
        return os.path.isfile(self.blob(sha256))

    def size_of(self, sha256: str) -> int | None:
        try:
            return os.path.getsize(self.blob(sha256))
        except OSError:
            return None

    def partial_path(self, sha256: str, owner: str) -> str:
        return os.path.join(self.partial, f"{sha256}.{owner_tag(owner)}")

    def sending(self, sha256: str, owner: str) -> Upload | None:
        """The upload open on ``owner``'s partial of ``sha256`` (another connection's,
        say one that has not noticed yet that it was cut), or None."""
        return self.writing.get(self.partial_path(sha256, owner))

    def offer(self, sha256: str, size: int, name: str, kind: str, target: Room | Peer | None,
              ref: str | None, owner: str = CLUSTER_OWNER,
              sender: Peer | None = None) -> Upload:
        """A new upload (raises ``ProtocolError`` when refused). Its bytes so far
        are those of ``owner``'s earlier, dropped upload of the same file. The caller
        abandons an upload still open on that partial first (``sending``)."""
        if size > self.max_size:
            raise ProtocolError("file_too_big", f"Files may be at most "
                                f"{self.max_size / 1e6:g} MB on this server.")
        path = self.partial_path(sha256, owner)
        assert path not in self.writing, "abandon the older upload first"
        entry = self.partials.get(os.path.basename(path))
        on_disk = int(entry[0]) if entry is not None else 0
        have = min(on_disk, size)  # a longer leftover (another size) is cut
        need = size - have
        if self.used - (on_disk - have) + self.reserved + need > self.quota:
            raise ProtocolError("over_quota", "The server has no room for this file "
                                              "(its file quota is full); ask the operator.")
        upload = Upload(secrets.token_hex(8), sha256, size, clean_name(name), kind[:100],
                        target, ref, path, sender)
        try:
            upload.fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0),
                                0o600)
            os.ftruncate(upload.fd, have)
        except OSError as exc:
            self._close(upload)
            raise ProtocolError("store_failed", f"The server cannot store files now "
                                f"({exc.strerror or exc}).") from None
        self.partials[os.path.basename(path)] = [have, self.clock()]
        self.writing[path] = upload
        upload.reserved = need
        self.reserved += need
        upload.hashing = have
        return upload

    def fetch(self, sha256: str, size: int) -> Upload:
        """Room for a file this server is about to copy from another server of its
        cluster (chat.cluster), from its first byte; ``ProtocolError`` when refused."""
        older = self.sending(sha256, CLUSTER_OWNER)
        if older is not None:
            self.abandon(older)
        upload = self.offer(sha256, size, sha256, "", None, None)
        if upload.hashing:  # an earlier partial copy: started over
            assert upload.fd is not None
            os.ftruncate(upload.fd, 0)
            self.partials[os.path.basename(upload.path)][0] = 0
            upload.reserved += upload.hashing
            self.reserved += upload.hashing
            upload.hashing = 0
        return upload

    def rehash(self, upload: Upload) -> None:
        """Hash up to ``HASH_STEP`` more bytes of the partial file (resume)."""
        assert upload.fd is not None
        step = min(HASH_STEP, upload.hashing)
        data = os.pread(upload.fd, step, upload.received)
        upload.hasher.update(data)
        upload.received += len(data)
        upload.hashing = 0 if len(data) < step else upload.hashing - step

    def write(self, upload: Upload, offset: int, data: bytes) -> bool:
        """Add a chunk; whether the file is complete. ``ProtocolError`` for a chunk
        out of place, too many bytes, or a disk that cannot take it."""
        if offset != upload.received:
            raise ProtocolError("bad_offset", f"Expected the chunk at offset "
                                f"{upload.received}.")
        if upload.received + len(data) > upload.size:
            raise ProtocolError("bad_field", "More bytes than the file's size.")
        assert upload.fd is not None and len(data) <= upload.reserved
        try:
            os.pwrite(upload.fd, data, offset)
        except OSError as exc:
            raise ProtocolError("store_failed", f"The server could not store the file "
                                f"({exc.strerror or exc}).") from None
        upload.hasher.update(data)
        upload.received += len(data)
        upload.reserved -= len(data)
        self.reserved -= len(data)
        entry = self.partials[os.path.basename(upload.path)]
        entry[0] += len(data)
        entry[1] = self.clock()
        return upload.received == upload.size

    def finish(self, upload: Upload) -> None:
        """The whole file came: check it and keep it (``hash_mismatch`` otherwise,
        and its bytes are dropped: a resend starts over). The partial is closed
        before it becomes the kept file, which is linked, never written over."""
        self._close(upload)
        if upload.hasher.hexdigest() != upload.sha256:
            self._drop(upload.path)
            raise ProtocolError("hash_mismatch", "The file arrived different from its "
                                                 "SHA-256; send it again.")
        blob = self.blob(upload.sha256)
        try:
            os.link(upload.path, blob)  # fails if kept already: never over a kept file
            self.kept += upload.size
        except FileExistsError:
            pass  # kept already (sent by someone else): the same bytes
        except OSError:  # a file system without hard links (FAT on a USB stick)
            if not os.path.exists(blob):
                os.rename(upload.path, blob)
                self.kept += upload.size
                self._forget(upload.path)
                return
        self._drop(upload.path)

    def abandon(self, upload: Upload) -> None:
        """The connection went: its bytes stay, for a resume; its reservation goes."""
        self._close(upload)

    def _close(self, upload: Upload) -> None:
        if upload.fd is not None:
            os.close(upload.fd)
            upload.fd = None
        if self.writing.get(upload.path) is upload:
            del self.writing[upload.path]
        self.reserved -= upload.reserved
        upload.reserved = 0

    def _forget(self, path: str) -> None:
        self.partials.pop(os.path.basename(path), None)

    def _drop(self, path: str) -> None:
        """Remove a partial file."""
        self._forget(path)
        self._remove(path)

    @staticmethod
    def _remove(path: str) -> None:
        try:
            os.remove(path)
        except OSError:
            pass

    def delete(self, sha256: str) -> bool:
        """The operator removes a file; whether there was one."""
        size = self.size_of(sha256)
        if size is None:
            return False
        self._remove(self.blob(sha256))
        if not self.stored(sha256):
            self.kept -= size
        return True

    # ------------------------------------------------------------ partials

    def expire(self) -> int:
        """Remove up to ``EXPIRE_STEP`` of the next ``EXPIRE_SCAN`` partials that
        nobody has written for ``idle`` seconds (none being written); how many. Calls
        sweep the partials in turn, so one call's work is bounded however many there
        are."""
        if self._sweep_at >= len(self._sweep):
            self._sweep, self._sweep_at = list(self.partials), 0
        stale = self.clock() - self.idle
        gone = 0
        while self._sweep_at < len(self._sweep) and gone < EXPIRE_STEP:
            looked = self._sweep[self._sweep_at:self._sweep_at + EXPIRE_SCAN]
            for name in looked:
                self._sweep_at += 1
                entry = self.partials.get(name)
                if entry is not None and entry[1] < stale and \
                        os.path.join(self.partial, name) not in self.writing:
                    self._drop(os.path.join(self.partial, name))
                    gone += 1
                    if gone >= EXPIRE_STEP:
                        break
            break  # one slice a call
        return gone

    def partial_listing(self) -> list[Partial]:
        now = self.clock()
        return sorted(Partial(name, int(size), max(0.0, now - last),
                              os.path.join(self.partial, name) in self.writing)
                      for name, (size, last) in self.partials.items())

    def delete_partial(self, name: str) -> bool:
        """The operator removes a partial upload (one being written is cut first by
        the caller); whether there was one."""
        if name not in self.partials:
            return False
        self._drop(os.path.join(self.partial, name))
        return True

    # ------------------------------------------------------------ downloads

    def open_download(self, sha256: str, offset: int, ref: str | None) -> Download:
        try:
            fd = os.open(self.blob(sha256), os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except OSError:
            raise no_such_file() from None
        size = os.fstat(fd).st_size
        if not 0 <= offset <= size:
            os.close(fd)
            raise ProtocolError("bad_offset", f"The file has {size} bytes.")
        return Download(sha256, fd, offset, size, ref)

    def read(self, download: Download, limit: int) -> bytes:
        data = os.pread(download.fd, min(limit, download.size - download.offset),
                        download.offset)
        download.offset += len(data)
        return data

    def listing(self) -> list[tuple[str, int]]:
        """(sha256, size) of every stored file."""
        return sorted((e.name, e.stat().st_size) for e in os.scandir(self.root)
                      if e.is_file() and len(e.name) == 64 and set(e.name) <= SHA256_HEX)


def no_such_file() -> ProtocolError:
    """The one answer for a file that is not here and for one the asker may not see."""
    return ProtocolError("no_such_file", "That file is not on the server (the "
                                         "operator may have deleted it).")
