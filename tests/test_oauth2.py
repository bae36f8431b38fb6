"""OAuth2 sign-in: the token provider against a local token endpoint, IMAP against a Dovecot
with an oauth2 passdb, SMTP against aiosmtpd with XOAUTH2/OAUTHBEARER."""

from __future__ import annotations

import asyncio
import contextlib
import stat
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

import maild.auth.oauth2 as oauth2_module
from maild.auth.oauth2 import (
    OAuth2Config,
    OAuth2Error,
    TokenProvider,
    imap_login,
    oauthbearer_string,
    smtp_login,
    xoauth2_string,
)
from maild.clock import FixedClock
from maild.errors import ConfigError, TransportError
from tests.servers.dovecot import Dovecot, free_port
from tests.servers.dovecot_oauth import OAuthDovecot
from tests.servers.oauth import OAuthServer, OAuthSmtpServer
from tests.servers.smtp import wait_closed

USER = "support@example.test"


# -- helpers and fixtures ------------------------------------------------------------------


def raw_message(subject: str) -> bytes:
    return (
        "From: Customer <customer@example.test>\r\n"
        f"To: {USER}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@example.test>\r\n"
        "\r\nHello.\r\n"
    ).encode()


def make_config(
    tmp_path: Path, idp: OAuthServer, user: str = USER, **changes: Any
) -> OAuth2Config:
    """A config whose secret and refresh token live in files, as under systemd."""
    credentials = tmp_path / "credentials"
    credentials.mkdir(exist_ok=True)
    secret_file = credentials / "client-secret"
    secret_file.write_text(idp.client_secret + "\n")
    refresh_file = credentials / f"refresh-token-{user}"
    refresh_file.write_text(idp.issue_refresh_token(user) + "\n")
    refresh_file.chmod(0o600)
    config = OAuth2Config(
        token_url=idp.token_url,
        client_id=idp.client_id,
        client_secret_file=secret_file,
        refresh_token_file=refresh_file,
        scope="https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
        timeout=10.0,
    )
    return replace(config, **changes)


@pytest.fixture
def idp() -> Iterator[OAuthServer]:
    with OAuthServer() as server:
        yield server


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture(scope="module")
def dovecot_idp() -> Iterator[OAuthServer]:
    with OAuthServer() as server:
        yield server


@pytest.fixture(scope="module", params=["tokeninfo", "introspection"])
def oauth_dovecot(
    request: pytest.FixtureRequest, dovecot_idp: OAuthServer
) -> Iterator[OAuthDovecot]:
    """Dovecot asking the local endpoint about each token (both of its 2.3 lookup modes)."""
    with OAuthDovecot(dovecot_idp, validation=request.param) as server:
        yield server


@pytest.fixture(scope="module")
def xoauth2_dovecot(dovecot_idp: OAuthServer) -> Iterator[OAuthDovecot]:
    """Dovecot offering only XOAUTH2, as Microsoft 365's IMAP does."""
    with OAuthDovecot(dovecot_idp, mechanisms=("xoauth2",)) as server:
        yield server


def provider_for(tmp_path: Path, idp: OAuthServer, user: str) -> TokenProvider:
    return TokenProvider(make_config(tmp_path, idp, user), FixedClock())


def login_methods(server: Dovecot, user: str) -> list[str]:
    """The ``method=`` of each successful login of ``user`` in Dovecot's log."""
    methods = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        if "imap-login: Info: Login: " in line and f"user=<{user}>" in line:
            methods.append(line.split("method=", 1)[1].split(",", 1)[0])
    return methods


# -- SASL strings --------------------------------------------------------------------------


def test_xoauth2_string_is_the_documented_format() -> None:
    token = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
    assert xoauth2_string("someuser@example.com", token) == (
        "user=someuser@example.com\x01auth=Bearer "
        "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
    )


