"""One token provider per OAuth2 account for the life of the process.

IMAP and SMTP of one account share it, so the cached access token serves both and a rotated
refresh token is written back by one owner only.
"""

from __future__ import annotations

import threading

from maild.auth.oauth2 import TokenProvider
from maild.clock import Clock
from maild.settings import OAuth2Settings


class TokenProviders:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._by_account: dict[tuple[str, str, str], TokenProvider] = {}

    def for_settings(self, oauth2: OAuth2Settings) -> TokenProvider:
        key = (str(oauth2.refresh_token_file), oauth2.token_url, oauth2.client_id)
        with self._lock:
            provider = self._by_account.get(key)
            if provider is None:
                provider = TokenProvider(oauth2.to_config(), self._clock)
                self._by_account[key] = provider
            return provider
