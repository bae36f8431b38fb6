"""OAuth2 sign-in for IMAP and SMTP: XOAUTH2 and OAUTHBEARER with a refresh-token flow.

Microsoft 365 and Gmail no longer take passwords over IMAP and SMTP. An operator consents once
(outside maild) and stores the resulting refresh token in a file, e.g. a systemd
``LoadCredential=``. ``TokenProvider`` trades that refresh token at the configured token
endpoint (RFC 6749 section 6) for short-lived access tokens, caches them and renews them
shortly before they expire. When the endpoint rotates the refresh token, the new one is written
back atomically to the file (or, where the file is read-only, kept in memory).

``imap_login`` and ``smtp_login`` sign in with OAUTHBEARER (RFC 7628) where the server offers
it, else with XOAUTH2 (Google's and Microsoft's mechanism). A token the server refuses although
it was cached is dropped and the login tried once more with a new one (the account's tokens may
have been revoked early, e.g. after a password change).

Secrets (client secret, refresh and access tokens) never appear in logs or error messages.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import stat
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import aiosmtplib
import structlog
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from maild.auth.config import (
    OAuth2Config,
    OAuth2Error,
    _read_secret,
)
from maild.clock import Clock
from maild.errors import TransportError
from maild.tls import tls_context

log = structlog.get_logger("maild.auth")

RENEW_MARGIN: Final = timedelta(minutes=5)
"""Renew a token this long before it expires..."""
RENEW_FRACTION: Final = 0.1
"""...or, for short-lived tokens, when only this fraction of its lifetime is left."""
DEFAULT_LIFETIME: Final = timedelta(hours=1)
"""Assumed when the endpoint gives no ``expires_in`` (RFC 6749 only recommends it)."""
MAX_RESPONSE_BYTES: Final = 1024 * 1024

_OAUTHBEARER: Final = "OAUTHBEARER"
_XOAUTH2: Final = "XOAUTH2"
_SMTP_AUTH_OK: Final = 235
_SMTP_AUTH_CONTINUE: Final = 334


# -- tokens ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessToken:
    """An access token as handed out by ``TokenProvider.token()``."""

    value: str = field(repr=False)
    expires_at: datetime
    renew_at: datetime
    fresh: bool = False
    """True when this very call fetched it from the endpoint (not from the cache)."""


class TokenProvider:
    """Access tokens for one account, cached and renewed before they expire; thread-safe.

    ``access_token()`` returns the cached token while more than ``RENEW_MARGIN`` (or, for a
    short-lived token, ``RENEW_FRACTION`` of its lifetime) is left, else asks the endpoint.
    If that renewal fails while the cached token is still valid, the cached one is used (and
    renewal tried again on the next call); otherwise an ``OAuth2Error`` says what the endpoint
    answered.
    """

    def __init__(self, config: OAuth2Config, clock: Clock) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        # A rotated refresh token that could not be written back: (what the file held, new).
        self._unsaved: tuple[str, str] | None = None
        self._renewals = 0
        # Refresh tokens rotated away: an endpoint may still echo one in an error text.
        self._retired: list[str] = []

    @property
    def renewals(self) -> int:
        """How many access tokens this provider has fetched so far."""
        return self._renewals

    @property
    def expires_at(self) -> datetime | None:
        token = self._token
        return None if token is None else token.expires_at

    def access_token(self) -> str:
        """A valid access token (cached, or fetched now)."""
        return self.token().value

    def token(self) -> AccessToken:
        """Like ``access_token()``, with the expiry and whether it was fetched by this call."""
        with self._lock:
            now = self._clock.now()
            cached = self._token
            if cached is not None and now < cached.renew_at:
                return cached
            try:
                fetched = self._fetch(now)
            except OAuth2Error as exc:
                if cached is None or now >= cached.expires_at:
                    raise
                log.warning(
                    "oauth2.renewal_failed_using_cached", token_url=self._where(),
                    error=str(exc), expires_at=cached.expires_at.isoformat(),
                )
                return cached
            self._token = AccessToken(fetched.value, fetched.expires_at, fetched.renew_at)
            return fetched

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token (only if it is ``token``, when given): a server refused it."""
        with self._lock:
            if self._token is not None and (token is None or self._token.value == token):
                self._token = None

    # -- internals (called with the lock held) ---------------------------------------------

    def _where(self) -> str:
        url = urllib.parse.urlsplit(self.config.token_url)
        return f"{url.scheme}://{url.netloc}{url.path}"

    def _refresh_token(self) -> str:
        on_disk = _read_secret(self.config.refresh_token_file, "refresh token file")
        if self._unsaved is not None:
            stale, newer = self._unsaved
            if on_disk == stale:
                return newer
            self._unsaved = None  # an operator put a new token into the file meanwhile
        return on_disk

    def _fetch(self, now: datetime) -> AccessToken:
        cfg = self.config
        refresh_token = self._refresh_token()
        secret = cfg.secret()
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token,
                "client_id": cfg.client_id}
        if secret is not None:
            form["client_secret"] = secret
        if cfg.scope:
            form["scope"] = cfg.scope
        cached = self._token.value if self._token is not None else None
        secrets = [s for s in (refresh_token, secret, cached, *self._retired) if s]
        body = self._post(form, secrets)
        value = body.get("access_token")
        if not isinstance(value, str) or not _is_token(value):
            raise OAuth2Error(f"OAuth2 token endpoint {self._where()} sent no usable access_token")
        token_type = body.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise OAuth2Error(
                f"OAuth2 token endpoint {self._where()} sent a token of type "
                f"{_clean(str(token_type), secrets)!r}, not Bearer"
            )
        lifetime = self._lifetime(body.get("expires_in"))
        rotated = body.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != refresh_token:
            self._retired = [*self._retired[-4:], refresh_token]
            self._save_refresh_token(refresh_token, rotated.strip())
        self._renewals += 1
        margin = min(RENEW_MARGIN, lifetime * RENEW_FRACTION)
        log.info(
            "oauth2.token_renewed", token_url=self._where(), client_id=cfg.client_id,
            expires_in=int(lifetime.total_seconds()), rotated=isinstance(rotated, str),
        )
        return AccessToken(value, now + lifetime, now + lifetime - margin, fresh=True)

    def _lifetime(self, expires_in: Any) -> timedelta:
        if expires_in is None:
            return DEFAULT_LIFETIME
        try:
            seconds = int(float(expires_in))  # some endpoints send it as a string
        except (TypeError, ValueError, OverflowError):
            seconds = 0
        if isinstance(expires_in, bool) or seconds <= 0:
            raise OAuth2Error(
                f"OAuth2 token endpoint {self._where()} sent an unusable expires_in"
            )
        return timedelta(seconds=seconds)

    def _post(self, form: dict[str, str], secrets: list[str]) -> dict[str, Any]:
        cfg = self.config
        request = urllib.request.Request(  # noqa: S310 - scheme checked in OAuth2Config
            cfg.token_url,
            data=urllib.parse.urlencode(form).encode("ascii"),
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
                "User-Agent": "maild",
            },
        )
        opener = urllib.request.build_opener(
            _RefuseRedirects(), urllib.request.HTTPSHandler(context=tls_context(cfg.ca_file))
        )
        try:
            with opener.open(request, timeout=cfg.timeout) as response:
                raw = response.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as exc:
            try:
                raw = exc.read(MAX_RESPONSE_BYTES)
            except OSError:
                raw = b""
            finally:
                exc.close()
            raise self._refused(exc.code, raw, secrets) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise OAuth2Error(
                f"OAuth2 token endpoint {self._where()} unreachable: "
                f"{_clean(str(reason), secrets) or type(reason).__name__}"
            ) from None
        body = _json_object(raw)
        if body is None:
            raise OAuth2Error(f"OAuth2 token endpoint {self._where()} did not answer JSON")
        if "error" in body:
            raise self._refused(200, raw, secrets)
        return body

    def _refused(self, status: int, raw: bytes, secrets: list[str]) -> OAuth2Error:
        body = _json_object(raw) or {}
        error = _clean(str(body.get("error") or ""), secrets) or None
        description = _clean(str(body.get("error_description") or ""), secrets) or None
        detail = ": ".join(p for p in (error, description) if p) or "no error given"
        return OAuth2Error(
            f"OAuth2 token endpoint {self._where()} refused the refresh (HTTP {status}): "
            f"{detail}",
            error=error, description=description, status=status,
        )

    def _save_refresh_token(self, old: str, new: str) -> None:
        path = self.config.refresh_token_file
        try:
            _replace_file(path, new + "\n")
        except OSError as exc:
            self._unsaved = (old, new)
            log.warning(
                "oauth2.refresh_token_not_saved", file=str(path),
                error=exc.strerror or type(exc).__name__,
                hint="the rotated refresh token lives in memory only until maild stops",
            )
        else:
            self._unsaved = None
            log.info("oauth2.refresh_token_rotated", file=str(path))


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A token endpoint answers itself: a redirect is an error, never followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _clean(text: str, secrets: list[str], limit: int = 300) -> str:
    """Server-supplied text made safe for a log line: no secrets, no control characters."""
    for secret in secrets:
        text = text.replace(secret, "***")
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _replace_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, keeping its mode (and owner, where allowed)."""
    target = path.resolve()
    info = target.stat()
    if not os.access(target, os.W_OK):
        raise PermissionError(13, "file is not writable", str(target))
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), stat.S_IMODE(info.st_mode))
            with contextlib.suppress(PermissionError):
                os.fchown(handle.fileno(), info.st_uid, info.st_gid)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


# -- SASL initial responses ------------------------------------------------------------------


def _is_token(value: str) -> bool:
    """Non-empty, printable and without white space (RFC 6750 b64token is narrower still)."""
    return bool(value) and value.isprintable() and not any(c.isspace() for c in value)


def _check_part(name: str, value: str) -> None:
    if not value or not value.isprintable():
        raise ValueError(f"{name} must be non-empty printable text")


def _check_token(token: str) -> None:
    if not _is_token(token):
        raise ValueError("token must be non-empty printable text without white space")


def xoauth2_string(user: str, token: str) -> str:
    """The SASL XOAUTH2 initial response (before base64)."""
    _check_part("user", user)
    _check_token(token)
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def oauthbearer_string(user: str, host: str, port: int, token: str) -> str:
    """The RFC 7628 OAUTHBEARER initial client response (before base64)."""
    _check_part("user", user)
    _check_part("host", host)
    _check_token(token)
    authzid = user.replace("=", "=3D").replace(",", "=2C")  # RFC 5801 saslname
    return f"n,a={authzid},\x01host={host}\x01port={int(port)}\x01auth=Bearer {token}\x01\x01"


def _server_error(challenge: bytes) -> str:
    """The ``status`` of a server's JSON error challenge (RFC 7628 3.2.2), if any."""
    try:
        data = json.loads(challenge)
    except (ValueError, UnicodeDecodeError):
        return ""
    status = data.get("status") if isinstance(data, dict) else None
    return _clean(str(status), []) if status is not None else ""


