"""maild end to end with OAuth2 sign-in on both sides: the `oauth2:` settings, one token
provider per account shared by IMAP and SMTP, against a Dovecot with an oauth2 passdb and an
SMTP server that checks bearer tokens at the same local token endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from maild import daemon
from maild.app import build
from maild.clock import FixedClock
from maild.errors import ConfigError
from maild.settings import load_settings
from tests.kit import customer_mail, write_config
from tests.servers.dovecot_oauth import OAuthDovecot
from tests.servers.oauth import OAuthServer, OAuthSmtpServer


@pytest.fixture(scope="module")
def idp() -> Iterator[OAuthServer]:
    with OAuthServer() as server:
        yield server


@pytest.fixture(scope="module")
def imap(idp: OAuthServer) -> Iterator[OAuthDovecot]:
    with OAuthDovecot(idp) as server:
        yield server


def oauth_block(tmp_path: Path, idp: OAuthServer, user: str) -> dict[str, object]:
    secret = tmp_path / "client-secret"
    secret.write_text(idp.client_secret)
    refresh = tmp_path / "refresh-token"
    refresh.write_text(idp.issue_refresh_token(user))
    return {"token_url": idp.token_url, "client_id": idp.client_id,
            "client_secret_file": str(secret), "refresh_token_file": str(refresh)}


def test_mailbox_and_smtp_with_oauth2(tmp_path: Path, idp: OAuthServer,
                                      imap: OAuthDovecot, sqlite_url: str) -> None:
    user = imap.new_user()
    user.append(customer_mail(subject="Signed in with a token"))
    oauth = oauth_block(tmp_path, idp, user.username)
    with OAuthSmtpServer(idp) as smtp:
        config = write_config(
            tmp_path, db_url=sqlite_url,
            imap={"host": imap.host, "port": imap.port, "security": "none",
                  "username": user.username, "oauth2": oauth},
            smtp={"host": smtp.host, "port": smtp.port, "security": "starttls",
                  "ca_file": str(smtp.ca_file), "username": user.username,
                  "oauth2": oauth})
        app = build(load_settings(config), clock=FixedClock())
        summary = daemon.run_once(app)
        app.dispose()
        assert summary.mailboxes["support"].tickets_created == 1
        assert summary.outbox.sent == 1, summary.outbox.error
        [ack] = smtp.wait_for(1)
        assert "Signed in with a token" in str(ack.message["Subject"])
    assert idp.count("token") == 1  # one provider for the account: IMAP and SMTP shared it
    assert user.count("INBOX") == 0


def test_oauth2_settings_are_validated(tmp_path: Path, idp: OAuthServer,
                                       sqlite_url: str) -> None:
    oauth = oauth_block(tmp_path, idp, "x@example.test")
    config = write_config(tmp_path, db_url=sqlite_url, imap={
        "host": "h", "username": "x@example.test", "password": "p", "oauth2": oauth})
    with pytest.raises(ConfigError, match="give only one of password, oauth2"):
        load_settings(config)
    config = write_config(tmp_path, db_url=sqlite_url, imap={
        "host": "h", "username": "x@example.test",
        "oauth2": {**oauth, "token_url": "http://idp.example.com/token"}})
    with pytest.raises(ConfigError, match="https") as err:
        load_settings(config)
    assert err.value.key == "mailboxes.0.imap.oauth2" and err.value.line
