"""The register's mail: the agent told which wish a request joined (and a rejection's
reason), quality management told of new wishes and re-reviews (Reply-To: the wish's
signed address, where their `#wish-status` answer goes), customers told of an outcome.
All of it through the ticket service, so through the outbox and its limits.
"""

from __future__ import annotations

from collections.abc import Sequence

from maild.outbound.render import TicketView
from maild.store.models import Ticket
from maild.store.ticketstore import TicketStore
from maild.tickets.address import signed_address
from maild.tickets.service import TicketService
from maild.tickets.staffmail import StaffMail
from maild.wishes.models import Wish
from maild.wishes.rules import Asked, Recorded
from maild.wishes.store import WishStore

TAG = "wish"
CUSTOMER_TEMPLATES = {"done": "wish_done", "rejected": "wish_rejected"}


def view(wish: Wish) -> TicketView:
    """A wish in the place of a ticket, for the staff templates."""
    return TicketView(ref=wish.key, subject=wish.title, level=0, department=wish.department,
                      priority="-", status=wish.status)


def listing(asked: Sequence[Asked]) -> str:
    return "\n".join(f"  {a.at:%Y-%m-%d %H:%M}  {a.ticket:<12} {a.customer}" for a in asked)


class WishMailer:
    def __init__(self, tickets: TicketService) -> None:
        self.tickets = tickets

    def address(self, key: str) -> str:
        """The signed address quality management answers to about `key`."""
        ident = key.lower()
        support = self.tickets.outgoing.support.address
        return signed_address(support, TAG, ident,
                              self.tickets.outgoing.ids.sign(f"{TAG}-{ident}"))

    # -- agents ---------------------------------------------------------------------------
    def tell_agent(self, store: TicketStore, ticket: Ticket, agent: str,
                   r: Recorded) -> None:
        if r.how == "new":
            headline = f"New wish {r.key} recorded"
        elif r.again:
            headline = f"Already recorded for this ticket: wish {r.key}"
        else:
            headline = f"Recorded under wish {r.key}"
        lines = [f"Wish {r.key}: {r.title}",
                 f"Status: {r.status}; {r.counts.requests} requests from "
                 f"{r.counts.customers} customers."]
        if r.how == "title":
            lines.append(f"It joined an existing wish with a similar title (score "
                         f"{r.score:g}). If it is a different wish, answer this mail with\n"
                         f"  #wish new TITLE")
        if r.reason is not None:
            lines.append(f"This wish was REJECTED: {r.reason}\nPlease explain that to the "
                         "customer.")
        if r.rereview:
            lines.append("Enough customers asked since the rejection: it goes back to "
                         "quality management for review.")
        self.tickets.notify(store, ticket, agent, author="maild", headline=headline,
                            text="\n\n".join(lines))

    # -- quality management -----------------------------------------------------------------
    def tell_qm(self, store: TicketStore, wish: Wish, headline: str, text: str, *,
                department: bool = False, besides: str = "") -> None:
        """Quality management (and, with `department`, the wish's department's own), not
        `besides` (who caused this)."""
        settings = self.tickets.wishes
        addresses = [*settings.quality_management,
                     *(settings.departments.get(wish.department or "", []) if department
                       else [])]
        for address in dict.fromkeys(a for a in addresses if a != besides):
            self.tickets.mail_staff(store, StaffMail(
                to=address, template="wish_notification", about=view(wish),
                headline=headline, text=text, reply_to=self.address(wish.key),
                author="maild"))

    def answer_qm(self, store: TicketStore, to: str, *, wish: Wish | None, key: str,
                  headline: str, text: str, in_reply_to: str | None) -> None:
        about = view(wish) if wish is not None else TicketView(
            ref=key or "wish", subject="(unknown wish)", level=0, department=None,
            priority="-", status="-")
        self.tickets.mail_staff(store, StaffMail(
            to=to, template="wish_notification", about=about, headline=headline, text=text,
            reply_to=self.address(wish.key) if wish is not None else None, author="maild",
            in_reply_to=in_reply_to))

    @staticmethod
    def new_wish_text(wish: Wish, ticket: Ticket, by: str) -> str:
        return (f"{by} recorded a new wish on ticket {ticket.ref} ({ticket.requester}).\n\n"
                f"What the customer wrote:\n{wish.description}")

    @staticmethod
    def rereview_text(wish: Wish, reason: str | None, newer: Sequence[Asked]) -> str:
        customers = len({a.customer for a in newer})
        return (f"This wish was rejected ({reason or 'no reason given'}). Since then "
                f"{customers} customers asked for it again, so it is back under review.\n\n"
                f"The requests since the rejection:\n{listing(newer)}")

    # -- customers --------------------------------------------------------------------------
    def tell_customers(self, store: TicketStore, wish: Wish) -> int:
        """Every customer who asked, once per status ever, on the ticket they last asked
        on, in that ticket's language; the loop limits and suppressions apply."""
        ws = WishStore(store.session)
        template = CUSTOMER_TEMPLATES[wish.status]
        told = ws.told(wish, wish.status)
        latest: dict[str, int] = {}
        for request in ws.requests(wish):
            latest[request.customer.lower()] = request.ticket_id
        sent = 0
        now = self.tickets.clock.now()
        for customer, ticket_id in latest.items():
            if customer in told:
                continue
            ticket = store.ticket(ticket_id)
            blocked = self.tickets.inform_customer(
                store, ticket, template=template, headline=wish.key,
                text=wish.title if wish.status == "done" else f"{wish.title}\n\n{wish.reason}",
                kind="wish_notice")
            if blocked is None:
                ws.add_notice(wish, customer, wish.status, now, "queued")
                sent += 1
        return sent
