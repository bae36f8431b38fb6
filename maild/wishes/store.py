"""Reads and writes of the register's tables, on the session of the caller's transaction.

Counts are aggregated from the requests in the database (one grouped query for a list);
what this transaction added is flushed first by the ORM, so a wish recorded earlier in the
same batch is found by the next message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from maild.wishes.match import Candidate
from maild.wishes.models import Wish, WishHistory, WishMail, WishNotice, WishRequest
from maild.wishes.rules import Asked


@dataclass(frozen=True)
class Row:
    """A wish with its counts, as lists show it."""

    wish: Wish
    requests: int
    customers: int
    first: datetime | None
    last: datetime | None


class WishStore:
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- wishes ------------------------------------------------------------------------
    def by_key(self, key: str) -> Wish | None:
        """The wish under `key`, or the one it was merged into."""
        wish = self.session.scalar(select(Wish).where(Wish.key == key.strip().upper()))
        seen = set()
        while wish is not None and wish.merged_into_id is not None and wish.id not in seen:
            seen.add(wish.id)
            wish = self.session.get(Wish, wish.merged_into_id)
        return wish

    def candidates(self) -> list[Candidate]:
        """Every wish not merged away, with its distinct customers (for ties)."""
        customers = (select(WishRequest.wish_id,
                            func.count(func.distinct(func.lower(WishRequest.customer)))
                            .label("n")).group_by(WishRequest.wish_id).subquery())
        rows = self.session.execute(
            select(Wish.key, Wish.title, customers.c.n).outerjoin(
                customers, customers.c.wish_id == Wish.id).where(
                Wish.merged_into_id.is_(None)).order_by(Wish.id))
        return [Candidate(key, title, n or 0) for key, title, n in rows]

    def add_wish(self, *, title: str, department: str | None, by: str, at: datetime,
                 description: str = "") -> Wish:
        number = (self.session.scalar(select(func.max(Wish.number))) or 0) + 1
        wish = Wish(number=number, key=f"W-{number}", title=title[:300],
                    description=description, department=department, status="new",
                    reason=None, created_at=at, created_by=by, updated_at=at)
        self.session.add(wish)
        self.session.flush()
        self.add_history(wish, at=at, by=by, note="created")
        return wish

    def add_history(self, wish: Wish, *, at: datetime, by: str, note: str | None = None
                    ) -> None:
        self.session.add(WishHistory(wish_id=wish.id, at=at, by=by, status=wish.status,
                                     reason=wish.reason, note=note))

    def rows(self, *, status: str | None = None, department: str | None = None,
             only: int | None = None) -> list[Row]:
        agg = (select(WishRequest.wish_id, func.count().label("requests"),
                      func.count(func.distinct(func.lower(WishRequest.customer)))
                      .label("customers"),
                      func.min(WishRequest.at).label("first"),
                      func.max(WishRequest.at).label("last"))
               .group_by(WishRequest.wish_id).subquery())
        query = select(Wish, agg.c.requests, agg.c.customers, agg.c.first, agg.c.last
                       ).outerjoin(agg, agg.c.wish_id == Wish.id).where(
                           Wish.merged_into_id.is_(None))
        if only is not None:
            query = query.where(Wish.id == only)
        if status:
            query = query.where(Wish.status == status)
        if department:
            query = query.where(Wish.department == department)
        return [Row(w, r or 0, c or 0, f, last)
                for w, r, c, f, last in self.session.execute(query.order_by(Wish.id))]

    # -- requests and history ------------------------------------------------------------
    def add_request(self, request: WishRequest) -> None:
        self.session.add(request)
        self.session.flush()

    def requests(self, wish: Wish) -> list[WishRequest]:
        return list(self.session.scalars(select(WishRequest).where(
            WishRequest.wish_id == wish.id).order_by(WishRequest.at, WishRequest.id)))

    def asked(self, wish: Wish) -> list[Asked]:
        return [Asked(r.customer, r.at, r.ticket_ref) for r in self.requests(wish)]

    def request_on(self, wish: Wish, ticket_id: int) -> WishRequest | None:
        return self.session.scalar(select(WishRequest).where(
            WishRequest.wish_id == wish.id, WishRequest.ticket_id == ticket_id).limit(1))

    def last_joined_by_title(self, ticket_id: int) -> WishRequest | None:
        """The request of this ticket that was last joined to a wish by a similar title
        (what `#wish new TITLE` takes back)."""
        return self.session.scalar(select(WishRequest).where(
            WishRequest.ticket_id == ticket_id, WishRequest.joined_by == "title")
            .order_by(WishRequest.id.desc()).limit(1))

    def merged_ids(self, wish: Wish) -> list[int]:
        """The wish and every wish merged into it, directly or not."""
        ids, todo = [wish.id], [wish.id]
        while todo:
            found = list(self.session.scalars(select(Wish.id).where(
                Wish.merged_into_id.in_(todo))))
            todo = [i for i in found if i not in ids]
            ids.extend(todo)
        return ids

    def history(self, ids: Sequence[int]) -> list[WishHistory]:
        return list(self.session.scalars(select(WishHistory).where(
            WishHistory.wish_id.in_(ids)).order_by(WishHistory.at, WishHistory.id)))

    def rejected_at(self, wish: Wish) -> datetime | None:
        return self.session.scalar(select(func.max(WishHistory.at)).where(
            WishHistory.wish_id == wish.id, WishHistory.status == "rejected",
            WishHistory.note.is_(None)))

    def move_requests(self, source: Wish, target: Wish) -> int:
        moved = 0
        for request in self.requests(source):
            request.wish_id = target.id
            moved += 1
        return moved

    def changes_between(self, start: datetime, end: datetime) -> list[WishHistory]:
        return list(self.session.scalars(select(WishHistory).where(
            WishHistory.at >= start, WishHistory.at < end).order_by(WishHistory.at)))

    def requests_between(self, start: datetime, end: datetime) -> list[WishRequest]:
        return list(self.session.scalars(select(WishRequest).where(
            WishRequest.at >= start, WishRequest.at < end)))

    def keys(self, ids: Sequence[int]) -> dict[int, Wish]:
        return {w.id: w for w in self.session.scalars(select(Wish).where(Wish.id.in_(ids)))}

    # -- telling customers, and quality management's mail --------------------------------
    def told(self, wish: Wish, status: str) -> set[str]:
        return set(self.session.scalars(select(WishNotice.customer).where(
            WishNotice.wish_id == wish.id, WishNotice.status == status)))

    def add_notice(self, wish: Wish, customer: str, status: str, at: datetime,
                   result: str) -> None:
        self.session.add(WishNotice(wish_id=wish.id, customer=customer, status=status,
                                    at=at, result=result))

    def mail_seen(self, message_id: str | None) -> bool:
        return message_id is not None and self.session.scalar(select(WishMail.id).where(
            WishMail.message_id == message_id)) is not None

    def add_mail(self, *, message_id: str | None, sender: str, raw: bytes, at: datetime,
                 result: str) -> None:
        self.session.add(WishMail(message_id=message_id, from_addr=sender, raw=raw,
                                  received_at=at, result=result[:2000]))
