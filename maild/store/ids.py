"""The random parts of a new ticket: its reference and the secret of its reply address."""

from __future__ import annotations

import secrets

_REF_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: 32, read over the phone


def new_ref(prefix: str) -> str:
    """`PREFIX-` and six characters of the alphabet, from six random bytes: the alphabet has
    32 characters, so each byte modulo 32 picks one without bias (one call for randomness,
    not six)."""
    return f"{prefix}-" + "".join(_REF_ALPHABET[b % 32] for b in secrets.token_bytes(6))


def new_secret() -> str:
    """The per-ticket secret of the agents' reply address (hex: survives case folding)."""
    return secrets.token_hex(10)
