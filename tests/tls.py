"""A throwaway certificate authority for tests that serve the app over TLS: a server certificate
for 127.0.0.1 in a file hypercorn can load, and the client's context that trusts it."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

HOST = "127.0.0.1"


@dataclass(frozen=True)
class TestCertificate:
    """The server's key and certificate chain in one PEM file, and the authority that signed it."""

    __test__ = False  # not a test class, whatever pytest makes of its name

    ca: trustme.CA
    pem: Path

    @classmethod
    def make(cls, directory: Path) -> TestCertificate:
        ca = trustme.CA()
        pem = directory / "server.pem"
        ca.issue_cert(HOST).private_key_and_cert_chain_pem.write_to_path(str(pem))
        return cls(ca, pem)

    @property
    def hypercorn(self) -> dict[str, str]:
        """hypercorn `Config` attributes that serve over TLS with this certificate; hypercorn
        offers h2 and http/1.1 by ALPN."""
        return {"certfile": str(self.pem), "keyfile": str(self.pem)}

    def client_context(self, *alpn: str) -> ssl.SSLContext:
        """A client context that trusts this authority, offering `alpn` protocols if given."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.ca.configure_trust(context)
        if alpn:
            context.set_alpn_protocols(list(alpn))
        return context
