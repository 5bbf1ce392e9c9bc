"""The trainer's TLS certificate, loaded and checked once, for both bridge transports.

Engines on other machines connect over TLS with a token (DESIGN section 8): TLS keeps the
token and the game's traffic private and proves to the engine that it reached this trainer;
the token proves to the trainer that the engine is the user's. Loading everything up front
means a wrong path or a key that does not belong to the certificate stops the trainer at
start, naming the file, instead of failing every engine's handshake later.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import grpc

SETUP = 'see "Remote engines over TLS" in protos/README.md'
"""Where a user learns to make a certificate, for error messages."""


class ServerCertificate:
    """A PEM certificate chain and its private key, as an ``ssl`` context (framed TCP) and gRPC credentials.

    Attributes:
        cert_file: the chain, absolute: copies the trainer launches are told to trust it (``--sparring-ca``).
        key_file: the private key, absolute.
        context: the server-side ``ssl.SSLContext`` that wraps accepted TCP connections.
    """

    def __init__(self, cert_file: str | os.PathLike, key_file: str | os.PathLike) -> None:
        self.cert_file = Path(cert_file).resolve()
        self.key_file = Path(key_file).resolve()
        for what, path in (("certificate chain (tls_cert)", self.cert_file), ("private key (tls_key)", self.key_file)):
            if not path.is_file():
                raise ValueError(f"the TLS {what} {path} does not exist; {SETUP}")
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2  # Godot 3.2's mbedtls speaks TLS 1.2
        try:
            self.context.load_cert_chain(self.cert_file, self.key_file)
        except ssl.SSLError as exc:
            raise ValueError(f"cannot use the TLS certificate chain {self.cert_file} with the private key "
                             f"{self.key_file} ({exc.reason or exc}): both must be PEM files, the key unencrypted "
                             f"and the one the certificate was made for; {SETUP}") from None

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """The same chain and key for ``grpc.Server.add_secure_port``."""
        return grpc.ssl_server_credentials([(self.key_file.read_bytes(), self.cert_file.read_bytes())])

    def __repr__(self) -> str:
        return f"<ServerCertificate {self.cert_file}>"


def handshake_failure(exc: OSError) -> str:
    """Why a TLS handshake with an engine failed, in words its author can act on."""
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        return "no TLS handshake within handshake_timeout (an engine speaking plaintext waits for an answer first)"
    if "ALERT" in reason.upper():  # the engine's TLS stack sent an alert: it refused this trainer's certificate
        return (f"the engine rejected this trainer's certificate ({reason}): it must trust the CA that signed it "
                "(--sparring-ca) and connect by a name the certificate holds")
    return f"TLS handshake failed ({reason}): this trainer only speaks TLS; is the engine connecting without it?"