class _SaslExchange:
    """The client side of XOAUTH2/OAUTHBEARER: the initial response, then the dummy answer a
    client owes to a server's error challenge (empty for XOAUTH2, %x01 for OAUTHBEARER)."""

    def __init__(self, initial: str, after_error: str) -> None:
        self._initial = initial
        self._after_error = after_error
        self._sent = False
        self.server_error = ""

    def __call__(self, challenge: bytes) -> str:
        if not self._sent:
            self._sent = True
            return self._initial
        self.server_error = _server_error(challenge)
        return self._after_error


def _exchange(mechanism: str, user: str, host: str, port: int, token: str) -> _SaslExchange:
    if mechanism == _OAUTHBEARER:
        return _SaslExchange(oauthbearer_string(user, host, port, token), "\x01")
    return _SaslExchange(xoauth2_string(user, token), "")


# -- IMAP --------------------------------------------------------------------------------------


def imap_mechanism(capabilities: Any) -> str | None:
    """OAUTHBEARER or XOAUTH2, whichever the IMAP capabilities offer (OAUTHBEARER first)."""
    offered = {bytes(c).upper() if not isinstance(c, str) else c.upper().encode()
               for c in capabilities}
    for mechanism in (_OAUTHBEARER, _XOAUTH2):
        if b"AUTH=" + mechanism.encode() in offered:
            return mechanism
    return None


