"""TLS for every connection maild makes: IMAP, SMTP and the OAuth2 token endpoint.

One place decides how a server is verified, so the mail servers and the identity provider
are held to the same standard: the system's trust store (or an operator's CA file for a
private CA), host names checked, TLS 1.2 at least. It imports nothing else of maild.
"""

from __future__ import annotations

import ssl
from os import PathLike


def tls_context(ca_file: str | PathLike[str] | None) -> ssl.SSLContext:
    """A client context that verifies the server against `ca_file`, or the system's trust
    store when it is None."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
