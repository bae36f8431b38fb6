"""Stage 2: what kind of message this is, before it can touch a ticket.

Machine-generated mail is marked so that it never gets an automatic answer, and delivery
reports are told apart from people: they are recorded on the ticket they report on and never
open one. Pure: no database (duplicates are the runner's lookup), so it runs in the parse
workers (pipeline/prepare.py), whose start-up should not import the database layer.
"""

from __future__ import annotations

import dataclasses

from maild.domain import Inbound
from maild.mailsafety.authres import sender_verified
from maild.mailsafety.autoreply import classify_automatic
from maild.mailsafety.bounce import Report, parse_report
from maild.mailsafety.mime import MessageReader


class Guard:
    def __init__(self, own_addresses: frozenset[str],
                 trusted_authserv_ids: tuple[str, ...] = ()) -> None:
        self._own = frozenset(a.lower() for a in own_addresses)
        self._trusted = trusted_authserv_ids

    def inspect(self, inbound: Inbound) -> tuple[Inbound, Report | None]:
        """Mark machine-generated mail; parse a delivery report when it is one."""
        if inbound.mime is None:
            return inbound, None
        reader = MessageReader(inbound.mime)  # both detectors read From, Subject, the text...
        report = parse_report(reader)
        verdict = classify_automatic(reader, own_addresses=self._own)
        reasons = verdict.reasons if verdict.automatic else ()
        if report is not None:
            reasons = (f"report:{report.kind}", *reasons)
        if reasons:
            inbound = dataclasses.replace(inbound, automatic=tuple(dict.fromkeys(reasons)))
        if self._trusted and inbound.sender is not None:
            values = [v for k, v in inbound.headers if k.lower() == "authentication-results"]
            if sender_verified(values, inbound.sender.address, self._trusted):
                inbound = dataclasses.replace(inbound, verified_sender=True)
        return inbound, report

