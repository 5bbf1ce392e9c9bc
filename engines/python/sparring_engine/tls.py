"""TLS to a trainer on another machine: the CA file this engine trusts, and errors that say what failed.

Both transports verify the trainer the same way, with Python's ``ssl`` module: the framed TCP
transport runs over the verified socket itself, and the gRPC transport makes one such handshake
before opening its channel, because gRPC only retries a certificate it rejects until the connect
timeout runs out, never saying why.
"""

from __future__ import annotations

import socket
import ssl


class TrainerTlsError(ConnectionError):
    """The TLS handshake with the trainer failed: its certificate did not verify against the CA file (another CA,
    expired, or made for another name), the CA file is unusable, or the trainer does not speak TLS."""


def client_context(ca_file: str, alpn: str | None = None) -> ssl.SSLContext:
    """A context that trusts the certificates in ``ca_file`` alone (``alpn``: the protocol to offer, gRPC's ``h2``).

    The file may hold the CA that signed the trainer's certificate or that certificate itself, as gRPC allows:
    a trainer that launches its games hands them its own certificate file.
    """
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except FileNotFoundError:
        raise TrainerTlsError(f"--sparring-ca {ca_file}: no such file") from None
    except ssl.SSLError as exc:
        raise TrainerTlsError(f"--sparring-ca {ca_file}: not a PEM certificate file ({exc.reason or exc})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a trusted certificate need not be a root
    if alpn:
        context.set_alpn_protocols([alpn])
    return context


def secure(sock: socket.socket, context: ssl.SSLContext, server_name: str, ca_file: str,
           where: str) -> ssl.SSLSocket:
    """``sock`` after a TLS handshake that verified the trainer as ``server_name``; :class:`TrainerTlsError`
    naming the CA file and what failed otherwise (``sock`` is then closed)."""
    try:
        return context.wrap_socket(sock, server_hostname=server_name)
    except ssl.SSLCertVerificationError as exc:
        raise TrainerTlsError(
            f"the trainer at {where} presented a certificate that does not verify against --sparring-ca {ca_file} "
            f"as {server_name!r}: {exc.verify_message.rstrip('.')}. Give the CA that signed the trainer's certificate, and "
            "connect by a name or address the certificate holds (--sparring-tls-name NAME if it differs from "
            "--sparring-host)") from None
    except OSError as exc:  # an SSLError of another kind, a reset or a timeout mid-handshake
        reason = getattr(exc, "reason", None) or exc
        raise TrainerTlsError(f"the TLS handshake with the trainer at {where} failed ({reason}); does the trainer "
                              "use TLS (tls_cert and tls_key in its config)?") from None
