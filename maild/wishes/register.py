"""The register's operations: record a customer's wish from an agent's command, change a
wish's status, merge two wishes. Each takes the ticket store of the caller's transaction
(an agent's mail, quality management's mail, a command) and never commits; the mail they
cause is queued in the same transaction (maild/wishes/mail.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from maild.outbound.queue import excerpt
from maild.store.models import Ticket
from maild.store.ticketstore import TicketStore
from maild.tickets.service import TicketService
from maild.wishes.mail import WishMailer
from maild.wishes.match import best_match, looks_like_key
from maild.wishes.models import Wish, WishRequest
from maild.wishes.rules import Recorded, StatusError, check_change, counts, rereview_due
from maild.wishes.store import WishStore

log = structlog.get_logger("maild.wishes")
DESCRIPTION_CHARS = 1000


class WishError(ValueError):
    """A wish command that cannot be applied (an unknown key, no title); nothing changes."""


@dataclass(frozen=True)
class WishCommand:
    """What an agent asked for: `#wish TITLE`, `#wish new TITLE`, `#wish W-42`, or the
    same after `#no` (the reply says "not possible")."""

    mode: str  # match | new | key
    text: str  # the title, or the key
    not_possible: bool = False


def read_command(name: str, argument: str) -> WishCommand:
    """`name` is wish or no; WishError when there is nothing to record."""
    text = " ".join(argument.split())
    mode = "match"
    first, _, rest = text.partition(" ")
    if first.lower() == "new":
        mode, text = "new", rest.strip()
    elif looks_like_key(text):
        mode, text = "key", text.upper()
    if not text:
        raise WishError(f"#{name}: give the wish's title (or its key, e.g. W-42)")
    return WishCommand(mode, text[:300], not_possible=name == "no")


@dataclass(frozen=True)
class Changed:
    wish: Wish
    changed: bool
    told: int  # customers told by mail


class Register:
    def __init__(self, tickets: TicketService) -> None:
        self.tickets = tickets
        self.settings = tickets.wishes
        self.mailer = WishMailer(tickets)

    def check(self, store: TicketStore, command: WishCommand) -> None:
        """Before anything of the agent's mail is applied: a key must be known."""
        if command.mode == "key" and WishStore(store.session).by_key(command.text) is None:
            raise WishError(f"#wish {command.text}: no such wish")

    # -- agents record ------------------------------------------------------------------
    def record(self, store: TicketStore, ticket: Ticket, *, by: str,
               command: WishCommand) -> Recorded:
        ws = WishStore(store.session)
        now = self.tickets.clock.now()
        wish: Wish | None = None
        score: float | None = None
        how = command.mode
        if command.mode == "key":
            wish = ws.by_key(command.text)
            if wish is None:
                raise WishError(f"#wish {command.text}: no such wish")
        elif command.mode == "new":
            # The agent was told this ticket joined a similar wish, and says it is not
            # that one: the request leaves it.
            wrong = ws.last_joined_by_title(ticket.id)
            if wrong is not None:
                store.session.delete(wrong)
                store.session.flush()
        else:
            found = best_match(command.text, ws.candidates(), self.settings.match_score)
            if found is not None:
                wish, score, how = ws.by_key(found.key), found.score, "title"
        created = wish is None
        if wish is None:
            how = "new"
            wish = ws.add_wish(title=command.text, department=ticket.department, by=by,
                               at=now, description=excerpt(
                                   store.first_customer_text(ticket.id), DESCRIPTION_CHARS))
        reason = wish.reason if wish.status == "rejected" else None
        again = ws.request_on(wish, ticket.id)
        if again is None:
            ws.add_request(WishRequest(
                wish_id=wish.id, ticket_id=ticket.id, ticket_ref=ticket.ref,
                customer=ticket.requester.lower(), at=now, by=by, joined_by=how,
                score=score, title=command.text, not_possible=command.not_possible))
        elif command.not_possible:
            again.not_possible = True
        asked = ws.asked(wish)
        newer = rereview_due(wish.status, ws.rejected_at(wish), asked,
                             self.settings.rereview_customers)
        if newer is not None:
            wish.status, wish.reason, wish.updated_at = "under_review", None, now
            ws.add_history(wish, at=now, by="maild", note=(
                f"re-review: {counts(newer).customers} customers asked since the rejection"))
        store.add_event(ticket.id, "wish.recorded", now, {
            "wish": wish.key, "by": by, "how": how, "score": score,
            "not_possible": command.not_possible, "again": again is not None})
        recorded = Recorded(key=wish.key, title=wish.title, status=wish.status,
                            reason=reason, how=how, score=score, again=again is not None,
                            rereview=newer is not None, counts=counts(asked))
        self.mailer.tell_agent(store, ticket, by, recorded)
        if created:
            self.mailer.tell_qm(store, wish, "New wish", self.mailer.new_wish_text(
                wish, ticket, by))
        if newer is not None:
            self.mailer.tell_qm(store, wish, "Back to review", self.mailer.rereview_text(
                wish, reason, newer), department=True)
        log.info("wish.recorded", wish=wish.key, ticket=ticket.ref, how=how, again=bool(again))
        return recorded

    # -- quality management decides -------------------------------------------------------
    def set_status(self, store: TicketStore, key: str, status: str, *, reason: str | None,
                   by: str, department: str | None = None) -> Changed:
        ws = WishStore(store.session)
        wish = ws.by_key(key)
        if wish is None:
            raise WishError(f"no wish {key}")
        reason = check_change(status, reason)
        if department is not None:
            departments = self.tickets.organisation().departments
            if departments and department not in departments:
                raise StatusError(f"unknown department '{department}' (known: "
                                  f"{', '.join(sorted(departments))})")
        now = self.tickets.clock.now()
        new_status = status != wish.status
        moved = department is not None and department != wish.department
        if not new_status and reason == wish.reason and not moved:
            return Changed(wish, changed=False, told=0)
        note = None if new_status or reason != wish.reason else f"department {department}"
        wish.status, wish.reason, wish.updated_at = status, reason, now
        if moved:
            wish.department = department
        ws.add_history(wish, at=now, by=by, note=note)
        if (new_status and status == "under_review") or moved:
            self.mailer.tell_qm(store, wish, "For review", f"{by} handed this wish to the "
                                f"{wish.department or '-'} department for review.",
                                department=True, besides=by)
        told = 0
        if new_status and status in self.settings.notify_customers_on:
            told = self.mailer.tell_customers(store, wish)
        log.info("wish.status", wish=wish.key, status=status, by=by, told=told)
        return Changed(wish, changed=True, told=told)

    def merge(self, store: TicketStore, key: str, into: str, *, by: str) -> Wish:
        """`key`'s requests move to `into`; both keep their history, and `key` leads to
        `into` from now on."""
        ws = WishStore(store.session)
        source, target = ws.by_key(key), ws.by_key(into)
        if source is None:
            raise WishError(f"no wish {key}")
        if target is None:
            raise WishError(f"no wish {into}")
        if source.id == target.id:
            raise WishError(f"{key} and {into} are the same wish")
        now = self.tickets.clock.now()
        moved = ws.move_requests(source, target)
        source.merged_into_id, source.updated_at, target.updated_at = target.id, now, now
        ws.add_history(source, at=now, by=by, note=f"merged into {target.key}")
        ws.add_history(target, at=now, by=by,
                       note=f"merged {source.key} into this ({moved} requests)")
        store.session.flush()
        return target
