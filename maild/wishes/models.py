"""The register's tables (migration 0007): wishes, the requests behind them, every status
change, the customers told of an outcome, and the quality managers' mail.

A request keeps its ticket and customer: counts are worked out from the requests, never
stored beside them, so a merge (requests move) or a second request of the same customer
cannot leave a count wrong.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from maild.store.models import Base

STATUSES = ("new", "under_review", "planned", "in_progress", "done", "rejected")


class Wish(Base):
    __tablename__ = "wishes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)  # the 42 of W-42
    key: Mapped[str] = mapped_column(String(16), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    department: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="new", index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(320))
    updated_at: Mapped[datetime]
    # A wish merged into another keeps its row (its key still leads there) and history.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("wishes.id"))


class WishRequest(Base):
    """One customer asking, on one ticket, recorded by an agent."""

    __tablename__ = "wish_requests"
    __table_args__ = (Index("ix_wish_requests_wish", "wish_id", "at"),
                      Index("ix_wish_requests_ticket", "ticket_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    wish_id: Mapped[int] = mapped_column(ForeignKey("wishes.id"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    ticket_ref: Mapped[str] = mapped_column(String(32))
    customer: Mapped[str] = mapped_column(String(320))
    at: Mapped[datetime]
    by: Mapped[str] = mapped_column(String(320))  # the agent
    joined_by: Mapped[str] = mapped_column(String(10))  # key | title | new
    score: Mapped[float | None] = mapped_column(Float)  # of a title match
    title: Mapped[str] = mapped_column(String(300))  # as the agent wrote it
    not_possible: Mapped[bool] = mapped_column(Boolean, default=False)  # `#no`


class WishHistory(Base):
    """Every status change (and creation, merge), who and when."""

    __tablename__ = "wish_history"
    __table_args__ = (Index("ix_wish_history_wish", "wish_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    wish_id: Mapped[int] = mapped_column(ForeignKey("wishes.id"))
    at: Mapped[datetime] = mapped_column(index=True)
    by: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)  # created, merged W-3, re-review, ...


class WishNotice(Base):
    """A customer told of a wish's outcome: the unique key makes it once per customer."""

    __tablename__ = "wish_notices"
    __table_args__ = (UniqueConstraint("wish_id", "customer", "status",
                                       name="uq_wish_notices"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    wish_id: Mapped[int] = mapped_column(ForeignKey("wishes.id"))
    customer: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime]
    result: Mapped[str] = mapped_column(Text)  # queued, or why not (suppressed, limits)


class WishMail(Base):
    """A mail to a signed wish address (quality management's commands), raw bytes kept."""

    __tablename__ = "wish_mail"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str | None] = mapped_column(String(998), unique=True)
    from_addr: Mapped[str] = mapped_column(String(320))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime]
    result: Mapped[str] = mapped_column(Text)
