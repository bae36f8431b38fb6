"""How much automatic mail the outbox holds per recipient, per ticket and in total, within
the windows of the loop limits (`maild.mailsafety.limits` decides on these counts), and
which addresses are suppressed.

Every count is one index range scan (outbox: rcpt_to, ticket_id or kind, with created_at);
the statements are built once from the limits, only the times and the key change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, func, select

from maild.mailsafety.limits import AUTOMATIC_KINDS
from maild.settings import SafetySettings, WindowLimit
from maild.store.models import Outbox, Suppression

_SUPPRESSED = select(Suppression.address, Suppression.until, Suppression.reason).where(
    Suppression.address.in_(bindparam("addresses", expanding=True)))
IN_CHUNK = 500  # values a statement: far below every driver's limit on parameters


def _counting(limits: list[WindowLimit], *, keyed: bool) -> Select[*tuple[Any, ...]]:
    """Automatic mail in each limit's window (one index range scan).

    Counted for a recipient or a ticket (`keyed`), the kind is tested in the count, not in
    WHERE: given a kind in WHERE and a long list of recipients, SQLite chooses the index on
    kind and reads every automatic mail of the window instead of the recipients' own.
    """
    automatic = Outbox.kind.in_(AUTOMATIC_KINDS)
    windows = [Outbox.created_at > bindparam(f"since{i}") for i in range(len(limits))]
    counts = [func.count().filter(and_(automatic, w) if keyed else w) for w in windows]
    query = select(*counts).select_from(Outbox).where(Outbox.created_at > bindparam("oldest"))
    return query if keyed else query.where(automatic)


@dataclass(frozen=True)
class AutomailCounter:
    """The statements for one set of limits (settings are frozen: built once a process)."""

    safety: SafetySettings
    _statements: dict[str, tuple[list[WindowLimit], Select[*tuple[Any, ...]] | None]] = field(
        init=False, repr=False, compare=False)
    _per_recipients: Select[*tuple[Any, ...]] | None = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checks = {"per_recipient": (self.safety.per_recipient, Outbox.rcpt_to),
                  "per_ticket": (self.safety.per_ticket, Outbox.ticket_id),
                  "total": (self.safety.total, None)}
        statements: dict[str, tuple[list[WindowLimit], Select[*tuple[Any, ...]] | None]] = {}
        for label, (limits, column) in checks.items():
            if not limits:
                statements[label] = (limits, None)
                continue
            query = _counting(limits, keyed=column is not None)
            if column is not None:
                query = query.where(column == bindparam("key"))
            statements[label] = (limits, query)
        object.__setattr__(self, "_statements", statements)
        many = None
        if self.safety.per_recipient:
            many = _counting(self.safety.per_recipient, keyed=True).add_columns(
                Outbox.rcpt_to).where(Outbox.rcpt_to.in_(bindparam("keys", expanding=True))
                                      ).group_by(Outbox.rcpt_to)
        object.__setattr__(self, "_per_recipients", many)

    def counts(self, conn: Connection, label: str, key: str | int | None,
               now: datetime) -> tuple[int, ...]:
        """One count per window of the limits named `label` (per_recipient, per_ticket,
        total), for `key` (a recipient, a ticket id; None for the total)."""
        limits, statement = self._statements[label]
        if statement is None:
            return ()
        params = _params(limits, now)
        if key is not None:
            params["key"] = key
        return tuple(int(c or 0) for c in conn.execute(statement, params).one())

    def per_recipients(self, conn: Connection, recipients: Sequence[str],
                       now: datetime) -> dict[str, tuple[int, ...]]:
        """The per-recipient counts of many recipients at once (every one given is in the
        answer)."""
        limits = self.safety.per_recipient
        found: dict[str, tuple[int, ...]] = {a: (0,) * len(limits) for a in recipients}
        if self._per_recipients is None:
            return found
        params = _params(limits, now)
        for start in range(0, len(recipients), IN_CHUNK):
            chunk = list(recipients[start:start + IN_CHUNK])
            for *counts, rcpt in conn.execute(self._per_recipients, {**params, "keys": chunk}):
                found[rcpt] = tuple(int(c or 0) for c in counts)
        return found


def suppressed(conn: Connection, addresses: Sequence[str]
               ) -> dict[str, tuple[datetime, str] | None]:
    """Each address's suppression (until, reason), or None."""
    found: dict[str, tuple[datetime, str] | None] = dict.fromkeys(addresses)
    for start in range(0, len(addresses), IN_CHUNK):
        rows = conn.execute(_SUPPRESSED, {"addresses": list(addresses[start:start + IN_CHUNK])})
        found.update((a, (until, reason)) for a, until, reason in rows)
    return found


def _params(limits: list[WindowLimit], now: datetime) -> dict[str, object]:
    """The start of each limit's window, and of the longest."""
    params: dict[str, object] = {
        f"since{i}": now - timedelta(seconds=limit.window) for i, limit in enumerate(limits)}
    params["oldest"] = now - timedelta(seconds=max(limit.window for limit in limits))
    return params
