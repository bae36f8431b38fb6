"""Quality management's mail to a wish's signed address: `#wish-status W-42 rejected Too
costly for the shared plans`. Routing (pipeline/route.py) has checked the address's
signature; here the sender must be a configured quality-management address and every
command valid, or nothing changes and the sender is told why, with their text quoted.
The raw mail is kept (wish_mail) whatever the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from maild.domain import Inbound, Outcome, Stop
from maild.store.ticketstore import TicketStore
from maild.tickets.service import TicketService
from maild.wishes.register import Register, WishError
from maild.wishes.rules import StatusCommand, StatusError, parse_status_commands
from maild.wishes.store import WishStore

log = structlog.get_logger("maild.wishes")


@dataclass
class WishInbox:
    tickets: TicketService

    def handle(self, store: TicketStore, inbound: Inbound, ident: str, wrote: str
               ) -> Outcome:
        """`wrote`: the new part of the mail, quoted text stripped (agents/parse.py)."""
        ws = WishStore(store.session)
        if ws.mail_seen(inbound.message_id):
            return Outcome(Stop.DISCARD, "wish command mail seen before")
        assert inbound.sender is not None
        sender = inbound.sender.address.lower()
        register = Register(self.tickets)
        key = ident.upper()
        quoted = "\n".join(f"> {line}" for line in wrote.splitlines())
        try:
            settings = self.tickets.wishes
            central = sender in settings.quality_management
            if not central and not any(sender in a for a in settings.departments.values()):
                raise StatusError(f"{sender} is not a quality-management address "
                                  "(setting wishes.quality_management)")
            commands = parse_status_commands(wrote)
            for command in commands:  # all checked before any is applied
                wish = ws.by_key(command.key)
                if wish is None:
                    raise WishError(f"#wish-status {command.key}: no such wish")
                if not central and sender not in settings.departments.get(
                        wish.department or "", []):
                    raise StatusError(f"{wish.key} belongs to the {wish.department or '-'} "
                                      f"department, whose quality management {sender} is "
                                      "not")
        except (StatusError, WishError) as exc:
            return self._refuse(store, ws, inbound, sender, key, str(exc), quoted)
        done = [self._apply(store, register, command, sender) for command in commands]
        wish = ws.by_key(commands[0].key)
        register.mailer.answer_qm(
            store, sender, wish=wish, key=key, headline="Applied",
            text="\n".join(done) + f"\n\nWhat you wrote:\n{quoted}",
            in_reply_to=inbound.message_id)
        ws.add_mail(message_id=inbound.message_id, sender=sender, raw=inbound.raw,
                    at=self.tickets.clock.now(), result="applied: " + "; ".join(done))
        log.info("wish.mail.applied", sender=sender, commands=len(commands))
        return Outcome(Stop.DISCARD, "wish command applied (kept in wish_mail)")

    @staticmethod
    def _apply(store: TicketStore, register: Register, command: StatusCommand,
               sender: str) -> str:
        changed = register.set_status(store, command.key, command.status,
                                      reason=command.reason, by=sender)
        wish = changed.wish
        if not changed.changed:
            return f"{wish.key} was {wish.status} already: nothing changed"
        told = f"; {changed.told} customers told by mail" if changed.told else ""
        return (f"{wish.key} ({wish.title}) is now {wish.status}"
                + (f": {wish.reason}" if wish.reason else "") + told)

    def _refuse(self, store: TicketStore, ws: WishStore, inbound: Inbound, sender: str,
                key: str, why: str, quoted: str) -> Outcome:
        Register(self.tickets).mailer.answer_qm(
            store, sender, wish=None, key=key, headline="Your mail was NOT applied",
            text=f"{why}\n\nNothing was changed. What you wrote:\n{quoted}",
            in_reply_to=inbound.message_id)
        ws.add_mail(message_id=inbound.message_id, sender=sender, raw=inbound.raw,
                    at=self.tickets.clock.now(), result=f"refused: {why}")
        log.warning("wish.mail.refused", sender=sender, reason=why)
        return Outcome(Stop.HOLD, f"wish command not applied: {why}")
