"""Assembly: one place that turns validated Settings into the objects that do the work.

Everything is built once and passed down explicitly; nothing reads settings at call sites.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from maild.auth.providers import TokenProviders
from maild.businesstime.calendar import BusinessCalendar
from maild.clock import Clock, SystemClock
from maild.csat.desk import Satisfaction
from maild.csat.survey import SurveyJob
from maild.digest.job import DigestJob
from maild.digest.queue import Queues
from maild.domain import Address
from maild.jobs.runner import Job, Ran, run_due
from maild.jobs.runs import Runner
from maild.knowledge.proposals import restore_answers
from maild.lifecycle.days import weekdays
from maild.lifecycle.jobs import LifecycleJob
from maild.metrics import Metrics
from maild.outbound.ids import MessageIdFactory
from maild.outbound.queue import Outgoing
from maild.outbound.render import Templates
from maild.outbound.sender import OutboxSender
from maild.pipeline.classify import Classifier
from maild.pipeline.guard import Guard
from maild.pipeline.prepare import default_workers
from maild.pipeline.runner import Pipeline
from maild.reports.job import ReportJob
from maild.rules.engine import RuleSet
from maild.rules.loader import check_templates, load_rules
from maild.rules.mailboxes import mailbox_defaults
from maild.settings import Settings
from maild.sla.engine import Raised, SlaEngine, load_sla
from maild.sla.retime import retime_if_changed
from maild.store import db, repo
from maild.store.automail import AutomailCounter
from maild.store.batchstore import BatchStore
from maild.store.ticketstore import DirectStore
from maild.tickets.people import conversation_settings
from maild.tickets.service import TicketService
from maild.training.reminders import training_jobs


@dataclass
class App:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    templates: Templates
    rules: RuleSet
    pipeline: Pipeline
    tickets: TicketService
    sender: OutboxSender
    sla: SlaEngine
    metrics: Metrics
    tokens: TokenProviders
    runner: Runner = field(default_factory=Runner.this_process)
    jobs: list[Job] = field(default_factory=list)  # the scheduled jobs beside the SLA pass

    def dispose(self) -> None:
        self.pipeline.close()
        self.engine.dispose()

    def reload(self) -> None:
        """Reload rules and templates from their files; on any error keep the old ones.

        Raises ConfigError (with file, key and line) when the new set is refused.
        """
        templates = Templates(self.settings.templates)
        rules = load_rules(self.settings.rules)
        check_templates(rules, templates.names())
        sla = load_sla(self.settings.sla)
        old = self.tickets.outgoing
        self.tickets.outgoing = Outgoing(templates=templates, ids=old.ids, support=old.support)
        self.pipeline.reload(rules)
        self.sla.config = sla
        self.templates, self.rules = templates, rules

    def sla_pass(self, batch: int = 500) -> list[Raised]:
        """One SLA pass over the database (`batch` due tickets a transaction); warnings and
        breaches raised now."""
        retime_if_changed(self.sla, self.sessions)  # at start and after a reload: new times
        counter = AutomailCounter(self.settings.safety)
        raised = self.sla.run_pass(self.sessions, self.tickets.sla_act,
                                   lambda session: BatchStore(session, counter), batch=batch)
        for r in raised:
            self.metrics.sla.labels(r.kind, r.target).inc()
        return raised

    def run_jobs(self) -> list[Ran]:
        """Every scheduled job that is due, once per due time across daemons."""
        counter = AutomailCounter(self.settings.safety)
        return run_due(self.sessions, self.jobs, self.clock.now(),
                       lambda session: BatchStore(session, counter), self.runner)

    def direct_store(self, session: Session) -> DirectStore:
        """The ticket store for a command's transaction (one change, not a batch)."""
        return DirectStore(session, AutomailCounter(self.settings.safety))