def test_oauthbearer_string_follows_rfc7628() -> None:
    # RFC 7628 section 4.1 (its example, with the authzid it leaves out).
    token = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
    assert oauthbearer_string("user@example.com", "server.example.com", 143, token) == (
        "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
        "auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )
    # RFC 5801 saslname: "," and "=" are escaped in the authzid.
    assert oauthbearer_string("a=b,c", "h", 1, "t").startswith("n,a=a=3Db=2Cc,\x01")


@pytest.mark.parametrize(
    ("user", "token"),
    [("", "t"), ("u", ""), ("u\x01auth=Bearer x", "t"), ("u", "t\r\n"), ("u", "t \x01x")],
)
def test_sasl_strings_refuse_injection(user: str, token: str) -> None:
    with pytest.raises(ValueError, match="non-empty printable"):
        xoauth2_string(user, token)
    with pytest.raises(ValueError, match="non-empty printable"):
        oauthbearer_string(user, "imap.example.test", 993, token)


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://login.example.test/token", "ftp://127.0.0.1/token", "token",
     "https://id:secret@login.example.test/token"],
)
def test_config_refuses_unsafe_token_urls(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match=r"oauth2\.token_url"):
        OAuth2Config(token_url=url, client_id="c", refresh_token_file=tmp_path / "rt")


@pytest.mark.parametrize(
    "url", ["https://login.microsoftonline.com/common/oauth2/v2.0/token",
            "http://127.0.0.1:8080/token", "http://[::1]/token", "http://localhost/token"],
)
def test_config_accepts_https_and_loopback_http(tmp_path: Path, url: str) -> None:
    OAuth2Config(token_url=url, client_id="c", refresh_token_file=tmp_path / "rt")


def test_config_wants_one_secret_source_and_hides_the_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="only one of"):
        OAuth2Config(token_url="https://idp.example.test/token", client_id="c",
                     refresh_token_file=tmp_path / "rt", client_secret="s3cr3t",
                     client_secret_file=tmp_path / "secret")
    config = OAuth2Config(token_url="https://idp.example.test/token", client_id="c",
                          refresh_token_file=tmp_path / "rt", client_secret="s3cr3t")
    assert "s3cr3t" not in repr(config)


# -- the token provider --------------------------------------------------------------------


def test_refresh_grant_then_cached(tmp_path: Path, idp: OAuthServer, clock: FixedClock) -> None:
    config = make_config(tmp_path, idp)
    provider = TokenProvider(config, clock)
    token = provider.access_token()
    assert idp.validate(token) == USER
    assert provider.access_token() == token
    assert provider.token().fresh is False
    assert idp.count("token") == 1
    [request] = idp.token_requests
    assert request.form == {
        "grant_type": "refresh_token",
        "refresh_token": config.refresh_token_file.read_text().strip(),
        "client_id": idp.client_id,
        "client_secret": idp.client_secret,
        "scope": config.scope,
    }
    assert provider.expires_at == clock.now() + timedelta(hours=1)


def test_renewed_before_it_expires(tmp_path: Path, idp: OAuthServer, clock: FixedClock) -> None:
    provider = TokenProvider(make_config(tmp_path, idp), clock)
    first = provider.access_token()
    clock.advance(timedelta(minutes=54, seconds=59))  # more than 5 minutes left: cached
    assert provider.access_token() == first
    clock.advance(timedelta(seconds=2))  # less than 5 minutes left: renewed
    second = provider.access_token()
    assert second != first
    assert idp.count("token") == 2 and provider.renewals == 2
    assert provider.expires_at == clock.now() + timedelta(hours=1)


def test_short_lived_tokens_renewed_at_ten_percent(
    tmp_path: Path, idp: OAuthServer, clock: FixedClock
) -> None:
    idp.set_lifetime(120)
    provider = TokenProvider(make_config(tmp_path, idp), clock)
    first = provider.access_token()
    clock.advance(timedelta(seconds=107))
    assert provider.access_token() == first
    clock.advance(timedelta(seconds=1))  # 12 s (10 %) left
    assert provider.access_token() != first
    assert idp.count("token") == 2


def test_rotated_refresh_token_written_back(
    tmp_path: Path, clock: FixedClock
) -> None:
    with OAuthServer(rotate=True) as idp:
        config = make_config(tmp_path, idp)
        original = config.refresh_token_file.read_text().strip()
        provider = TokenProvider(config, clock)
        provider.access_token()
        rotated = config.refresh_token_file.read_text().strip()
        assert rotated != original and idp.is_refresh_token(rotated)
        assert not idp.is_refresh_token(original)  # the old one is dead: the file must hold it
        assert stat.S_IMODE(config.refresh_token_file.stat().st_mode) == 0o600
        names = {p.name for p in config.refresh_token_file.parent.iterdir()}
        assert names == {"client-secret", config.refresh_token_file.name}  # no temporary left
        clock.advance(timedelta(hours=1))
        provider.access_token()  # works only with the rotated token
        assert idp.count("token_ok") == 2
        assert idp.token_requests[1].form["refresh_token"] == rotated
        # A second provider (a restart) starts from the file.
        assert TokenProvider(config, FixedClock()).access_token()


