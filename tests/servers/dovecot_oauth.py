"""The test Dovecot with an ``oauth2`` passdb: logins by bearer token (XOAUTH2, OAUTHBEARER).

``OAuthDovecot`` is ``tests.servers.dovecot.Dovecot`` (private config, loopback port,
unprivileged mail account, passwd-file userdb for the homes) with the passdb swapped for
Dovecot's ``oauth2`` driver, which checks every token at an ``OAuthServer``:

- ``validation="tokeninfo"``: ``tokeninfo_url`` (GET ``...?access_token=TOKEN``);
- ``validation="introspection"``: ``introspection_mode = post`` to ``/introspect`` (RFC 7662).

Either way the ``email`` attribute of the answer must equal the login name. Passwords no longer
work: only the token mechanisms are offered (``mechanisms``), so Dovecot advertises
``LOGINDISABLED`` and refuses LOGIN. The inherited helpers (``append``, ``fetch_all``, ...)
log in with XOAUTH2 (or OAUTHBEARER) and a token minted directly on the ``OAuthServer``.

    with OAuthServer() as idp, OAuthDovecot(idp) as server:
        user = server.new_user()
        ...  # IMAPClient(server.host, server.port).oauth2_login(user.username, token)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from imapclient import IMAPClient

from tests.servers.dovecot import CLIENT_TIMEOUT, Dovecot, DovecotError
from tests.servers.oauth import OAuthServer

Validation = Literal["tokeninfo", "introspection"]

_MECHANISMS_LINE = "auth_mechanisms = plain login\n"
_PASSDB_START = "passdb {\n  driver = passwd-file\n"


class OAuthDovecot(Dovecot):
    """A private Dovecot whose only passdb is ``oauth2`` against ``oauth``."""

    def __init__(
        self,
        oauth: OAuthServer,
        *,
        validation: Validation = "tokeninfo",
        mechanisms: tuple[str, ...] = ("xoauth2", "oauthbearer"),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.oauth = oauth
        self.validation = validation
        self.mechanisms = mechanisms
        self.oauth2_config_path = self.directory / "dovecot-oauth2.conf.ext"

    def connect(self, username: str) -> IMAPClient:
        """A client logged in with a fresh token; use ``with`` so it logs out."""
        token = self.oauth.mint_access_token(username, lifetime=300)
        client = IMAPClient(self.host, self.port, ssl=False, timeout=CLIENT_TIMEOUT)
        try:
            if "xoauth2" in self.mechanisms:
                client.oauth2_login(username, token)
            else:
                client.oauthbearer_login(username, token)
        except BaseException:
            client.shutdown()
            raise
        return client

    def _write_config(self) -> None:
        self.oauth2_config_path.write_text(self._render_oauth2_config())
        super()._write_config()

    def _render_oauth2_config(self) -> str:
        if self.oauth.port == 0:
            raise DovecotError("start the OAuthServer before the Dovecot that asks it")
        if self.validation == "tokeninfo":
            lookup = f"tokeninfo_url = {self.oauth.tokeninfo_url}\n"
        else:
            lookup = (
                "introspection_mode = post\n"
                f"introspection_url = {self.oauth.introspection_url}\n"
                "active_attribute = active\nactive_value = true\n"
            )
        return (
            "# Written by tests/servers/dovecot_oauth.py\n"
            f"{lookup}"
            "username_attribute = email\n"
            "timeout_msecs = 10000\n"
        )

    def _render_config(self) -> str:
        config = super()._render_config()
        start = config.find(_PASSDB_START)
        end = config.find("}\n", start) + 2 if start >= 0 else -1
        if _MECHANISMS_LINE not in config or start < 0 or end < 2:
            raise DovecotError(
                "tests/servers/dovecot.py's config changed: cannot find its auth_mechanisms "
                "line and passwd-file passdb to replace with the oauth2 passdb"
            )
        passdb = (
            "passdb {\n  driver = oauth2\n"
            f"  mechanisms = {' '.join(self.mechanisms)}\n"
            f"  args = {Path(self.oauth2_config_path)}\n}}\n"
        )
        config = config[:start] + passdb + config[end:]
        return config.replace(
            _MECHANISMS_LINE, f"auth_mechanisms = {' '.join(self.mechanisms)}\n"
        )
