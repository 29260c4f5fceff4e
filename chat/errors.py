"""The project's exceptions: a small flat set, raised at the edges where they start.

``ProtocolError`` is what a peer's bad input becomes; the server turns it into an
``error`` frame (and, for a few codes, a close), never into a crash of its loop.
"""

from __future__ import annotations

# Error codes after which the server closes the connection (docs/protocol.md, Session 4).
CLOSING_CODES = frozenset({"auth_failed", "server_full", "banned", "bad_proto",
                           "tls_required"})


class ChatError(Exception):
    """Base class of every exception this project raises on purpose."""


class ProtocolError(ChatError):
    """A peer sent something docs/protocol.md does not allow.

    ``code`` is one of the protocol's error codes; ``message`` is a sentence for
    people. ``ref`` is the request's valid ``ref`` when it is known.
    """

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    @property
    def closes(self) -> bool:
        return self.code in CLOSING_CODES


class Later(ChatError):
    """A request must wait for the next pass: this pass's share of slow work (a
    password hash) is spent. It is raised before the request changes anything."""


class StoreError(ChatError):
    """The message store could not be opened, read or written.

    ``reason`` says why in a few words for people ("the disk is full"); ``write`` is
    True when a write failed, which loses the open transaction."""

    def __init__(self, message: str, reason: str = "", write: bool = False) -> None:
        super().__init__(message)
        self.reason = reason or message
        self.write = write


class ConfigError(ChatError):
    """A server or client setting is out of range (reported as one CLI line)."""