def test_rotated_refresh_token_kept_in_memory_when_file_not_writable(
    tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(path: Path, text: str) -> None:
        raise PermissionError(30, "Read-only file system", str(path))

    monkeypatch.setattr(oauth2_module, "_replace_file", read_only)
    with OAuthServer(rotate=True) as idp:
        config = make_config(tmp_path, idp)
        original = config.refresh_token_file.read_text()
        provider = TokenProvider(config, clock)
        provider.access_token()
        assert config.refresh_token_file.read_text() == original
        clock.advance(timedelta(hours=1))
        provider.access_token()  # the file's token is revoked; the one in memory works
        assert [r.status for r in idp.token_requests] == [200, 200]
        # An operator who puts a new token into the file (new consent) wins over memory.
        fresh = idp.issue_refresh_token(USER)
        config.refresh_token_file.write_text(fresh + "\n")
        clock.advance(timedelta(hours=1))
        provider.access_token()
        assert idp.token_requests[-1].form["refresh_token"] == fresh


def test_client_secret_file_read_at_use(
    tmp_path: Path, idp: OAuthServer, clock: FixedClock
) -> None:
    config = make_config(tmp_path, idp)
    provider = TokenProvider(config, clock)
    provider.access_token()
    assert config.client_secret_file is not None
    config.client_secret_file.write_text("rotated-secret\n")
    clock.advance(timedelta(hours=1))
    with pytest.raises(OAuth2Error):
        provider.access_token()
    assert idp.token_requests[-1].form["client_secret"] == "rotated-secret"


def test_bad_client_secret_is_a_clear_error_without_secrets(
    tmp_path: Path, idp: OAuthServer, clock: FixedClock, capfd: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, idp, client_secret="wrong-secret", client_secret_file=None)
    provider = TokenProvider(config, clock)
    with pytest.raises(OAuth2Error) as caught:
        provider.access_token()
    error = caught.value
    assert isinstance(error, TransportError)
    assert error.error == "invalid_client" and error.status == 401 and error.permanent
    assert error.description == "Client authentication failed."
    assert str(error) == (
        f"OAuth2 token endpoint {idp.token_url} refused the refresh (HTTP 401): "
        "invalid_client: Client authentication failed."
    )
    refresh_token = config.refresh_token_file.read_text().strip()
    out, err = capfd.readouterr()
    for secret in ("wrong-secret", refresh_token):
        assert secret not in str(error) and secret not in out + err


def test_no_secret_in_logs_or_errors(
    tmp_path: Path, clock: FixedClock, capfd: pytest.CaptureFixture[str]
) -> None:
    with OAuthServer(rotate=True) as idp:
        config = make_config(tmp_path, idp)
        secrets = {idp.client_secret, config.refresh_token_file.read_text().strip()}
        provider = TokenProvider(config, clock)
        secrets.add(provider.access_token())  # renewed, refresh token rotated and saved
        secrets.add(config.refresh_token_file.read_text().strip())
        idp.fail_next(400, "invalid_grant", f"token {sorted(secrets)[0]} is revoked")
        clock.advance(timedelta(minutes=56))
        assert provider.access_token() in secrets  # renewal failed, cached token still good
        clock.advance(timedelta(minutes=5))
        # Every secret the provider ever held, the rotated-away refresh token included.
        idp.fail_next(400, "invalid_grant", f"tokens {' '.join(sorted(secrets))} revoked")
        with pytest.raises(OAuth2Error) as caught:
            provider.access_token()
    out, err = capfd.readouterr()
    assert "oauth2.token_renewed" in out + err and "oauth2.refresh_token_rotated" in out + err
    for secret in secrets:
        assert secret not in out + err
    echoed = str(caught.value)
    assert "invalid_grant" in echoed and not any(s in echoed for s in secrets)


def test_revoked_refresh_token(tmp_path: Path, idp: OAuthServer, clock: FixedClock) -> None:
    config = make_config(tmp_path, idp)
    idp.revoke_refresh_token(config.refresh_token_file.read_text().strip())
    with pytest.raises(OAuth2Error, match="invalid_grant: The refresh token is invalid") as caught:
        TokenProvider(config, clock).access_token()
    assert caught.value.permanent


def test_missing_refresh_token_file(tmp_path: Path, idp: OAuthServer, clock: FixedClock) -> None:
    config = make_config(tmp_path, idp, refresh_token_file=tmp_path / "nope")
    with pytest.raises(OAuth2Error, match="cannot read the OAuth2 refresh token file"):
        TokenProvider(config, clock).access_token()
    assert idp.count("token") == 0


def test_unreachable_endpoint(tmp_path: Path, idp: OAuthServer, clock: FixedClock) -> None:
    config = make_config(tmp_path, idp, token_url=f"http://127.0.0.1:{free_port()}/token")
    with pytest.raises(OAuth2Error, match="unreachable") as caught:
        TokenProvider(config, clock).access_token()
    assert caught.value.error is None and not caught.value.permanent


def test_cached_token_bridges_a_failed_renewal(
    tmp_path: Path, idp: OAuthServer, clock: FixedClock
) -> None:
    provider = TokenProvider(make_config(tmp_path, idp), clock)
    first = provider.access_token()
    idp.fail_next(503, count=2)
    clock.advance(timedelta(minutes=57))  # renewal due, token still valid for 3 minutes
    assert provider.access_token() == first  # endpoint down: keep using it
    clock.advance(timedelta(minutes=3))  # now expired
    with pytest.raises(OAuth2Error, match=r"HTTP 503.*temporarily_unavailable"):
        provider.access_token()
    assert provider.access_token() != first  # the endpoint is back
    assert idp.count("token") == 4


@pytest.mark.parametrize(
    ("body", "lifetime"),
    [
        ({"access_token": "at-1", "token_type": "bearer", "expires_in": "3599"}, 3599),
        ({"access_token": "at-1"}, 3600),  # no expires_in: assume an hour
    ],
)
def test_lenient_with_what_real_endpoints_send(
    tmp_path: Path, idp: OAuthServer, clock: FixedClock, body: dict[str, Any], lifetime: int
) -> None:
    idp.answer_next(200, body)
    provider = TokenProvider(make_config(tmp_path, idp), clock)
    assert provider.access_token() == "at-1"
    assert provider.expires_at == clock.now() + timedelta(seconds=lifetime)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"access_token": "at-1", "token_type": "mac"}, "of type 'mac', not Bearer"),
        ({"token_type": "Bearer"}, "sent no usable access_token"),
        ({"access_token": "at 1"}, "sent no usable access_token"),
        ({"access_token": "at-1", "expires_in": -5}, "unusable expires_in"),
        ({"error": "invalid_request"}, r"refused the refresh \(HTTP 200\): invalid_request"),
    ],
)
def test_refuses_what_it_cannot_use(
    tmp_path: Path, idp: OAuthServer, clock: FixedClock, body: dict[str, Any], message: str
) -> None:
    idp.answer_next(200, body)
    with pytest.raises(OAuth2Error, match=message):
        TokenProvider(make_config(tmp_path, idp), clock).access_token()


