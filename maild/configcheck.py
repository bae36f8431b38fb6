"""`maild check`: everything that can be validated without a server or the database.

Imports only what validating needs (settings, templates, rules, the SLA file): not the
database layer, not the daemon, so the answer comes as fast as a person types.
"""

from __future__ import annotations

from maild.outbound.render import MailContext, PersonView, Templates, TicketView
from maild.rules.loader import check_templates, load_rules
from maild.rules.mailboxes import mailbox_defaults
from maild.settings import Settings
from maild.sla.config import load_sla


def check_configuration(settings: Settings) -> list[str]:
    """Validate everything that can be validated without a server; lines to print.

    A missing translation is a warning, not an error: the mail goes out in English, the
    daemon runs, and an admin adding a language template by template is not stopped."""
    sample = MailContext(
        ticket=TicketView(ref=f"{settings.support.ref_prefix}-ABC234", subject="Sample",
                          level=1, department=None, priority="normal", status="new"),
        customer=PersonView(name="Erika Mustermann", address="erika@example.test"),
        support=PersonView(name=settings.support.name, address=settings.support.address),
        message_excerpt="Hello, my sample message.",
    )
    templates = Templates(settings.templates)
    names = templates.check(sample)
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
