"""Mailbox leases on PostgreSQL: one daemon a mailbox, taken over when its holder stops
renewing. Times are the database's (`clock_timestamp()`), so the daemons' clocks may
differ without harm.

A daemon's heartbeat (`Leases.beat`, every third of the lease) records it as alive, renews
the leases it holds and takes free or expired ones up to its fair share (the mailboxes
divided among the daemons alive), so mailboxes spread over the daemons and a daemon that
comes back does not take a mailbox from one that holds it. Each batch's commit checks its
lease in its own transaction (`fence`): a daemon that lost its lease while it hung writes
nothing, and its batch is fetched again by the new holder.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

log = structlog.get_logger("maild.cluster")

_REGISTER = text(
    "INSERT INTO daemons (id, host, pid, started_at, heartbeat_at) "
    "VALUES (:me, :host, :pid, :started, clock_timestamp()) "
    "ON CONFLICT (id) DO UPDATE SET heartbeat_at = clock_timestamp()")
_RENEW = text(
    "UPDATE mailbox_leases SET heartbeat_at = clock_timestamp(), "
    "expires_at = clock_timestamp() + make_interval(secs => :ttl) "
    "WHERE daemon_id = :me AND expires_at > clock_timestamp() RETURNING mailbox")
_ALIVE = text("SELECT count(*) FROM daemons "
              "WHERE heartbeat_at > clock_timestamp() - make_interval(secs => :ttl)")
_TAKE = text(
    "INSERT INTO mailbox_leases (mailbox, daemon_id, since, heartbeat_at, expires_at) "
    "VALUES (:mailbox, :me, clock_timestamp(), clock_timestamp(), "
    "        clock_timestamp() + make_interval(secs => :ttl)) "
    "ON CONFLICT (mailbox) DO UPDATE SET daemon_id = :me, since = clock_timestamp(), "
    "  heartbeat_at = clock_timestamp(), "
    "  expires_at = clock_timestamp() + make_interval(secs => :ttl) "
    "WHERE mailbox_leases.expires_at <= clock_timestamp() RETURNING mailbox")
_FENCE = text(
    "SELECT 1 FROM mailbox_leases WHERE mailbox = :mailbox AND daemon_id = :me "
    "AND expires_at > clock_timestamp() FOR SHARE")
_RELEASE = text("DELETE FROM mailbox_leases WHERE daemon_id = :me")
_FORGET = text("DELETE FROM daemons WHERE id = :me")


class LeaseLost(Exception):
    """This daemon no longer holds the mailbox: its batch is rolled back, not committed."""


@dataclass(frozen=True)
class Identity:
    host: str
    pid: int
    started_at: datetime

    @property
    def id(self) -> str:
        return f"{self.host}:{self.pid}:{self.started_at.timestamp():.3f}"[:120]


@dataclass
class Leases:
    """The leases of one daemon over its configured mailboxes."""

    sessions: sessionmaker[Session]
    me: Identity
    mailboxes: Sequence[str]
    ttl: float  # seconds a lease lasts without renewal: the takeover bound
    _held: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _first_beat: float | None = None  # time.monotonic() of the first
    down_since: float | None = None  # time.monotonic() of the first failed beat in a row
    error: str = ""  # why the last beat failed

    def beat(self) -> frozenset[str]:
        """Register, renew, take a fair share; the mailboxes held now. A database error
        leaves this daemon holding nothing until the next beat succeeds.

        For its first heartbeat period a daemon only registers: daemons started together
        then see each other before any takes a mailbox, and share them. A daemon
        started later finds them held and waits as a standby, taking nothing back from a
        live holder."""
        params = {"me": self.me.id, "ttl": self.ttl}
        if self._first_beat is None:
            self._first_beat = time.monotonic()
        settling = time.monotonic() - self._first_beat < self.ttl / 3
        try:
            with self.sessions() as session, session.begin():
                session.execute(_REGISTER, {**params, "host": self.me.host,
                                            "pid": self.me.pid, "started": self.me.started_at})
                held = set(session.execute(_RENEW, params).scalars())
                alive = max(int(session.execute(_ALIVE, params).scalar_one()), 1)
                share = math.ceil(len(self.mailboxes) / alive)
                for mailbox in self._preference():
                    if len(held) >= share or settling:
                        break
                    if mailbox not in held and session.execute(
                            _TAKE, {**params, "mailbox": mailbox}).first() is not None:
                        held.add(mailbox)
                        log.info("lease.taken", mailbox=mailbox, daemon=self.me.id)
        except SQLAlchemyError as exc:
            self.error = str(exc).splitlines()[0]
            log.warning("lease.heartbeat_failed", error=self.error)
            held = set()
            if self.down_since is None:
                self.down_since = time.monotonic()
        else:
            self.down_since, self.error = None, ""
        with self._lock:
            for lost in self._held - held:
                log.warning("lease.lost", mailbox=lost, daemon=self.me.id)
            self._held = held
        return frozenset(held)

    def _preference(self) -> list[str]:
        """Each daemon tries the mailboxes in an order of its own, so that daemons starting
        together spread rather than race for the same one first."""
        return sorted(self.mailboxes, key=lambda m: hashlib.sha256(
            f"{self.me.id}/{m}".encode()).digest())

    def holds(self, mailbox: str) -> bool:
        with self._lock:
            return mailbox in self._held

    def fence(self, session: Session, mailbox: str) -> None:
        """Inside a batch's transaction, before its commit: raise `LeaseLost` unless this
        daemon still holds the mailbox (the row is share-locked until the commit, so no
        other daemon takes it over in between)."""
        if session.execute(_FENCE, {"mailbox": mailbox, "me": self.me.id}).first() is None:
            with self._lock:
                self._held.discard(mailbox)
            raise LeaseLost(mailbox)

    def release(self) -> None:
        """On a clean stop: the mailboxes are free at once for the other daemons."""
        try:
            with self.sessions() as session, session.begin():
                session.execute(_RELEASE, {"me": self.me.id})
                session.execute(_FORGET, {"me": self.me.id})
        except SQLAlchemyError as exc:
            log.warning("lease.release_failed", error=str(exc).splitlines()[0])
        with self._lock:
            self._held = set()
