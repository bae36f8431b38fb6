"""Prometheus metrics and the health check, on a registry of our own (no globals).

The counters are fed where things happen (the mailbox workers, the outbox sender, the SLA
pass); the outbox depth and age are read from the database at scrape time, so they are
right even with several daemons on one database.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from maild.clock import Clock
from maild.store.models import Outbox


class _OutboxCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def collect(self) -> Any:
        try:
            with self._sessions() as session:
                depth, oldest = session.execute(
                    select(func.count(Outbox.id), func.min(Outbox.created_at))
                    .where(Outbox.status == "pending")).one()
        except SQLAlchemyError:
            return  # the database is away (maild_database_up says so): no figure, not 0
        yield GaugeMetricFamily("maild_outbox_depth", "Messages waiting in the outbox",
                                value=depth or 0)
        age = 0.0
        if oldest is not None:
            age = max(0.0, (self._clock.now() - oldest).total_seconds())
        yield GaugeMetricFamily("maild_outbox_oldest_age_seconds",
                                "Age of the oldest message waiting in the outbox", value=age)


@dataclass
class Metrics:
    """Everything an operator scrapes."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    last_poll: dict[str, float] = field(default_factory=dict)  # mailbox → monotonic time
    last_send: float | None = None
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        r = self.registry
        self.fetched = Counter("maild_messages_fetched", "Messages fetched from IMAP",
                               ["mailbox"], registry=r)
        self.processed = Counter("maild_messages_processed",
                                 "Messages stored in a ticket or recognised as duplicates",
                                 ["mailbox"], registry=r)
        self.quarantined = Counter("maild_messages_quarantined",
                                   "Messages held in quarantine", ["mailbox"], registry=r)
        self.tickets = Counter("maild_tickets_created", "Tickets opened",
                               ["level", "department"], registry=r)
        self.sent = Counter("maild_replies_sent", "Outbound messages sent", ["kind"],
                            registry=r)
        self.failed = Counter("maild_replies_failed", "Outbound messages failed for good",
                              ["kind"], registry=r)
        self.deferred = Counter("maild_replies_deferred", "Outbound messages to retry",
                                registry=r)
        self.imap_up = Gauge("maild_imap_connected", "1 while the IMAP connection is up",
                             ["mailbox"], registry=r)
        self.lease_held = Gauge("maild_mailbox_lease_held",
                                "1 while this daemon holds the mailbox's lease (PostgreSQL; "
                                "0 on every mailbox while the database is away)",
                                ["mailbox"], registry=r)
        self.database_up = Gauge("maild_database_up",
                                 "1 while the last heartbeat reached the database (PostgreSQL "
                                 "with leases; SQLite: always 1)", registry=r)
        self.database_up.set(1)
        self.sla = Counter("maild_sla_alerts", "SLA warnings and breaches raised",
                           ["kind", "target"], registry=r)
        self.latency = Histogram(
            "maild_processing_seconds", "From fetch to commit, per message",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)

    def watch_outbox(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.registry.register(_OutboxCollector(sessions, clock))

    def polled(self, mailbox: str) -> None:
        self.last_poll[mailbox] = time.monotonic()

    def health(self, *, mailboxes: list[str], max_poll_age: float, max_send_age: float,
               outbox_waiting: Callable[[], bool], database: Database | None = None
               ) -> tuple[bool, dict[str, Any]]:
        """`mailboxes`: those this daemon works (with leases: those it holds; a standby
        daemon holding none is healthy). `database`: the heartbeat's view, with leases."""
        now = time.monotonic()
        problems = []
        data: dict[str, Any] = {}
        if database is not None:
            data["database"] = "down" if database.down_since is not None else "up"
            data["mailboxes_held"] = sorted(mailboxes)
            if database.down_since is not None:
                problems.append(f"database: unreachable for {now - database.down_since:.0f} s "
                                f"({database.error}); no mailbox is worked until it is back")
        for name in mailboxes:
            seen = self.last_poll.get(name, self.started)
            if now - seen > max_poll_age:
                problems.append(f"mailbox {name}: no successful poll for {now - seen:.0f} s")
        # Without the database the outbox cannot be read: the problem above says why.
        if (database is None or database.down_since is None) and outbox_waiting():
            since = now - (self.last_send or self.started)
            if since > max_send_age:
                problems.append(f"outbox: nothing sent for {since:.0f} s with mail waiting")
        return not problems, {"status": "ok" if not problems else "failing",
                              "problems": problems, **data}


class Database(Protocol):
    """What the health check reads of the heartbeat (maild.cluster.leases.Leases)."""

    down_since: float | None
    error: str


def serve(metrics: Metrics, host: str, port: int,
          health: Callable[[], tuple[bool, dict[str, Any]]]) -> ThreadingHTTPServer:
    """/metrics (Prometheus text format) and /health (JSON; 503 when failing)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                body, status, kind = generate_latest(metrics.registry), 200, (
                    "text/plain; version=0.0.4; charset=utf-8")
            elif self.path == "/health":
                ok, data = health()
                body, status, kind = json.dumps(data).encode(), 200 if ok else 503, (
                    "application/json")
            else:
                body, status, kind = b"not found\n", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes are not news

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
