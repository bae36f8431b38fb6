"""A local OAuth2 authorisation server for tests, and an SMTP peer that accepts its tokens.

``OAuthServer`` runs ``http.server`` in a thread on a free loopback port and speaks just enough
OAuth2 for maild and for Dovecot's ``oauth2`` passdb:

- ``POST /token``: the refresh-token grant (RFC 6749 section 6). The client authenticates with
  ``client_id``/``client_secret`` in the form or with HTTP Basic; the answer carries a fresh
  ``access_token``, ``expires_in`` and, with ``rotate=True``, a new ``refresh_token`` (the old one
  stops working at once, as with Microsoft's and most IdPs' rotation).
- ``GET /tokeninfo?access_token=TOKEN`` (or ``Authorization: Bearer TOKEN``): Google-style
  token info, ``{"email": ..., "expires_in": ...}``, or 401 ``invalid_token``. Dovecot's
  ``tokeninfo_url`` points here.
- ``POST /introspect`` (``token=TOKEN``): RFC 7662 introspection, ``{"active": true, ...}`` or
  ``{"active": false}``; for Dovecot's ``introspection_mode = post``.

Access tokens expire in real (monotonic) time after ``lifetime`` seconds, and tests can end
them early with ``expire()``. Every request is counted, so tests can assert renewals.

``OAuthSmtpServer`` is the ``SmtpServer`` of ``tests.servers.smtp`` with SMTP AUTH XOAUTH2 and
OAUTHBEARER, validating each bearer token over HTTP at ``OAuthServer``'s tokeninfo endpoint
(as a real submission server asks its IdP).

    with OAuthServer() as idp:
        refresh = idp.issue_refresh_token("support@example.test")
        token = idp.mint_access_token("support@example.test")
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

from tests.servers.dovecot import HOST
from tests.servers.smtp import SmtpServer, _Handler

DEFAULT_CLIENT_ID = "maild-test-client"
MAX_BODY = 64 * 1024


@dataclass
class _AccessToken:
    user: str
    scope: str
    expires: float  # time.monotonic()


@dataclass
class _Programmed:
    status: int
    body: dict[str, Any]


@dataclass
class TokenRequest:
    """One POST /token as the server saw it (secrets included: it is a test server)."""

    form: dict[str, str]
    basic_auth: tuple[str, str] | None
    status: int = 0


@dataclass
class _State:
    client_id: str
    client_secret: str
    lifetime: int
    rotate: bool
    token_length: int
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # token -> user
    access_tokens: dict[str, _AccessToken] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    token_requests: list[TokenRequest] = field(default_factory=list)
    failures: list[_Programmed] = field(default_factory=list)


class OAuthServer:
    """An OAuth2 token, tokeninfo and introspection endpoint on ``127.0.0.1``."""

    def __init__(
        self,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str | None = None,
        lifetime: int = 3600,
        rotate: bool = False,
        token_length: int = 48,
    ) -> None:
        self.host = HOST
        self._lock = threading.Lock()
        self._state = _State(
            client_id=client_id,
            client_secret=client_secret or secrets.token_urlsafe(24),
            lifetime=lifetime,
            rotate=rotate,
            token_length=token_length,
        )
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._httpd is not None:
            return
        handler = type("_BoundHandler", (_RequestHandler,), {"oauth": self})
        httpd = ThreadingHTTPServer((self.host, self.port), handler)
        httpd.daemon_threads = True
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"oauth-{self.port}", daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- URLs and credentials ------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def tokeninfo_url(self) -> str:
        """The prefix Dovecot appends the (URL-escaped) token to."""
        return f"{self.base_url}/tokeninfo?access_token="

    @property
    def introspection_url(self) -> str:
        return f"{self.base_url}/introspect"

    @property
    def client_id(self) -> str:
        return self._state.client_id

    @property
    def client_secret(self) -> str:
        return self._state.client_secret

    # -- tokens --------------------------------------------------------------------------

    def issue_refresh_token(self, user: str) -> str:
        """A new refresh token for ``user`` (as after the user's one-time consent)."""
        token = self._new_token("rt")
        with self._lock:
            self._state.refresh_tokens[token] = user
        return token

    def mint_access_token(
        self, user: str, *, lifetime: float | None = None, scope: str = ""
    ) -> str:
        """An access token for ``user`` without the token endpoint (for fixtures)."""
        token = self._new_token("at")
        with self._lock:
            seconds = self._state.lifetime if lifetime is None else lifetime
            self._state.access_tokens[token] = _AccessToken(
                user, scope, time.monotonic() + seconds
            )
        return token

    def expire(self, token: str | None = None) -> None:
        """End one access token now (or all of them)."""
        with self._lock:
            tokens = self._state.access_tokens
            for key in [token] if token is not None else list(tokens):
                if key in tokens:
                    tokens[key].expires = 0.0

    def revoke_refresh_token(self, token: str) -> None:
        with self._lock:
            self._state.refresh_tokens.pop(token, None)

    def is_refresh_token(self, token: str) -> bool:
        with self._lock:
            return token in self._state.refresh_tokens

    def validate(self, token: str) -> str | None:
        """The user of a live access token, else None (does not count as a request)."""
        with self._lock:
            found = self._state.access_tokens.get(token)
            if found is None or found.expires <= time.monotonic():
                return None
            return found.user

    def fail_next(
        self, status: int = 503, error: str = "temporarily_unavailable",
        description: str = "programmed by the test", count: int = 1,
    ) -> None:
        """Answer the next ``count`` POST /token requests with ``status`` and an error body."""
        body = {"error": error, "error_description": description}
        with self._lock:
            self._state.failures.extend(_Programmed(status, body) for _ in range(count))

    def answer_next(self, status: int, body: dict[str, Any]) -> None:
        """Answer the next POST /token with exactly ``status`` and ``body`` (odd endpoints)."""
        with self._lock:
            self._state.failures.append(_Programmed(status, body))

    def set_lifetime(self, seconds: int) -> None:
        with self._lock:
            self._state.lifetime = seconds

    # -- what happened -------------------------------------------------------------------

    def count(self, endpoint: str) -> int:
        """Requests seen so far: ``"token"`` (all), ``"token_ok"``, ``"tokeninfo"``,
        ``"introspect"``."""
        with self._lock:
            return self._state.counts[endpoint]

    @property
    def token_requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._state.token_requests)

    def reset_counts(self) -> None:
        with self._lock:
            self._state.counts.clear()
            self._state.token_requests.clear()

    # -- request handling (server threads) -----------------------------------------------

    def _new_token(self, kind: str) -> str:
        length = self._state.token_length
        return f"{kind}-" + secrets.token_urlsafe(length)[:length]

    def _token_grant(
        self, form: dict[str, str], basic: tuple[str, str] | None
    ) -> tuple[int, dict[str, Any]]:
        state = self._state
        with self._lock:
            state.counts["token"] += 1
            record = TokenRequest(dict(form), basic)
            state.token_requests.append(record)
            status, body = self._grant_locked(form, basic)
            record.status = status
            if status == HTTPStatus.OK:
                state.counts["token_ok"] += 1
            return status, body

    def _grant_locked(
        self, form: dict[str, str], basic: tuple[str, str] | None
    ) -> tuple[int, dict[str, Any]]:
        state = self._state
        if state.failures:
            failure = state.failures.pop(0)
            return failure.status, failure.body
        client_id, client_secret = basic or (form.get("client_id"), form.get("client_secret"))
        if client_id != state.client_id or client_secret != state.client_secret:
            return HTTPStatus.UNAUTHORIZED, {
                "error": "invalid_client",
                "error_description": "Client authentication failed.",
            }
        if form.get("grant_type") != "refresh_token":
            return HTTPStatus.BAD_REQUEST, {"error": "unsupported_grant_type"}
        refresh = form.get("refresh_token", "")
        user = state.refresh_tokens.get(refresh)
        if user is None:
            return HTTPStatus.BAD_REQUEST, {
                "error": "invalid_grant",
                "error_description": "The refresh token is invalid, expired or revoked.",
            }
        access = self._new_token("at")
        scope = form.get("scope", "")
        state.access_tokens[access] = _AccessToken(
            user, scope, time.monotonic() + state.lifetime
        )
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": state.lifetime,
        }
        if scope:
            body["scope"] = scope
        if state.rotate:
            del state.refresh_tokens[refresh]
            rotated = self._new_token("rt")
            state.refresh_tokens[rotated] = user
            body["refresh_token"] = rotated
        return HTTPStatus.OK, body

    def _token_info(self, token: str, endpoint: str) -> dict[str, Any] | None:
        with self._lock:
            self._state.counts[endpoint] += 1
            found = self._state.access_tokens.get(token)
            remaining = 0 if found is None else int(found.expires - time.monotonic())
            if found is None or remaining <= 0:
                return None
            return {
                "email": found.user,
                "scope": found.scope,
                "expires_in": remaining,
                "active": True,
                "token_type": "Bearer",
            }


