"""Message-IDs that carry a keyed signature.

A reply that references one of our Message-IDs can be verified without a database lookup,
and an id cannot be made up: `<maild.token.signature@our-domain>` with an HMAC over the
token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

_SIG_LEN = 16
_RANDOM_BITS = 36  # 9 hex digits; with the 11 of the time, the token's 20


@dataclass(frozen=True)
class MessageIdFactory:
    secret: bytes
    domain: str

    def _sign(self, token: str) -> str:
        return hmac.new(self.secret, token.encode(), hashlib.sha256).hexdigest()[:_SIG_LEN]

    def sign(self, text: str, length: int = 20) -> str:
        """A signature of `text` under our secret (hex), for the signed plus-addresses of
        tickets/address.py: whoever shows it got it from a mail of ours."""
        return hmac.new(self.secret, b"address:" + text.encode(), hashlib.sha256
                        ).hexdigest()[:length]

    def new(self, at: datetime) -> str:
        """A fresh Message-ID made at `at`, without angle brackets.

        The token is the time in milliseconds followed by random bits (as a UUIDv7 is), so
        ids made one after another sort one after another: the unique indexes on
        Message-IDs (messages, outbox) grow at their end, and a batch's new ids change a
        few pages there rather than one page at a random place each (what that saves a
        backlog's writes: bench/README.md). The random part keeps ids made in the same
        millisecond (by two daemons, or under a stopped test clock) apart; it is not a
        counter, which would tell a customer how much mail was sent between two of theirs.
        """
        millis = max(0, int(at.timestamp() * 1000)) % (1 << 44)
        token = f"maild.{millis:011x}{secrets.randbits(_RANDOM_BITS):09x}"
        return f"{token}.{self._sign(token)}@{self.domain}"

    def verify(self, message_id: str) -> bool:
        """True when `message_id` was made by a factory with our secret and domain."""
        local, _, domain = message_id.partition("@")
        token, _, sig = local.rpartition(".")
        if domain.lower() != self.domain.lower() or not token.startswith("maild."):
            return False
        return hmac.compare_digest(sig, self._sign(token))
