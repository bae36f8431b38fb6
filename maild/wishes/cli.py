"""`maild wishes ...`: the register for quality management on the command line.

Kept light (no maild.app, no pipeline): reading needs the database alone; a change that
may mail customers builds the ticket service it needs from the settings here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from maild.clock import Clock, SystemClock
from maild.domain import Address
from maild.errors import MaildError
from maild.settings import Settings
from maild.store import db
from maild.store.ticketstore import DirectStore
from maild.wishes import views
from maild.wishes.rules import StatusError

if TYPE_CHECKING:
    from maild.wishes.register import Register
from maild.wishes.store import WishStore

T = TypeVar("T")


def _reading(settings: Settings, read: Callable[[WishStore], T]) -> T:
    with db.opened(settings.database.url) as sessions, sessions() as session:
        return read(WishStore(session))


def wish_list(settings: Settings, **filters: Any) -> list[dict[str, Any]]:
    return _reading(settings, lambda ws: views.wish_list(ws, **filters))


def wish_show(settings: Settings, key: str) -> dict[str, Any]:
    found = _reading(settings, lambda ws: views.wish_detail(ws, key))
    if found is None:
        raise MaildError(f"no wish {key}")
    return found


def parse_day(text: str, option: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(text), time(), UTC)
    except ValueError:
        raise BadInput(f"{option}: not a date (YYYY-MM-DD): {text!r}") from None


def wish_period(settings: Settings, *, since: str | None, until: str | None, top: int,
                clock: Clock | None = None) -> dict[str, Any]:
    """Days in UTC; `until` is inclusive; the default period is the last 30 days."""
    now = (clock or SystemClock()).now()
    end = parse_day(until, "--until") + timedelta(days=1) if until else now
    start = parse_day(since, "--since") if since else end - timedelta(days=30)
    return _reading(settings, lambda ws: views.period(ws, start, end, top))


@contextmanager
def _changing(settings: Settings, clock: Clock | None) -> Iterator[tuple[Register,
                                                                          DirectStore]]:
    from maild.outbound.ids import MessageIdFactory
    from maild.outbound.queue import Outgoing
    from maild.outbound.render import Templates
    from maild.rules.loader import load_rules
    from maild.sla.engine import SlaEngine, load_sla
    from maild.store import repo
    from maild.store.automail import AutomailCounter
    from maild.tickets.service import TicketService
    from maild.wishes.register import Register

    clock = clock or SystemClock()
    rules = load_rules(settings.rules)
    with db.opened(settings.database.url) as sessions, sessions() as session, session.begin():
        secret = (settings.support.secret.get_secret_value() if settings.support.secret
                  else repo.get_or_create_secret(session, "message_id_secret"))
        tickets = TicketService(
            outgoing=Outgoing(templates=Templates(settings.templates),
                              ids=MessageIdFactory(secret.encode(),
                                                   settings.support.domain),
                              support=Address(settings.support.name,
                                              settings.support.address)),
            clock=clock, ref_prefix=settings.support.ref_prefix,
            organisation=lambda: rules.organisation,
            sla=SlaEngine(load_sla(settings.sla), clock, customer=lambda address: dict(
                rules.organisation.customer(address))),
            safety=settings.safety, wishes=settings.wishes)
        yield Register(tickets), DirectStore(session, AutomailCounter(settings.safety))


def wish_set(settings: Settings, key: str, *, status: str, reason: str | None,
             department: str | None, by: str, clock: Clock | None = None) -> dict[str, Any]:
    try:
        with _changing(settings, clock) as (register, store):
            changed = register.set_status(store, key, status, reason=reason, by=by,
                                          department=department)
            result = {"key": changed.wish.key, "status": changed.wish.status,
                      "reason": changed.wish.reason, "department": changed.wish.department,
                      "changed": changed.changed, "customers_told": changed.told}
    except (StatusError, ValueError) as exc:  # WishError: an unknown key
        raise BadInput(str(exc)) from None
    return result


def wish_merge(settings: Settings, key: str, into: str, *, by: str,
               clock: Clock | None = None) -> dict[str, Any]:
    try:
        with _changing(settings, clock) as (register, store):
            target = register.merge(store, key, into, by=by)
            result = {"merged": key.upper(), "into": target.key}
    except ValueError as exc:  # WishError: an unknown key
        raise BadInput(str(exc)) from None
    return result


class BadInput(MaildError):
    """An unknown key, a rejection without a reason: nothing was changed (exit 2)."""
