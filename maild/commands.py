"""Commands that build the daemon's parts: `route`, `tickets open`, `sla check`.

The read-only `check` and `tickets list/show` are in maild/readonly.py, which does not
import the daemon. These build their answers as plain JSON-ready dicts (the shapes of
INTERFACE.md), so the human-readable output and `--json` cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from maild.clock import SystemClock
from maild.domain import Address
from maild.errors import ConfigError
from maild.mailsafety.vocabulary import normalise_subject
from maild.outbound.queue import context_for
from maild.outbound.render import Templates
from maild.pipeline.parse import ParseError, parse
from maild.rules.engine import RuleEngine
from maild.rules.loader import load_rules
from maild.settings import Settings
from maild.store.models import Ticket
from maild.tickets.respond import acknowledgement


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def route(settings: Settings, file: Path) -> dict[str, Any]:
    """The decision for one message file, and the acknowledgement it would get."""
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read message: {exc}", file=str(file)) from None
    templates = Templates(settings.templates)
    try:
        # The daemon detects among the languages it has templates in: so does the dry run.
        inbound = parse(raw, None, default_language=settings.default_language,
                        languages=templates.languages())
    except ParseError as exc:
        raise ConfigError(f"not a message maild can parse: {exc}", file=str(file)) from None
    from maild.app import guard_for

    inbound, report = guard_for(settings).inspect(inbound)
    decision = RuleEngine(load_rules(settings.rules), SystemClock()).classify(inbound)
    draft = acknowledgement(inbound, decision, new_ticket=True) if report is None else None
    ack = None
    if draft is not None:
        ticket = Ticket(ref=f"{settings.support.ref_prefix}-XXXXXX",
                        subject=normalise_subject(inbound.subject) or "(no subject)",
                        level=decision.level, department=decision.department,
                        priority=decision.priority, status="new")
        support = Address(settings.support.name, settings.support.address)
        rendered = templates.render(
            draft.template, draft.language,
            context_for(ticket, support, draft.to, inbound.body_text))
        ack = {"subject": rendered.subject, "body": rendered.body}
    return {
        "matched": [h.name for h in decision.hits if h.matched],
        "rules": [{"name": h.name, "matched": h.matched} for h in decision.hits],
        "level": decision.level,
        "department": decision.department,
        "priority": decision.priority,
        "template": decision.answer or decision.template,
        "answer": decision.answer,
        "tags": list(decision.tags),
        "notify": list(decision.notify),
        "language": inbound.language,
        "automatic": list(inbound.automatic),
        "acknowledgement": ack,
    }


def open_ticket(settings: Settings, *, customer: str, subject: str, level: int | None,
                department: str | None, body: str) -> dict[str, Any]:
    """Intake from the command line: a ticket on a caller's behalf, acknowledged by email.

    The acknowledgement is queued with the ticket and sent right away when the SMTP server
    answers; otherwise the daemon sends it.
    """
    import asyncio
    from email.message import EmailMessage

    from maild.app import build
    from maild.tickets.intake import IntakeError, customer_address, intake_classification

    try:
        caller = customer_address(customer)
    except IntakeError as exc:
        raise ConfigError(f"--customer: {exc}") from None
    app = build(settings)
    try:
        fields = {k: str(v) for k, v in (("level", level), ("department", department))
                  if v is not None}
        # The rules decide on the call as on a mail with its subject and notes.
        draft = EmailMessage()
        draft["From"] = caller.address
        draft["Subject"] = subject
        draft.set_content(body or subject)
        inbound = parse(draft.as_bytes(), None, default_language=settings.default_language,
                        languages=app.templates.languages())
        try:
            classification = intake_classification(app.pipeline.classify(inbound), fields,
                                                   app.rules.organisation)
        except IntakeError as exc:
            raise ConfigError(str(exc)) from None
        with app.sessions() as session, session.begin():
            ticket = app.tickets.intake(
                app.direct_store(session), customer=caller, subject=subject, text=body,
                classification=classification, language=inbound.language,
                opened_by="the command line")
            ref, number = ticket.ref, ticket.id
        stats = asyncio.run(app.sender.drain_once())
        return {"id": number, "ref": ref, "acknowledgement_sent": stats.sent > 0}
    finally:
        app.dispose()


def sla_check(settings: Settings) -> list[dict[str, Any]]:
    """One SLA pass now; what it raised. Its notifications are sent right away."""
    import asyncio

    from maild.app import build

    app = build(settings)
    try:
        raised = app.sla_pass()
        asyncio.run(app.sender.drain_once())
    finally:
        app.dispose()
    return [{"ticket": r.ref, "id": r.ticket_id, "policy": r.policy, "target": r.target,
             "kind": r.kind, "due": _iso(r.due_at), "actions": list(r.actions)}
            for r in raised]
