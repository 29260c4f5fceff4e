"""Chat core: wire protocol, single-threaded server, SQLite store and client core.

Nothing in this package imports Tk; the windows live in ``gui/``.
"""

PROTOCOL_VERSION = 1