def test_one_renewal_for_many_threads(
    tmp_path: Path, idp: OAuthServer, clock: FixedClock
) -> None:
    provider = TokenProvider(make_config(tmp_path, idp), clock)
    barrier = threading.Barrier(8)
    tokens: list[str] = []

    def worker() -> None:
        barrier.wait()
        tokens.append(provider.access_token())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(tokens) == 8 and len(set(tokens)) == 1
    assert idp.count("token") == 1


# -- IMAP against Dovecot's oauth2 passdb --------------------------------------------------


def test_imap_login_oauthbearer_select_append_fetch(
    tmp_path: Path, oauth_dovecot: OAuthDovecot, dovecot_idp: OAuthServer
) -> None:
    user = oauth_dovecot.new_user()
    provider = provider_for(tmp_path, dovecot_idp, user.username)
    raw = raw_message("oauth bearer")
    with IMAPClient(oauth_dovecot.host, oauth_dovecot.port, ssl=False, timeout=10) as client:
        imap_login(client, user.username, provider)
        client.select_folder("INBOX")
        client.append("INBOX", raw)
        [uid] = client.search("ALL")
        assert client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"] == raw
    assert login_methods(oauth_dovecot, user.username)[-1] == "OAUTHBEARER"
    assert user.fetch_all() == [raw]  # and the fixture's own (XOAUTH2) login sees it


