"""The OAuth2 configuration of an IMAP or SMTP account, checked as the settings load.

Apart from the token provider (auth/oauth2.py), so that the settings (and every command that
reads them) do not import the mail and network libraries the provider needs.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from maild.errors import ConfigError, TransportError

PERMANENT_ERRORS: Final = frozenset({
    "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
    "invalid_scope",
})
"""Token endpoint errors that need an operator (new consent, secret or configuration)."""
_LOOPBACK_NAMES: Final = frozenset({"localhost"})


class OAuth2Error(TransportError):
    """The token endpoint could not be reached, refused the refresh, or answered nonsense.

    ``error`` and ``description`` are the endpoint's ``error`` and ``error_description``
    (RFC 6749 section 5.2), ``status`` its HTTP status; all None when it was not reached.
    """

    def __init__(
        self, message: str, *, error: str | None = None, description: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.description = description
        self.status = status

    @property
    def permanent(self) -> bool:
        """True when retrying cannot help until an operator acts (e.g. ``invalid_grant``)."""
        return self.error in PERMANENT_ERRORS


# -- configuration ---------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True)
class OAuth2Config:
    """Where and how to trade the refresh token for access tokens.

    ``token_url`` must be https (plain http only to a loopback address). The client secret is
    given inline or, better, as ``client_secret_file`` (read at each use); public clients have
    none. ``refresh_token_file`` holds the refresh token (one line) and is rewritten when the
    endpoint rotates it. ``ca_file`` is for an identity provider with a private CA.
    """

    token_url: str
    client_id: str
    refresh_token_file: Path
    client_secret: str | None = field(default=None, repr=False)
    client_secret_file: Path | None = None
    scope: str | None = None
    timeout: float = 30.0
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        url = urllib.parse.urlsplit(self.token_url)
        host = url.hostname or ""
        if url.scheme not in ("https", "http") or not host:
            raise ConfigError("must be an https:// URL", key="oauth2.token_url")
        if url.scheme == "http" and not _is_loopback(host):
            raise ConfigError(
                "must use https (plain http only to a loopback address): the client secret "
                "and refresh token travel in the request", key="oauth2.token_url",
            )
        if url.username is not None or url.password is not None:
            raise ConfigError(
                "must not contain credentials; use client_id and client_secret_file",
                key="oauth2.token_url",
            )
        if not self.client_id:
            raise ConfigError("must not be empty", key="oauth2.client_id")
        if self.client_secret is not None and self.client_secret_file is not None:
            raise ConfigError(
                "give only one of client_secret, client_secret_file", key="oauth2"
            )
        if not self.timeout > 0:
            raise ConfigError("must be greater than 0", key="oauth2.timeout")

    def secret(self) -> str | None:
        """The client secret, read now (so a replaced secret file is picked up)."""
        if self.client_secret_file is None:
            return self.client_secret
        return _read_secret(self.client_secret_file, "client secret file")


def _read_secret(path: Path, what: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise OAuth2Error(f"cannot read the OAuth2 {what} {path}: {reason}") from None
    if not value:
        raise OAuth2Error(f"the OAuth2 {what} {path} is empty")
    return value
