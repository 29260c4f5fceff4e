"""Files from the client's side: sending one and fetching one, a bounded step at a
time, for a window's ``after()`` loop (or a bot's). No GUI, no socket: frames go
out through the ``ChatClient`` and come back through ``handle``.

``Sending`` hashes the file (a few MiB per step), offers it, then sends chunks from
the offset the server names, only while little of the client's output is unsent, so
a big file never holds up the user's messages. ``Fetching`` writes ``file_data``
frames to ``<path>.part`` as they come, going on from the bytes a cut download left
there (hashed again first, a few MiB per step), and gives the file its name only when
its SHA-256 is the file's id: a damaged or forged download is never saved.
Both know how fast they go (``Rate``) for a progress line with the time left.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import os
import time
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chat.client import ChatClient

HASH_STEP = 4 * 1024 * 1024  # bytes hashed per step (a step is one tick of the window)
SEND_STEP = 1024 * 1024  # bytes of chunks queued per step, at most
AHEAD = 256 * 1024  # the client's unsent output below which more chunks are queued


def chunk_size(max_frame: int) -> int:
    """Raw bytes per chunk so that the base64 frame fits in ``max_frame``."""
    return max(256, (max_frame - 200) * 3 // 4 // 3 * 3)


def size_text(size: float) -> str:
    return f"{size:.0f} B" if size < 1000 else f"{size / 1e3:.0f} KB" if size < 1e6 else \
        f"{size / 1e6:.1f} MB"


class Rate:
    """How fast bytes go, over the last few seconds, and what that leaves."""

    WINDOW = 5.0  # seconds the rate is taken over

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.samples: deque[tuple[float, int]] = deque()

    def note(self, done: int) -> None:
        now = self.clock()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.WINDOW:
            self.samples.popleft()

    def per_second(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 - t0 >= 0.5 else None

    def line(self, done: int, size: int) -> str:
        """"3.2 MB of 10.0 MB, 1.1 MB/s, 7 s left" (what is known of it)."""
        self.note(done)
        text = f"{size_text(done)} of {size_text(size)}"
        speed = self.per_second()
        if speed:
            left = (size - done) / speed
            when = f"{left:.0f} s" if left < 90 else f"{left / 60:.0f} min"
            text += f", {size_text(speed)}/s, {when} left"
        return text


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
        self.resumed_from = 0
        self.rate = Rate()

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
            self.resumed_from = self.sent  # bytes the server had already
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
    """One file coming down into ``path``, through ``path + ".part"``."""

    def __init__(self, client: ChatClient, file: dict[str, Any], path: str, ref: str) -> None:
        self.client = client
        self.file = file
        self.path = path
        self.part = path + ".part"
        self.ref = ref
        self.name = str(file.get("name", "file"))
        self.size = int(file.get("size", 0))
        self.hasher = hashlib.sha256()
        self.error = ""
        self.rate = Rate()
        self.handle = open(self.part, "ab+")  # noqa: SIM115 - closed when it ends
        have = self.handle.seek(0, os.SEEK_END)
        if have > self.size:  # not this file's beginning: start over
            self.handle.truncate(0)
            have = 0
        self.resumed_from = have  # bytes a cut download left, kept
        self.got = 0  # bytes in the .part that are hashed (then: received)
        self.state = "checking"
        self.step()

    @property
    def progress(self) -> float:
        return 1.0 if not self.size else min(1.0, self.got / self.size)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    def step(self) -> None:
        """A bounded piece of work: hash the bytes a cut download left, then ask for
        the rest."""
        if self.state != "checking":
            return
        self.handle.seek(self.got)
        data = self.handle.read(min(HASH_STEP, self.resumed_from - self.got))
        self.hasher.update(data)
        self.got += len(data)
        if self.got >= self.resumed_from:
            self.state = "fetching"
            self.handle.seek(0, os.SEEK_END)
            self.client.send({"type": "download", "file": self.file["id"],
                              "offset": self.got, "ref": self.ref})

    def handle_frame(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "error":
            self._fail(str(frame.get("message", "")), keep=False)
            return
        if self.state != "fetching" or frame.get("offset") != self.got:
            self._fail("the server sent bytes out of place; try again", keep=False)
            return
        data = base64.b64decode(frame.get("data", ""))
        self.handle.write(data)
        self.hasher.update(data)
        self.got += len(data)
        if frame.get("end"):
            self.handle.close()
            if self.hasher.hexdigest() != self.file["id"]:
                self._fail("it arrived damaged (its SHA-256 is not the file's); "
                           "try again", keep=False)
                return
            os.replace(self.part, self.path)
            self.state = "done"

    def _fail(self, why: str, keep: bool) -> None:
        self.state, self.error = "failed", why
        if not self.handle.closed:
            self.handle.close()
        if not keep:
            try:
                os.remove(self.part)
            except OSError:
                pass

    def cancel(self, why: str) -> None:
        """Cut (a lost connection): the bytes so far stay in the .part for a resume."""
        if not self.finished:
            self._fail(why, keep=True)


def describe(file: dict[str, Any]) -> str:
    """A file as a line shows it: its name and size."""
    return f"{file.get('name', 'file')} ({size_text(int(file.get('size', 0)))})"


def file_of(frame: dict[str, Any]) -> dict[str, Any] | None:
    """The file a message frame carries, when it is well formed."""
    file = frame.get("file")
    if not isinstance(file, dict) or not isinstance(file.get("id"), str):
        return None
    return json.loads(json.dumps(file))  # a plain copy