def test_imap_login_xoauth2_when_only_that_is_offered(
    tmp_path: Path, xoauth2_dovecot: OAuthDovecot, dovecot_idp: OAuthServer
) -> None:
    user = xoauth2_dovecot.new_user()
    raw = raw_message("xoauth2")
    user.append(raw)
    provider = provider_for(tmp_path, dovecot_idp, user.username)
    with IMAPClient(xoauth2_dovecot.host, xoauth2_dovecot.port, ssl=False, timeout=10) as client:
        assert b"AUTH=OAUTHBEARER" not in client.capabilities()
        imap_login(client, user.username, provider)
        assert client.select_folder("INBOX")[b"EXISTS"] == 1
        assert client.fetch([1], ["BODY.PEEK[]"])[1][b"BODY[]"] == raw
    assert login_methods(xoauth2_dovecot, user.username)[-1] == "XOAUTH2"


def test_imap_cached_token_refused_is_renewed_once(
    tmp_path: Path, oauth_dovecot: OAuthDovecot, dovecot_idp: OAuthServer
) -> None:
    user = oauth_dovecot.new_user()
    provider = provider_for(tmp_path, dovecot_idp, user.username)
    stale = provider.access_token()
    dovecot_idp.expire(stale)  # revoked early, as after a password change
    with IMAPClient(oauth_dovecot.host, oauth_dovecot.port, ssl=False, timeout=10) as client:
        imap_login(client, user.username, provider)
        client.select_folder("INBOX")
    assert provider.renewals == 2 and provider.access_token() != stale


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_imap_expired_or_foreign_token_refused(
    oauth_dovecot: OAuthDovecot, dovecot_idp: OAuthServer, mechanism: str
) -> None:
    user = oauth_dovecot.new_user()
    other = oauth_dovecot.new_user()
    expired = dovecot_idp.mint_access_token(user.username, lifetime=0)
    foreign = dovecot_idp.mint_access_token(other.username)
    with IMAPClient(oauth_dovecot.host, oauth_dovecot.port, ssl=False, timeout=10) as client:
        for token in (expired, foreign, "at-never-issued"):
            with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
                if mechanism == "XOAUTH2":
                    client.oauth2_login(user.username, token)
                else:
                    client.oauthbearer_login(user.username, token)


def test_imap_login_with_a_fresh_but_foreign_token_fails_without_retry(
    tmp_path: Path, oauth_dovecot: OAuthDovecot, dovecot_idp: OAuthServer
) -> None:
    user = oauth_dovecot.new_user()
    other = oauth_dovecot.new_user()
    provider = provider_for(tmp_path, dovecot_idp, other.username)  # consent by the wrong user
    refused = rf"refused OAUTHBEARER login as {user.username}: .*AUTHENTICATIONFAILED"
    with (
        IMAPClient(oauth_dovecot.host, oauth_dovecot.port, ssl=False, timeout=10) as client,
        pytest.raises(TransportError, match=refused),
    ):
        imap_login(client, user.username, provider)
    assert provider.renewals == 1  # a token fetched just now is not fetched again


def test_imap_passwords_refused(oauth_dovecot: OAuthDovecot) -> None:
    user = oauth_dovecot.new_user()
    with IMAPClient(oauth_dovecot.host, oauth_dovecot.port, ssl=False, timeout=10) as client:
        assert b"LOGINDISABLED" in client.capabilities()
        with pytest.raises(LoginError):
            client.login(user.username, user.password)


def test_imap_login_needs_an_oauth_mechanism(
    tmp_path: Path, dovecot: Dovecot, idp: OAuthServer
) -> None:
    dovecot.ensure_running()
    provider = provider_for(tmp_path, idp, USER)
    with (
        IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=10) as client,
        pytest.raises(TransportError, match="offers neither AUTH=OAUTHBEARER nor"),
    ):
        imap_login(client, USER, provider)
    assert idp.count("token") == 0


def test_imap_token_endpoint_failure_surfaces(
    tmp_path: Path, oauth_dovecot: OAuthDovecot, dovecot_idp: OAuthServer
) -> None:
    user = oauth_dovecot.new_user()
    config = make_config(tmp_path, dovecot_idp, user.username, client_id="unknown-client")
    provider = TokenProvider(config, FixedClock())
    with (
        IMAPClient(oauth_dovecot.host, oauth_dovecot.port, ssl=False, timeout=10) as client,
        pytest.raises(OAuth2Error, match="invalid_client"),
    ):
        imap_login(client, user.username, provider)


# -- SMTP against aiosmtpd with XOAUTH2 / OAUTHBEARER ---------------------------------------


