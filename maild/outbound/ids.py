"""Message-IDs that carry a keyed signature.

A reply that references one of our Message-IDs can be verified without a database lookup,
and an id cannot be guessed: `<random.signature@our-domain>` with an HMAC over the random part.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

_SIG_LEN = 16


@dataclass(frozen=True)
class MessageIdFactory:
    secret: bytes
    domain: str

    def _sign(self, token: str) -> str:
        return hmac.new(self.secret, token.encode(), hashlib.sha256).hexdigest()[:_SIG_LEN]

    def new(self) -> str:
        """A fresh Message-ID, without angle brackets."""
        token = "maild." + secrets.token_hex(10)
        return f"{token}.{self._sign(token)}@{self.domain}"

    def verify(self, message_id: str) -> bool:
        """True when `message_id` was made by a factory with our secret and domain."""
        local, _, domain = message_id.partition("@")
        token, _, sig = local.rpartition(".")
        if domain.lower() != self.domain.lower() or not token.startswith("maild."):
            return False
        return hmac.compare_digest(sig, self._sign(token))
