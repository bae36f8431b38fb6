"""The exceptions maild raises across module boundaries.

`cli.py` is the only place that turns them into exit codes: a `ConfigError` is a usage
problem (exit 2), every other `MaildError` an operational failure (exit 1).
"""

from __future__ import annotations


class MaildError(Exception):
    """Base class of every error maild raises on purpose."""


class ConfigError(MaildError):
    """Invalid configuration, rules, SLA policies or templates.

    Carries the file, the key (a dotted path) and, for YAML, the line, so that an admin can
    go straight to the mistake.
    """

    def __init__(
        self, message: str, *, file: str | None = None, key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.file = file
        self.key = key
        self.line = line
        self.reason = message
        where = ":".join(p for p in (file, str(line) if line else None) if p)
        parts = [where] if where else []
        if key:
            parts.append(f"key '{key}'")
        parts.append(message)
        super().__init__(": ".join(parts))


class TransportError(MaildError):
    """A mail server could not be reached or refused to talk securely."""
