"""What the read-only commands show: `check`, `route`, `tickets list/show`.

They build their answers as plain JSON-ready dicts (the shapes of INTERFACE.md), so the
human-readable output and `--json` cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from maild.app import mailbox_defaults
from maild.clock import SystemClock
from maild.domain import Address
from maild.errors import ConfigError
from maild.mailsafety.vocabulary import normalise_subject
from maild.outbound.queue import context_for
from maild.outbound.render import MailContext, PersonView, Templates, TicketView
from maild.pipeline.parse import ParseError, parse
from maild.rules.engine import RuleEngine
from maild.rules.loader import check_templates, load_rules
from maild.settings import Settings
from maild.sla.engine import breaches, load_sla
from maild.store import db, repo
from maild.store.models import Ticket
from maild.tickets.respond import acknowledgement

MESSAGE_DIRECTIONS = ("inbound", "outbound", "note")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def sample_context(settings: Settings) -> MailContext:
    return MailContext(
        ticket=TicketView(ref=f"{settings.support.ref_prefix}-ABC234", subject="Sample",
                          level=1, department=None, priority="normal", status="new"),
        customer=PersonView(name="Erika Mustermann", address="erika@example.test"),
        support=PersonView(name=settings.support.name, address=settings.support.address),
        message_excerpt="Hello, my sample message.",
    )


def check_configuration(settings: Settings) -> list[str]:
    """Validate everything that can be validated without a server; lines to print.

    A missing translation is a warning, not an error: the mail goes out in English, the
    daemon runs, and an admin adding a language template by template is not stopped."""
    templates = Templates(settings.templates)
    names = templates.check(sample_context(settings))
    warnings = templates.missing(settings.default_language, settings.staff_language_or_default)
    rules = load_rules(settings.rules)
    check_templates(rules, names)
    sla = load_sla(settings.sla)
    mailbox_defaults(settings, rules)
    org = rules.organisation
    return [
        f"configuration {settings.config_path}: valid",
        f"mailboxes: {', '.join(m.name for m in settings.mailboxes)}",
        f"rules {rules.source}: {len(rules.rules)} rules, {len(org.levels)} levels, "
        f"{len(org.departments)} departments, {len(org.agents)} agents, "
        f"{len(rules.calendars)} calendars",
        f"sla {sla.source or '(none)'}: {len(sla.policies)} policies, checked every "
        f"{sla.check_interval:g} s",
        f"templates: {len(names)} valid ({', '.join(names)}); customers are answered in "
        f"{', '.join(templates.languages())}, staff in {settings.staff_language_or_default}",
        *(f"warning: {w}" for w in warnings),
    ]


def route(settings: Settings, file: Path) -> dict[str, Any]:
    """The decision for one message file, and the acknowledgement it would get."""
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read message: {exc}", file=str(file)) from None
    try:
        inbound = parse(raw, None, default_language=settings.default_language)
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
        rendered = Templates(settings.templates).render(
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


def ticket_summary(ticket: Ticket, message_count: int) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "ref": ticket.ref,
        "subject": ticket.subject,
        "requester": ticket.requester,
        "status": ticket.status,
        "level": ticket.level,
        "department": ticket.department,
        "priority": ticket.priority,
        "language": ticket.language,
        "assignee": ticket.assignee,
        "created_at": _iso(ticket.created_at),
        "updated_at": _iso(ticket.updated_at),
        "message_count": message_count,
    }


def ticket_list(settings: Settings, status: str | None) -> list[dict[str, Any]]:
    with db.opened(settings.database.url) as sessions, sessions() as session:
        return [ticket_summary(t, n) for t, n in repo.list_tickets(session, status)]


def ticket_detail(settings: Settings, ref: str) -> dict[str, Any] | None:
    with db.opened(settings.database.url) as sessions, sessions() as session:
        ticket = repo.find_ticket(session, ref)
        if ticket is None:
            return None
        # Staff notifications are not part of the conversation: the events list them.
        messages = [m for m in ticket.messages if m.direction in MESSAGE_DIRECTIONS]
        out = ticket_summary(ticket, len(messages))
        out["messages"] = [
            {"direction": m.direction, "message_id": m.message_id,
             "from": m.from_addr, "to": m.to_addrs, "subject": m.subject,
             "date": _iso(m.date or m.created_at)}
            for m in messages
        ]
        out["events"] = [{"at": _iso(e.at), "kind": e.kind, "data": e.data}
                         for e in ticket.events]
        out["sla"] = {
            "policy": ticket.sla_policy,
            "first_response_due": _iso(ticket.sla_first_response_due),
            "first_response_at": _iso(ticket.first_response_at),
            "next_response_due": _iso(ticket.sla_next_response_due),
            "resolution_due": _iso(ticket.sla_resolution_due),
            "resolved_at": _iso(ticket.resolved_at),
            "paused": bool(ticket.sla_pauses and ticket.sla_pauses[-1][1] is None),
            "breaches": [{"target": b.target, "due": _iso(b.due_at),
                          "raised_at": _iso(b.raised_at), "policy": b.policy}
                         for b in breaches(ticket, session)],
        }
        return out


def format_ticket(t: dict[str, Any]) -> str:
    lines = [
        f"{t['ref']}  #{t['id']}  {t['subject']}",
        f"  requester {t['requester']}  status {t['status']}  level {t['level']}  "
        f"department {t['department'] or '-'}  priority {t['priority']}",
        f"  created {t['created_at']}",
        "  messages:",
    ]
    lines += [f"    {m['date']}  {m['direction']:<8} {m['from']} -> {m['to']}: {m['subject']}"
              for m in t["messages"]]
    lines.append("  events:")
    lines += [f"    {e['at']}  {e['kind']}  {e['data']}" for e in t["events"]]
    return "\n".join(lines)


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
        inbound = parse(draft.as_bytes(), None, default_language=settings.default_language)
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
