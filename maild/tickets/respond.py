"""Which automatic mail a new ticket causes (the pipeline's respond stage). Pure: the ticket
service queues it.

An acknowledgement goes to a person who opened a new ticket, never to a machine, and never
twice for one ticket: replies that thread into a ticket get none.
"""

from __future__ import annotations

from maild.domain import Address, Classification, Inbound, OutboundDraft


def acknowledgement(
    inbound: Inbound, classification: Classification, *, new_ticket: bool
) -> OutboundDraft | None:
    if not new_ticket or not classification.acknowledge or inbound.automatic:
        return None
    if inbound.sender is None:
        return None
    references = (*inbound.references, inbound.message_id) if inbound.message_id else ()
    return OutboundDraft(
        # A canned answer (the 1st level's standard reply) replaces the acknowledgement.
        template=classification.answer or classification.template,
        language=inbound.language,
        to=inbound.sender,
        in_reply_to=inbound.message_id,
        references=tuple(r for r in references if r),
        automatic=True,
    )


def intake_acknowledgement(language: str, classification: Classification,
                           to: Address) -> OutboundDraft | None:
    """A ticket opened on a caller's behalf: the caller gets the number by email."""
    if not classification.acknowledge:
        return None
    return OutboundDraft(template=classification.answer or classification.template,
                         language=language, to=to, in_reply_to=None, references=(),
                         automatic=True)
