"""TLS for the chat: server and client contexts, a self-signed certificate made on
first start, fingerprints, and the client's known-hosts file (trust on first use).

The server never blocks on TLS: its sockets are wrapped with
``do_handshake_on_connect=False`` and the handshake is stepped from the selectors
loop (chat.server). A client checks the server's certificate against a CA file when
it is given one; otherwise it pins the certificate's SHA-256 fingerprint the first
time, as SSH does with host keys, and refuses a server whose certificate changed.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
import ssl

from chat.errors import ConfigError
from chat.netinfo import join_address

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
CERT_DAYS = 3650  # clients pin the certificate, so it need not be short-lived


# ---------------------------------------------------------------- fingerprints

def fingerprint(der: bytes) -> str:
    """A certificate's SHA-256 in groups of four hex digits, for reading aloud."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return " ".join(digest[i:i + 4] for i in range(0, len(digest), 4))


def file_fingerprint(cert_path: str) -> str:
    with open(cert_path, encoding="ascii") as f:
        pem = f.read()
    start = pem.index("-----BEGIN CERTIFICATE-----")
    end = pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    return fingerprint(ssl.PEM_cert_to_DER_cert(pem[start:end]))


# ---------------------------------------------------------------- server side

def self_signed(directory: str, names: list[str] | None = None) -> tuple[str, str]:
    """Paths of the server's own certificate and key in ``directory``, made the
    first time (an EC P-256 key, valid for this host's names and addresses)."""
    cert_path = os.path.join(directory, CERT_FILE)
    key_path = os.path.join(directory, KEY_FILE)
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path
    # cryptography is imported only here: plain and CA-file setups never need it.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from chat.netinfo import lan_addresses

    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {directory}: {exc.strerror}") from None
    host = socket.gethostname()
    dns = sorted({"localhost", host, *(n for n in names or [] if not _is_ip(n))})
    ips = {"127.0.0.1", "::1", *lan_addresses(), *(n for n in names or [] if _is_ip(n))}
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"lanchat on {host}")])
    now = datetime.datetime.now(datetime.UTC)
    alt = [x509.DNSName(n) for n in dns] + [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in sorted(ips)]
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
    except OSError as exc:
        raise ConfigError(f"cannot write the TLS certificate in {directory}: "
                          f"{exc.strerror}") from None
    return cert_path, key_path


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def server_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """TLS 1.2 or newer with the certificate and key given; ConfigError if unusable."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # A TLS 1.2 client could renegotiate again and again to make the loop do
    # handshakes; nothing here needs renegotiation.
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    try:
        ctx.load_cert_chain(cert_path, key_path)
    except FileNotFoundError as exc:
        raise ConfigError(f"cannot read {exc.filename}: no such file") from None
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"cannot use the TLS certificate {cert_path} with key "
                          f"{key_path}: {getattr(exc, 'reason', None) or exc}") from None
    return ctx


# ---------------------------------------------------------------- client side

def client_context(cafile: str | None) -> ssl.SSLContext:
    """With ``cafile``: full verification, host name included. Without: no CA
    check here; the caller pins the certificate's fingerprint (``KnownHosts``)."""
    if cafile:
        try:
            ctx = ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot read the CA file {cafile}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def default_known_hosts() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(
        os.path.expanduser("~"), ".config")
    return os.path.join(base, "lanchat", "known_hosts")


class KnownHosts:
    """Pinned server certificates: one ``host:port fingerprint`` line per server."""

    def __init__(self, path: str) -> None:
        self.path = path

    @staticmethod
    def _entry(host: str, port: int) -> str:
        return join_address(host.lower(), port)

    def _read(self) -> dict[str, str]:
        pins: dict[str, str] = {}
        try:
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    parts = line.split(None, 1)
                    if len(parts) == 2 and not line.startswith("#"):
                        pins[parts[0]] = parts[1].strip()
        except FileNotFoundError:
            pass
        return pins

    def get(self, host: str, port: int) -> str | None:
        return self._read().get(self._entry(host, port))

    def pin(self, host: str, port: int, fp: str) -> None:
        pins = self._read()
        pins[self._entry(host, port)] = fp
        self._write(pins)

    def _write(self, pins: dict[str, str]) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("# lanchat: server certificates seen (host:port SHA-256)\n")
            for entry, value in sorted(pins.items()):
                f.write(f"{entry} {value}\n")
        os.replace(tmp, self.path)