class _RequestHandler(BaseHTTPRequestHandler):
    oauth: OAuthServer  # set on the per-server subclass
    protocol_version = "HTTP/1.1"
    server_version = "maild-test-oauth/1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: nothing on the test runner's stderr."""

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        form = self._form()
        if form is None:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "invalid_request"})
        elif path == "/token":
            self._reply(*self.oauth._token_grant(form, self._basic_auth()))
        elif path == "/introspect":
            info = self.oauth._token_info(form.get("token", ""), "introspect")
            self._reply(HTTPStatus.OK, info if info is not None else {"active": False})
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": "not_found"})

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/tokeninfo":
            self._reply(HTTPStatus.NOT_FOUND, {"error": "not_found"})
            return
        token = urllib.parse.parse_qs(url.query).get("access_token", [""])[0]
        authorization = self.headers.get("Authorization", "")
        if not token and authorization[:7].lower() == "bearer ":
            token = authorization[7:].strip()
        info = self.oauth._token_info(token, "tokeninfo")
        if info is None:
            self._reply(HTTPStatus.UNAUTHORIZED, {
                "error": "invalid_token",
                "error_description": "The access token is invalid or has expired.",
            })
        else:
            self._reply(HTTPStatus.OK, info)

    def _form(self) -> dict[str, str] | None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        if not 0 <= length <= MAX_BODY:
            return None
        raw = self.rfile.read(length).decode("utf-8", "replace")
        return {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}

    def _basic_auth(self) -> tuple[str, str] | None:
        value = self.headers.get("Authorization", "")
        if value[:6].lower() != "basic ":
            return None
        try:
            decoded = base64.b64decode(value[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


# -- SMTP with XOAUTH2 / OAUTHBEARER -------------------------------------------------------


def _xoauth2_fields(blob: bytes) -> tuple[str, str] | None:
    """``(user, token)`` from an XOAUTH2 initial response, or None if malformed."""
    parts = blob.decode("utf-8", "replace").split("\x01")
    fields = dict(p.split("=", 1) for p in parts if "=" in p)
    user, auth = fields.get("user"), fields.get("auth", "")
    if not user or not auth.startswith("Bearer ") or parts[-2:] != ["", ""]:
        return None
    return user, auth[7:]


def _oauthbearer_fields(blob: bytes) -> tuple[str, str] | None:
    """``(authzid, token)`` from an RFC 7628 OAUTHBEARER client response, or None."""
    text = blob.decode("utf-8", "replace")
    header, sep, rest = text.partition("\x01")
    gs2 = header.split(",")
    if not sep or len(gs2) != 3 or gs2[0] != "n" or not gs2[1].startswith("a="):
        return None
    user = gs2[1][2:].replace("=2C", ",").replace("=3D", "=")
    pairs = rest.split("\x01")
    fields = dict(p.split("=", 1) for p in pairs if "=" in p)
    auth = fields.get("auth", "")
    if not auth.startswith("Bearer ") or pairs[-2:] != ["", ""]:
        return None
    return user, auth[7:]


@dataclass(frozen=True)
class SmtpLogin:
    mechanism: str
    user: str
    success: bool


class _OAuthHandler(_Handler):
    """aiosmtpd calls ``auth_<MECHANISM>(server, args)`` for each mechanism it offers."""

    def __init__(self, server: OAuthSmtpServer) -> None:
        super().__init__(server)
        self._oauth_smtp = server

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._bearer(server, args, "XOAUTH2", _xoauth2_fields)

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._bearer(server, args, "OAUTHBEARER", _oauthbearer_fields)

    async def _bearer(self, server: SMTP, args: list[str], mechanism: str,
                      parse: Any) -> AuthResult:
        if len(args) == 2:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        else:
            answer = await server.challenge_auth(b"", encode_to_b64=False)
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=True)  # aborted; already answered
            blob = answer
        fields = parse(blob)
        if fields is None:
            await server.push("501 5.5.2 Malformed " + mechanism + " response")
            return AuthResult(success=False, handled=True)
        user, token = fields
        valid_user = await asyncio.to_thread(self._oauth_smtp.check_token, token)
        if valid_user is not None and valid_user.lower() == user.lower():
            self._oauth_smtp._record_login(SmtpLogin(mechanism, user, True))
            return AuthResult(success=True, auth_data=user)
        self._oauth_smtp._record_login(SmtpLogin(mechanism, user, False))
        # RFC 7628 3.2.2 (and Google's XOAUTH2): an error challenge, the client answers
        # (empty for XOAUTH2, %x01 for OAUTHBEARER), then the final 535.
        error = json.dumps({"status": "invalid_token", "schemes": "bearer"})
        answer = await server.challenge_auth(error)
        if not isinstance(answer, bytes):
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False)


