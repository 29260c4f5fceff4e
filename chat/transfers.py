"""Files from the client's side: sending one and fetching one, a bounded step at a
time, for a window's ``after()`` loop (or a bot's). No GUI, no socket: frames go
out through the ``ChatClient`` and come back through ``handle``.

``Sending`` hashes the file (a few MiB per step), offers it, then sends chunks from
the offset the server names, only while little of the client's output is unsent, so
a big file never holds up the user's messages. ``Fetching`` writes ``file_data``
frames to a file as they come.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chat.client import ChatClient

HASH_STEP = 4 * 1024 * 1024  # bytes hashed per step (a step is one tick of the window)
SEND_STEP = 1024 * 1024  # bytes of chunks queued per step, at most
AHEAD = 256 * 1024  # the client's unsent output below which more chunks are queued


def chunk_size(max_frame: int) -> int:
    """Raw bytes per chunk so that the base64 frame fits in ``max_frame``."""
    return max(256, (max_frame - 200) * 3 // 4 // 3 * 3)


class Sending:
    """One file on its way to a room (``room``) or a person (``to``)."""

    def __init__(self, client: ChatClient, path: str, ref: str, *, room: str | None = None,
                 to: str | None = None) -> None:
        self.client = client
        self.path = path
        self.ref = ref
        self.where = {"room": room} if room is not None else {"to": to}
        self.name = os.path.basename(path)
        self.size = os.path.getsize(path)
        self.kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
        self.handle = open(path, "rb")  # noqa: SIM115 - closed in finish()
        self.hasher = hashlib.sha256()
        self.hashed = 0
        self.state = "hashing"  # hashing, offered, sending, done, failed
        self.token: str | None = None
        self.sent = 0
        self.error = ""

    @property
    def progress(self) -> float:
        done = self.hashed if self.state == "hashing" else self.sent
        return 1.0 if not self.size else min(1.0, done / self.size)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    def step(self) -> None:
        """A bounded piece of work: hash, or queue chunks."""
        if self.state == "hashing":
            data = self.handle.read(HASH_STEP)
            self.hasher.update(data)
            self.hashed += len(data)
            if len(data) < HASH_STEP:
                self.state = "offered"
                self.client.send({"type": "upload", "name": self.name, "size": self.size,
                                  "sha256": self.hasher.hexdigest(), "mime": self.kind,
                                  "ref": self.ref, **self.where})
        elif self.state == "sending":
            self._send_chunks()

    def _send_chunks(self) -> None:
        limits = (self.client.welcome or {}).get("limits", {})
        step = chunk_size(int(limits.get("max_frame", 16384)))
        queued = 0
        if self.sent >= self.size:  # nothing (left) to send: an empty chunk ends it
            self._chunk(b"")
            self.state = "offered"  # waiting for the echo
            return
        while self.sent < self.size and queued < SEND_STEP \
                and self.client.pending_output < AHEAD:
            self.handle.seek(self.sent)
            data = self.handle.read(step)
            self._chunk(data)
            self.sent += len(data)
            queued += len(data)
        if self.sent >= self.size:
            self.state = "offered"  # all sent: the echo says it is stored

    def _chunk(self, data: bytes) -> None:
        self.client.send({"type": "chunk", "upload": self.token, "offset": self.sent,
                          "data": base64.b64encode(data).decode("ascii"), "ref": self.ref})

    def handle_frame(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "upload_ready":
            self.token, self.sent, self.state = frame["upload"], frame["offset"], "sending"
        elif kind == "message":
            self.state, self.sent = "done", self.size
            self.handle.close()
        elif kind == "error":
            self.state, self.error = "failed", str(frame.get("message", ""))
            self.handle.close()

    def cancel(self, why: str) -> None:
        if not self.finished:
            self.state, self.error = "failed", why
            self.handle.close()


class Fetching:
    """One file coming down into ``path``."""

    def __init__(self, client: ChatClient, file: dict[str, Any], path: str, ref: str) -> None:
        self.file = file
        self.path = path
        self.ref = ref
        self.name = str(file.get("name", "file"))
        self.size = int(file.get("size", 0))
        self.got = 0
        self.state = "fetching"
        self.error = ""
        self.handle = open(path + ".part", "wb")  # noqa: SIM115 - closed when it ends
        client.send({"type": "download", "file": file["id"], "ref": ref})

    @property
    def progress(self) -> float:
        return 1.0 if not self.size else min(1.0, self.got / self.size)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    def handle_frame(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "error":
            self.state, self.error = "failed", str(frame.get("message", ""))
            self.handle.close()
            os.remove(self.path + ".part")
            return
        data = base64.b64decode(frame.get("data", ""))
        self.handle.write(data)
        self.got += len(data)
        if frame.get("end"):
            self.handle.close()
            os.replace(self.path + ".part", self.path)
            self.state = "done"

    def cancel(self, why: str) -> None:
        if not self.finished:
            self.state, self.error = "failed", why
            self.handle.close()


def describe(file: dict[str, Any]) -> str:
    """A file as a line shows it: its name and size."""
    size = int(file.get("size", 0))
    text = f"{size} B" if size < 1000 else f"{size / 1e3:.0f} KB" if size < 1e6 else \
        f"{size / 1e6:.1f} MB"
    return f"{file.get('name', 'file')} ({text})"


def file_of(frame: dict[str, Any]) -> dict[str, Any] | None:
    """The file a message frame carries, when it is well formed."""
    file = frame.get("file")
    if not isinstance(file, dict) or not isinstance(file.get("id"), str):
        return None
    return json.loads(json.dumps(file))  # a plain copy