def email_message(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = USER
    message["To"] = "customer@example.test"
    message["Subject"] = subject
    message.set_content("Your ticket was received.\n")
    return message


def smtp_session(server: OAuthSmtpServer, user: str, provider: TokenProvider,
                 message: EmailMessage | None = None) -> None:
    """Connect with STARTTLS, ``smtp_login``, optionally send, and close cleanly."""

    async def go() -> None:
        client = aiosmtplib.SMTP(
            hostname=server.host, port=server.port, start_tls=True,
            tls_context=server.client_context(), timeout=10,
        )
        await client.connect()
        try:
            await smtp_login(client, user, provider)
            if message is not None:
                await client.send_message(message)
        finally:
            transport = client.transport
            with contextlib.suppress(aiosmtplib.SMTPException):
                await client.quit()
            client.close()
            if transport is not None:
                await wait_closed(transport)

    asyncio.run(go())


@pytest.mark.parametrize(
    ("offered", "expected"),
    [(("OAUTHBEARER", "XOAUTH2"), "OAUTHBEARER"), (("XOAUTH2",), "XOAUTH2"),
     (("OAUTHBEARER",), "OAUTHBEARER")],
)
def test_smtp_login_and_send(
    tmp_path: Path, idp: OAuthServer, offered: tuple[str, ...], expected: str
) -> None:
    provider = provider_for(tmp_path, idp, USER)
    with OAuthSmtpServer(idp, mechanisms=offered) as server:
        smtp_session(server, USER, provider, email_message("hello"))
        [received] = server.wait_for(1)
        assert server.logins[-1].mechanism == expected and server.logins[-1].success
    assert received.tls and received.message["Subject"] == "hello"
    assert idp.count("tokeninfo") == 1


def test_smtp_without_login_is_refused(idp: OAuthServer) -> None:
    with OAuthSmtpServer(idp) as server, pytest.raises(aiosmtplib.SMTPResponseException) as err:
        async def go() -> None:
            client = aiosmtplib.SMTP(hostname=server.host, port=server.port, start_tls=True,
                                     tls_context=server.client_context(), timeout=10)
            await client.connect()
            try:
                await client.sendmail(USER, ["customer@example.test"], b"Subject: x\r\n\r\nx\r\n")
            finally:
                transport = client.transport
                with contextlib.suppress(aiosmtplib.SMTPException):
                    await client.quit()
                client.close()
                if transport is not None:
                    await wait_closed(transport)

        asyncio.run(go())
    assert err.value.code == 530


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_smtp_cached_token_refused_is_renewed_once(
    tmp_path: Path, idp: OAuthServer, mechanism: str
) -> None:
    provider = provider_for(tmp_path, idp, USER)
    stale = provider.access_token()
    idp.expire(stale)
    with OAuthSmtpServer(idp, mechanisms=[mechanism]) as server:
        smtp_session(server, USER, provider, email_message("renewed"))
        server.wait_for(1)
        assert [(x.mechanism, x.success) for x in server.logins] == [
            (mechanism, False), (mechanism, True)
        ]
    assert provider.renewals == 2


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_smtp_foreign_token_refused(tmp_path: Path, idp: OAuthServer, mechanism: str) -> None:
    provider = provider_for(tmp_path, idp, "someone-else@example.test")
    with OAuthSmtpServer(idp, mechanisms=[mechanism]) as server:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
            smtp_session(server, USER, provider)
        assert server.logins == [server.logins[0]] and not server.logins[0].success
    assert caught.value.code == 535
    assert "invalid_token" in caught.value.message  # the server's JSON error challenge
    assert provider.renewals == 1


def test_smtp_login_needs_an_oauth_mechanism(
    tmp_path: Path, idp: OAuthServer, smtp_server_tls: Any
) -> None:
    provider = provider_for(tmp_path, idp, USER)

    async def go() -> None:
        client = aiosmtplib.SMTP(hostname=smtp_server_tls.host, port=smtp_server_tls.port,
                                 start_tls=True, tls_context=smtp_server_tls.client_context(),
                                 timeout=10)
        await client.connect()
        try:
            await smtp_login(client, USER, provider)
        finally:
            transport = client.transport
            with contextlib.suppress(aiosmtplib.SMTPException):
                await client.quit()
            client.close()
            if transport is not None:
                await wait_closed(transport)

    with pytest.raises(aiosmtplib.SMTPException, match="neither OAUTHBEARER nor XOAUTH2"):
        asyncio.run(go())
    assert idp.count("token") == 0