def guard_for(settings: Settings) -> Guard:
    """The guard of a configuration: our own addresses, and whose Authentication-Results
    are believed. The daemon and `maild route` use this one, so a rule on
    `verified_sender` routes the same in the dry run as in the daemon."""
    own = frozenset({settings.support.address,
                     *(m.imap.username or "" for m in settings.mailboxes)} - {""})
    return Guard(own, tuple(settings.safety.trusted_authserv_ids))


def build(settings: Settings, *, clock: Clock | None = None, migrate: bool = True,
          classifier: Classifier | None = None) -> App:
    """Connect to the database (migrating it), load templates, wire the pipeline."""
    clock = clock or SystemClock()
    engine = db.make_engine(settings.database.url)
    if migrate:
        db.upgrade(engine)
    sessions = db.make_session_factory(engine)
    if settings.support.secret is not None:
        secret = settings.support.secret.get_secret_value()
    else:
        with sessions() as session, session.begin():
            secret = repo.get_or_create_secret(session, "message_id_secret")
    with sessions() as session:
        restore_answers(session, settings.templates)  # canned answers accepted by mail
    templates = Templates(settings.templates)
    rules = load_rules(settings.rules)
    check_templates(rules, templates.names())
    # The organisation and customer attributes come from the rules the pipeline holds now
    # (a reload swaps them).
    sla = SlaEngine(load_sla(settings.sla), clock, customer=lambda address: dict(
        pipeline.rules.organisation.customer(address)))
    support = Address(name=settings.support.name, address=settings.support.address)
    tickets = TicketService(
        outgoing=Outgoing(templates=templates,
                          ids=MessageIdFactory(secret.encode(), settings.support.domain),
                          support=support),
        clock=clock, ref_prefix=settings.support.ref_prefix,
        organisation=lambda: pipeline.rules.organisation, sla=sla, safety=settings.safety,
        conversation=conversation_settings(settings), wishes=settings.wishes,
        staff_language=settings.staff_language_or_default)
    org_tz = ZoneInfo(settings.timezone)

    def calendar() -> BusinessCalendar:
        """The organisation's business days: the SLA file's first calendar (a reload may
        change it), else Monday to Friday."""
        return sla.config.calendars[0] if sla.config.calendars else weekdays(org_tz)

    queues = Queues(tickets, calendar)
    satisfaction = Satisfaction(tickets, settings.csat,
                                organisation=lambda: pipeline.rules.organisation)
    pipeline = Pipeline(
        satisfaction=satisfaction,
        session_factory=sessions,
        rules=rules,
        tickets=tickets,
        safety=settings.safety,
        classifier=classifier,
        guard=guard_for(settings),
        clock=clock,
        default_language=settings.default_language, languages=templates.languages(),
        parse_workers=(default_workers() if settings.daemon.parse_workers is None
                       else settings.daemon.parse_workers),
        reopen_window=timedelta(days=settings.tickets.reopen_days),
        mailbox_defaults=mailbox_defaults(settings, rules),
        knowledge_owners=settings.knowledge.owners,
        queues=queues,
    )
    metrics = Metrics()
    metrics.watch_outbox(sessions, clock)
    tokens = TokenProviders(clock)
    sender = OutboxSender(sessions=sessions, smtp=settings.smtp, policy=settings.outbox,
                          clock=clock, metrics=metrics, tokens=tokens)
    app = App(settings=settings, engine=engine, sessions=sessions, clock=clock,
              templates=templates, rules=rules, pipeline=pipeline, tickets=tickets,
              sender=sender, sla=sla, metrics=metrics, tokens=tokens)
    app.jobs.append(SurveyJob(satisfaction, app.runner))
    app.jobs.extend(training_jobs(tickets, settings.training))
    app.jobs.append(LifecycleJob(tickets, settings.tickets, calendar, app.runner))
    app.jobs.append(DigestJob(queues, settings.digest, app.runner))
    app.jobs.extend(ReportJob(tickets, plan, org_tz, lambda: sla.config)
                    for plan in settings.reports)
    return app
