"""Server settings with docs/protocol.md's defaults, checked once where they come in."""

from __future__ import annotations

import os
from dataclasses import dataclass

from chat.errors import ConfigError
from chat.protocol import MAX_FRAME, MAX_TEXT

DEFAULT_PORT = 7070


def default_db_path() -> str:
    """History lives in the user's data directory unless --db says otherwise."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "lanchat", "history.db")


@dataclass
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    db: str = ""  # "" means default_db_path()
    name: str = "lanchat"
    password: str | None = None
    motd: str = ""
    max_clients: int = 1000
    rate: float = 5.0
    burst: int = 20
    max_frame: int = MAX_FRAME
    max_text: int = MAX_TEXT
    max_backlog: int = 1024 * 1024
    history: int = 500
    hello_timeout: float = 10.0
    ping_interval: float = 60.0
    ping_timeout: float = 30.0
    tls: bool = False  # a self-signed certificate, made once, kept in data_dir
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_timeout: float = 5.0  # seconds a connection has to finish its TLS handshake
    max_per_address: int = 16  # open connections per client address (0: no limit)
    limit_loopback: bool = False  # whether 127.0.0.0/8 and ::1 count as well
    announce: bool = True  # LAN discovery beacons (never for a loopback-only server)
    irc_port: int | None = None  # the IRC gateway's port (chat.irc); None: no IRC
    irc_tls_port: int | None = None  # the same over TLS (needs --tls or a certificate)
    max_file_size: int = 100 * 1000 * 1000  # bytes per file (docs/protocol.md, "Files")
    files_quota: int = 2 * 1000 * 1000 * 1000  # bytes of all files and partial uploads
    partial_idle: float = 86400.0  # seconds an unfinished upload's bytes are kept unwritten
    redis: str | None = None  # redis://HOST:PORT/DB: a node of a cluster (chat.cluster)
    web_root: str = ""  # the page's folder; "" means web/ beside chat/ (a checkout)
    # the server operator's sign-in from a client (IRC's OPER; `oper` in the protocol):
    # "NAME:PASSWORD", from --oper or the console's `oper-password`; "" is none
    oper: str = ""

    def check(self) -> None:
        """Raise ConfigError naming the first setting that is out of range."""
        rules = [
            ("port", 0 <= self.port <= 65535, "0 to 65535"),
            ("max_clients", self.max_clients >= 1, "at least 1"),
            ("rate", self.rate >= 0, "0 (off) or more"),
            ("burst", self.burst >= 1, "at least 1"),
            ("max_frame", 256 <= self.max_frame <= 16 * 1024 * 1024, "256 to 16777216"),
            ("max_text", self.max_text >= 1, "at least 1"),
            ("max_backlog", self.max_backlog >= 1024, "at least 1024"),
            ("history", 0 <= self.history <= 10000, "0 to 10000"),
            ("hello_timeout", self.hello_timeout > 0, "more than 0"),
            ("ping_interval", self.ping_interval > 0, "more than 0"),
            ("ping_timeout", self.ping_timeout > 0, "more than 0"),
            ("tls_timeout", self.tls_timeout > 0, "more than 0"),
            ("max_per_address", self.max_per_address >= 0, "0 (no limit) or more"),
            ("irc_port", self.irc_port is None or 0 <= self.irc_port <= 65535, "0 to 65535"),
            ("irc_tls_port", self.irc_tls_port is None or 0 <= self.irc_tls_port <= 65535,
             "0 to 65535"),
            ("max_file_size", self.max_file_size >= 0, "0 (no files) or more"),
            ("files_quota", self.files_quota >= 0, "0 (no files) or more"),
            ("partial_idle", self.partial_idle > 0, "more than 0"),
        ]
        for name, ok, wanted in rules:
            if not ok:
                raise ConfigError(f"--{name.replace('_', '-')} must be {wanted}")
        if not self.name.strip():
            raise ConfigError("--name must not be empty")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together")
        if self.oper and (":" not in self.oper or not self.oper.split(":", 1)[0]
                          or len(self.oper.split(":", 1)[1]) < 8):
            raise ConfigError("--oper must be NAME:PASSWORD, the password at least 8 "
                              "characters")
        if self.irc_tls_port is not None and not self.uses_tls:
            raise ConfigError("--irc-tls-port needs TLS: add --tls (or --tls-cert and "
                              "--tls-key)")
        if self.redis is not None:
            from chat.resp import parse_url
            try:
                parse_url(self.redis)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if self.tls and self.tls_cert is not None:
            raise ConfigError("--tls makes its own certificate; leave out --tls-cert "
                              "and --tls-key, or --tls")

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.tls_cert is not None

    @property
    def data_dir(self) -> str:
        """Where the server keeps what it makes: the directory of its database."""
        return os.path.dirname(os.path.abspath(self.db_path))

    @property
    def db_path(self) -> str:
        return self.db or default_db_path()

    def limits(self) -> dict[str, int | float]:
        """The `limits` object of `welcome`."""
        rate = int(self.rate) if float(self.rate).is_integer() else self.rate
        return {"max_frame": self.max_frame, "max_text": self.max_text, "rate": rate,
                "burst": self.burst, "history": self.history}