def imap_login(client: IMAPClient, user: str, provider: TokenProvider) -> None:
    """Sign ``client`` in as ``user`` with OAUTHBEARER where offered, else XOAUTH2.

    Raises ``TransportError`` when the server offers neither or refuses the token (after one
    more try with a new token if the refused one came from the cache), ``OAuth2Error`` when no
    token could be had. Connection failures propagate as imapclient raises them.
    """
    where = f"{client.host}:{client.port}"
    mechanism = imap_mechanism(client.capabilities())
    if mechanism is None:
        raise TransportError(
            f"IMAP server {where} offers neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2"
        )
    token = provider.token()
    refused = _imap_try(client, mechanism, user, token.value)
    if refused is None:
        return
    if not token.fresh:
        log.info("oauth2.cached_token_refused", server=where, mechanism=mechanism, user=user)
        provider.invalidate(token.value)
        token = provider.token()
        refused = _imap_try(client, mechanism, user, token.value)
        if refused is None:
            return
    raise TransportError(f"IMAP server {where} refused {mechanism} login as {user}: {refused}")


def _imap_try(client: IMAPClient, mechanism: str, user: str, token: str) -> str | None:
    """None on success, else why the server refused."""
    exchange = _exchange(mechanism, user, str(client.host), int(client.port), token)
    try:
        client.sasl_login(mechanism, exchange)
    except LoginError as exc:
        detail = str(exc)
        if exchange.server_error:
            detail += f" (status {exchange.server_error})"
        return detail
    return None


