"""Signing in to mail servers without passwords: OAuth2 (XOAUTH2, OAUTHBEARER)."""

from maild.auth.oauth2 import (
    AccessToken,
    OAuth2Config,
    OAuth2Error,
    TokenProvider,
    imap_login,
    imap_mechanism,
    oauthbearer_string,
    smtp_login,
    xoauth2_string,
)

__all__ = [
    "AccessToken",
    "OAuth2Config",
    "OAuth2Error",
    "TokenProvider",
    "imap_login",
    "imap_mechanism",
    "oauthbearer_string",
    "smtp_login",
    "xoauth2_string",
]