class OAuthSmtpServer(SmtpServer):
    """``SmtpServer`` that requires SMTP AUTH with a bearer token from ``oauth``.

    STARTTLS is on by default (``tls=True``), as AUTH needs TLS in aiosmtpd (and in real
    life). ``mechanisms`` chooses what EHLO advertises: XOAUTH2, OAUTHBEARER or both.
    """

    MECHANISMS = ("OAUTHBEARER", "XOAUTH2")

    def __init__(
        self,
        oauth: OAuthServer,
        *,
        mechanisms: Iterable[str] = MECHANISMS,
        tls: bool = True,
        **kwargs: Any,
    ) -> None:
        if not tls:
            raise ValueError("aiosmtpd only offers AUTH after STARTTLS: use tls=True")
        super().__init__(tls=True, **kwargs)
        self.oauth = oauth
        self.mechanisms = tuple(m.upper() for m in mechanisms)
        unknown = set(self.mechanisms) - set(self.MECHANISMS)
        if unknown:
            raise ValueError(f"unsupported mechanisms {sorted(unknown)}")
        self._logins: list[SmtpLogin] = []

    def start(self) -> None:
        if self._controller is not None:
            return
        excluded = ["PLAIN", "LOGIN", *(m for m in self.MECHANISMS if m not in self.mechanisms)]
        controller = Controller(
            _OAuthHandler(self),
            hostname=self.host,
            port=self.port,
            ready_timeout=10.0,
            server_hostname=self.hostname,
            tls_context=self._server_context(),
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            auth_exclude_mechanism=excluded,
        )
        controller.start()
        self._controller = controller

    def check_token(self, token: str) -> str | None:
        """Ask the OAuth server's tokeninfo endpoint (over HTTP) whose token this is."""
        url = self.oauth.tokeninfo_url + urllib.parse.quote(token, safe="")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                info = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            exc.close()
            return None
        email = info.get("email")
        return email if isinstance(email, str) else None

    @property
    def logins(self) -> list[SmtpLogin]:
        with self._condition:
            return list(self._logins)

    def _record_login(self, login: SmtpLogin) -> None:
        with self._condition:
            self._logins.append(login)
