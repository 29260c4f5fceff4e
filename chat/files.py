"""Files sent to rooms and people: stored once by content, moved in chunks.

An upload is offered (name, size, SHA-256), then sent as ``chunk`` frames that the
loop handles like any other frame, so a big file never holds up anyone's messages.
Bytes go to ``partial/<sha256>`` under the files directory; a dropped connection
leaves them there, and the next offer of the same file resumes where they end (after
their SHA-256 is computed again, a bounded amount per pass). A complete file is
checked against its SHA-256 and kept once as ``<sha256>``, however often it is sent.
Downloads are read a chunk at a time, only while the reader keeps up.

Disk I/O here is plain ``os`` calls on local files, bounded per pass (one chunk per
frame, ``HASH_STEP`` bytes of rehashing, ``PUMP_BYTES`` of downloads); nothing waits
on the network. Sizes: ``max_size`` per file, ``quota`` for all files and partials.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chat.errors import ProtocolError

if TYPE_CHECKING:
    from chat.model import Peer, Room

HASH_STEP = 4 * 1024 * 1024  # bytes of a partial file rehashed per pass (resume)
PUMP_BYTES = 2 * 1024 * 1024  # bytes of downloads read per pass, over all readers
UPLOADS_PER_PEER = 4  # uploads one connection may have open at once
PROGRESS_EVERY = 1024 * 1024  # an upload_progress frame per this many bytes received
MAX_NAME = 255  # characters of a file name
SHA256_HEX = frozenset("0123456789abcdef")


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

    def __init__(self, root: str, max_size: int, quota: int) -> None:
        self.root = root
        self.partial = os.path.join(root, "partial")
        self.max_size = max_size
        self.quota = quota
        os.makedirs(self.partial, exist_ok=True)
        self.used = 0
        for folder in (root, self.partial):
            for entry in os.scandir(folder):
                if entry.is_file():
                    self.used += entry.stat().st_size

    # ------------------------------------------------------------ uploads

    def blob(self, sha256: str) -> str:
        return os.path.join(self.root, sha256)

    def stored(self, sha256: str) -> bool:
        return os.path.isfile(self.blob(sha256))

    def offer(self, sha256: str, size: int, name: str, kind: str, target: Room | Peer | None,
              ref: str | None) -> Upload:
        """A new upload (raises ``ProtocolError`` when refused). Its bytes so far
        are those of an earlier, dropped upload of the same file."""
        if size > self.max_size:
            raise ProtocolError("file_too_big", f"Files may be at most "
                                f"{self.max_size / 1e6:g} MB on this server.")
        path = os.path.join(self.partial, sha256)
        try:
            have = min(os.path.getsize(path), size)
        except OSError:
            have = 0
        if self.used - have + size > self.quota:
            raise ProtocolError("over_quota", "The server has no room for this file "
                                              "(its file quota is full); ask the operator.")
        upload = Upload(secrets.token_hex(8), sha256, size, clean_name(name), kind[:100],
                        target, ref, path)
        try:
            upload.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.ftruncate(upload.fd, have)  # a longer leftover (another size) is cut
        except OSError as exc:
            self._close(upload)
            raise ProtocolError("store_failed", f"The server cannot store files now "
                                f"({exc.strerror or exc}).") from None
        upload.hashing = have
        return upload

    def fetch(self, sha256: str, size: int) -> Upload:
        """Room for a file this server is about to copy from another server of its
        cluster (chat.cluster), from its first byte; ``ProtocolError`` when refused."""
        upload = self.offer(sha256, size, sha256, "", None, None)
        if upload.hashing:  # an earlier partial copy: started over
            assert upload.fd is not None
            os.ftruncate(upload.fd, 0)
            self.used -= upload.hashing
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
        assert upload.fd is not None
        try:
            os.pwrite(upload.fd, data, offset)
        except OSError as exc:
            raise ProtocolError("store_failed", f"The server could not store the file "
                                f"({exc.strerror or exc}).") from None
        upload.hasher.update(data)
        upload.received += len(data)
        self.used += len(data)
        return upload.received == upload.size

    def finish(self, upload: Upload) -> None:
        """The whole file came: check it and keep it (``hash_mismatch`` otherwise,
        and its bytes are dropped: a resend starts over)."""
        self._close(upload)
        if upload.hasher.hexdigest() != upload.sha256:
            self._drop(upload.path)
            raise ProtocolError("hash_mismatch", "The file arrived different from its "
                                                 "SHA-256; send it again.")
        if self.stored(upload.sha256):
            self._drop(upload.path)
        else:
            os.replace(upload.path, self.blob(upload.sha256))

    def abandon(self, upload: Upload) -> None:
        """The connection went: its bytes stay, for a resume."""
        self._close(upload)

    def _close(self, upload: Upload) -> None:
        if upload.fd is not None:
            os.close(upload.fd)
            upload.fd = None

    def _drop(self, path: str) -> None:
        try:
            size = os.path.getsize(path)
            os.remove(path)
            self.used -= size
        except OSError:
            pass

    def delete(self, sha256: str) -> bool:
        """The operator removes a file; whether there was one."""
        if not self.stored(sha256):
            return False
        self._drop(self.blob(sha256))
        return True

    # ------------------------------------------------------------ downloads

    def open_download(self, sha256: str, offset: int, ref: str | None) -> Download:
        try:
            fd = os.open(self.blob(sha256), os.O_RDONLY)
        except OSError:
            raise ProtocolError("no_such_file", "That file is not on the server (the "
                                                "operator may have deleted it).") from None
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