# -- SMTP --------------------------------------------------------------------------------------


async def smtp_login(client: aiosmtplib.SMTP, user: str, provider: TokenProvider) -> None:
    """Sign a connected ``client`` in as ``user`` with OAUTHBEARER where offered, else XOAUTH2.

    Call it after ``connect()`` (and STARTTLS). Raises ``aiosmtplib.SMTPException`` when the
    server offers no usable mechanism, ``aiosmtplib.SMTPAuthenticationError`` when it refuses the
    token (after one more try with a new token if the refused one came from the cache), and
    ``OAuth2Error`` (a ``TransportError``) when no token could be had. The token endpoint is
    asked in a worker thread, so the event loop is never blocked.
    """
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()
    where = f"{client.hostname}:{client.port}"
    if not client.supports_extension("auth"):
        raise aiosmtplib.SMTPException(f"SMTP server {where} does not offer AUTH")
    offered = {m.lower() for m in client.server_auth_methods}
    if "oauthbearer" in offered:
        mechanism = _OAUTHBEARER
    elif "xoauth2" in offered:
        mechanism = _XOAUTH2
    else:
        raise aiosmtplib.SMTPException(
            f"SMTP server {where} offers neither OAUTHBEARER nor XOAUTH2 "
            f"(AUTH {' '.join(sorted(offered)).upper()})"
        )
    token = await asyncio.to_thread(provider.token)
    try:
        await _smtp_try(client, mechanism, user, token.value)
    except aiosmtplib.SMTPAuthenticationError:
        if token.fresh:
            raise
        log.info("oauth2.cached_token_refused", server=where, mechanism=mechanism, user=user)
        provider.invalidate(token.value)
        token = await asyncio.to_thread(provider.token)
        await _smtp_try(client, mechanism, user, token.value)


async def _smtp_try(client: aiosmtplib.SMTP, mechanism: str, user: str, token: str) -> None:
    hostname = client.hostname or ""
    port = client.port or 0
    exchange = _exchange(mechanism, user, hostname, port, token)
    encoded = base64.b64encode(exchange(b"").encode("utf-8"))
    response = await client.execute_command(b"AUTH", mechanism.encode("ascii"), encoded)
    if response.code == _SMTP_AUTH_CONTINUE:  # an error challenge: answer, then the verdict
        try:
            challenge = base64.b64decode(response.message, validate=True)
        except binascii.Error:
            challenge = b""
        after = base64.b64encode(exchange(challenge).encode("utf-8"))
        response = await client.execute_command(after)
    if response.code != _SMTP_AUTH_OK:
        message = response.message
        if exchange.server_error:
            message += f" (status {exchange.server_error})"
        raise aiosmtplib.SMTPAuthenticationError(response.code, message)

