"""`maild demo`: the whole desk on this machine, in about five seconds.

Two servers start on loopback in a background thread: pymap's in-memory ("dict") IMAP
backend holds the support mailbox, and aiosmtpd plays the outgoing mail server, keeping what
it accepts. Sample customer mail (German and English, `maild/demo_mail/`) is delivered to
INBOX, then maild processes it twice over:

1. as `maild run --once` would: every new mail becomes a ticket and gets an acknowledgement;
2. as the real daemon (`maild run`, IMAP IDLE): while it runs, the first customer answers her
   acknowledgement and a new mail arrives from a phone. The answer joins her ticket without
   a second acknowledgement; the new mail is acknowledged within a second.

Then the tickets and the replies the SMTP server received are printed. The configuration and
the SQLite database stay in a temporary folder, so `maild -c DIR/maild.yaml tickets list`
works afterwards. Nothing outside the machine is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import logging
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
from argparse import Namespace
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TextIO

from aiosmtpd.smtp import SMTP
from imapclient import IMAPClient
from proxyprotocol.reader import ProxyProtocolReader
from pymap.backend.dict import Config as DictConfig
from pymap.backend.dict import DictBackend, Login
from pymap.concurrent import Subsystem
from pymap.imap import IMAPServer
from pymap.user import Passwords, UserMetadata
from sqlalchemy import select

from maild import daemon, logs
from maild.app import App, build
from maild.fetch.imap import CONNECTION_ERRORS
from maild.readonly import ticket_detail
from maild.settings import Settings, load_settings
from maild.store import repo
from maild.store.models import Message, Ticket

HOST = "127.0.0.1"
SUPPORT_ADDRESS = "support@example.test"
SUPPORT_NAME = "Example Support"
# Delivered before the first pass; the thread starts with the first of them.
FIRST_MAILS = ("01-rechnung.eml", "02-login.eml", "03-kuendigung.eml", "05-stoerung.eml",
               "06-upgrade.eml")
THREAD_START = "01-rechnung.eml"
# Delivered while the daemon runs, together with the customer's answer.
WHILE_RUNNING = "04-phone.eml"
TIMEOUT = 10.0  # for each wait; the whole demo normally takes a few seconds
LANGUAGES = {"de": "German", "en": "English"}


class DemoFailed(Exception):
    """The demo could not show what it promises; the message is the one-line reason."""


# -- the SMTP side -----------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One message the demo SMTP server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    at: float  # time.monotonic() on arrival

    def header(self, name: str) -> str:
        """A header's value, unfolded."""
        return " ".join(str(self.message.get(name, "")).split())


class _Recorder:
    """aiosmtpd handler: accept every message and keep it."""

    def __init__(self, keep: Callable[[Received], None]) -> None:
        self._keep = keep

    async def handle_DATA(
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        content = envelope.original_content or envelope.content
        data = content.encode() if isinstance(content, str) else bytes(content)
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self._keep(Received(mail_from=str(envelope.mail_from),
                            rcpt_tos=tuple(envelope.rcpt_tos), message=parsed,
                            at=time.monotonic()))
        return "250 2.0.0 OK: kept by the maild demo"


# -- the IMAP side -----------------------------------------------------------------------


class _DemoImapConfig(DictConfig):
    @property
    def greeting(self) -> bytes:
        return b"Server ready maild-demo"  # pymap would ask DNS for the host name


async def _dict_backend(user: str, password: str) -> tuple[DictBackend, _DemoImapConfig]:
    """pymap's in-memory backend with one user and an empty INBOX (no demo data)."""
    args = Namespace(host=HOST, port=0, debug=False, cert=None, key=None, tls=False,
                     passlib_cfg=None, proxy_protocol=None, inherited_sockets=None,
                     demo_data=False, demo_user=user, demo_password=password)
    config = _DemoImapConfig.from_args(
        args, invalid_user_sleep=0.0, reject_dnsbl=False, cpu_subsystem=Subsystem.for_asyncio())
    login = Login(config)
    hashed = await Passwords(config).hash_password(password)
    await login.demo_user_identity.set(UserMetadata(config, user, password=hashed))
    return DictBackend(login, config), config


class _IdleWatch(logging.Handler):
    """Counts the IDLE commands pymap receives (from its debug log of client lines).

    The demo delivers a message only while the daemon idles, so that the daemon is seen
    to be woken by the server rather than finding the message on a pass of its own.
    """

    _IDLE = re.compile(r"^[!-~]+ IDLE\s*$", re.IGNORECASE)

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.condition = threading.Condition()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if not (isinstance(args, tuple) and len(args) == 2 and "-->|" in str(record.msg)):
            return
        line = args[1]
        text = line.decode("ascii", "replace") if isinstance(line, bytes) else str(line)
        if self._IDLE.match(text):
            with self.condition:
                self.count += 1
                self.condition.notify_all()


# -- both servers on one event loop in a background thread -----------------------------


class LoopbackServers:
    """pymap (IMAP, in memory) and aiosmtpd (SMTP, recording) on free loopback ports."""

    def __init__(self, *, user: str, password: str) -> None:
        self.user = user
        self.password = password
        self.imap_port = 0
        self.smtp_port = 0
        self.idle = _IdleWatch()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="maild-demo-servers",
                                        daemon=True)
        self._condition = threading.Condition()
        self._received: list[Received] = []
        self._imap_log = logging.getLogger("pymap.imap")
        self._imap_log_state = (self._imap_log.level, self._imap_log.propagate)

    def __enter__(self) -> Self:
        self._imap_log.addHandler(self.idle)
        self._imap_log.setLevel(logging.DEBUG)
        self._imap_log.propagate = False  # the protocol trace is for the watch only
        self._thread.start()
        if not self._ready.wait(TIMEOUT):
            self.__exit__(None, None, None)
            raise DemoFailed(f"the local servers did not start within {TIMEOUT:.0f} s")
        if self._error is not None:
            self.__exit__(None, None, None)
            raise DemoFailed(f"the local servers did not start: "
                             f"{type(self._error).__name__}: {self._error}")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                loop.call_soon_threadsafe(stop.set)
        if self._thread.is_alive():
            self._thread.join(TIMEOUT)
        self._imap_log.removeHandler(self.idle)
        self._imap_log.setLevel(self._imap_log_state[0])
        self._imap_log.propagate = self._imap_log_state[1]

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception as exc:  # noqa: BLE001 - handed to the main thread, which reports it
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        backend, config = await _dict_backend(self.user, self.password)
        config.apply_context()
        imap_handler = ProxyProtocolReader(config.proxy_protocol).get_callback(
            IMAPServer(backend.login, config))
        imap = await asyncio.start_server(imap_handler, HOST, 0)
        smtp = await loop.create_server(
            lambda: SMTP(_Recorder(self._keep), hostname="localhost",
                         ident="maild demo SMTP", loop=loop), HOST, 0)
        self.imap_port = imap.sockets[0].getsockname()[1]
        self.smtp_port = smtp.sockets[0].getsockname()[1]
        async with imap, smtp:
            self._ready.set()
            await self._stop.wait()

    def _keep(self, received: Received) -> None:
        with self._condition:
            self._received.append(received)
            self._condition.notify_all()

    @property
    def received(self) -> list[Received]:
        with self._condition:
            return list(self._received)

    def wait_received(self, count: int) -> list[Received]:
        with self._condition:
            self._condition.wait_for(lambda: len(self._received) >= count, TIMEOUT)
            return list(self._received)

    def deliver(self, messages: Sequence[bytes]) -> tuple[str, ...]:
        """Put `messages` into INBOX (IMAP APPEND, as the mail server's delivery would).

        Returns the server's capabilities after login.
        """
        try:
            client = IMAPClient(HOST, port=self.imap_port, ssl=False, timeout=TIMEOUT)
            try:
                client.login(self.user, self.password)
                for raw in messages:
                    client.append("INBOX", raw)
                return tuple(c.decode() for c in client.capabilities())
            finally:
                with contextlib.suppress(*CONNECTION_ERRORS):
                    client.logout()
        except CONNECTION_ERRORS as exc:
            raise DemoFailed(f"delivering to the demo IMAP server failed: {exc}") from exc


# -- sample mail -------------------------------------------------------------------------


def sample(name: str) -> bytes:
    """A sample message as CRLF bytes, as a mail server would store it."""
    raw = files("maild").joinpath("demo_mail").joinpath(name).read_bytes()
    return re.sub(rb"\r?\n", b"\r\n", raw)


def restamp(raw: bytes, when: datetime) -> bytes:
    """`raw` with its Date header set to `when`, so the tickets read as today's."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    date = format_datetime(when).encode()
    head = re.sub(rb"(?mi)^Date:[^\r\n]*", b"Date: " + date, head, count=1)
    return head + sep + body


def body_lines(msg: EmailMessage) -> list[str]:
    body = msg.get_body(("plain",))
    return body.get_content().splitlines() if isinstance(body, EmailMessage) else []


def parsed(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def customer_answer(ack: Received, customer: str, when: datetime) -> bytes:
    """The customer's answer to her acknowledgement, as Thunderbird would send it."""
    ack_id = ack.header("Message-ID")
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Message-ID"] = make_msgid("answer", domain="example.com")
    msg["Date"] = format_datetime(when)
    msg["MIME-Version"] = "1.0"
    msg["User-Agent"] = "Mozilla Thunderbird"
    msg["Subject"] = f"AW: {ack.header('Subject')}"
    msg["Content-Language"] = "de-DE"
    msg["To"] = ack.header("From")
    msg["From"] = customer
    msg["In-Reply-To"] = ack_id
    msg["References"] = f"{ack.header('References')} {ack_id}".strip()
    quoted = "\n".join(f"> {line}".rstrip() for line in body_lines(ack.message))
    msg.set_content(
        "Hallo,\n\n"
        "danke für die schnelle Antwort. Die Bestätigung des Tarifwechsels auf „Business“\n"
        "habe ich gefunden: Sie kam am Tag des Telefonats per E-Mail, Vorgangsnummer\n"
        "TW-88213. Ich kann sie Ihnen gerne weiterleiten.\n\n"
        "Viele Grüße\nErika Mustermann\n\n"
        f"Am {when:%d.%m.%Y} um {when:%H:%M} schrieb {SUPPORT_NAME}:\n{quoted}\n"
    )
    return msg.as_bytes()


# -- the run ----------------------------------------------------------------------------


def write_config(work: Path, servers: LoopbackServers) -> Path:
    path = work / "maild.yaml"
    q = json.dumps  # a JSON string is a valid YAML scalar, whatever it contains
    path.write_text(
        "# Written by `maild demo`. The servers it names are gone; the database stays.\n"
        "database:\n  url: sqlite:///maild.db\n"
        f"support:\n  address: {SUPPORT_ADDRESS}\n  name: {q(SUPPORT_NAME)}\n"
        "mailboxes:\n"
        "  - name: support\n"
        "    imap:\n"
        f"      host: {HOST}\n      port: {servers.imap_port}\n      security: none\n"
        f"      username: {q(servers.user)}\n      password: {q(servers.password)}\n"
        "    folder: INBOX\n"
        "    poll_interval: 1\n"
        f"smtp:\n  host: {HOST}\n  port: {servers.smtp_port}\n  security: none\n"
        "log_level: warning\n",
        encoding="utf-8",
    )
    return path


@dataclass
class DaemonPass:
    """What the second pass found out."""

    answer_id: str = ""
    answer_ref: str | None = None
    phone_ref: str | None = None


@dataclass(frozen=True)
class TicketRow:
    ref: str
    status: str
    level: int
    language: str
    requester: str
    subject: str
    messages: int


@dataclass
class Demo:
    work: Path
    servers: LoopbackServers
    out: TextIO
    first: dict[str, EmailMessage] = field(default_factory=dict)
    width: int = 40

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def run(self) -> None:
        settings = load_settings(write_config(self.work, self.servers))
        now = datetime.now().astimezone()
        raws = [restamp(sample(n), now - timedelta(minutes=9 * (len(FIRST_MAILS) - i)))
                for i, n in enumerate(FIRST_MAILS)]
        capabilities = self.servers.deliver(raws)
        self.first = {n: parsed(r) for n, r in zip(FIRST_MAILS, raws, strict=True)}
        self.width = max(len(str(m["From"])) for m in self.first.values())
        self._intro(capabilities)
        app = build(settings)
        try:
            self._pass_once(app)
            found = self._pass_daemon(app)
            self._report(app, settings, found)
        finally:
            app.dispose()

    def _intro(self, capabilities: Sequence[str]) -> None:
        shown = [c for c in ("IDLE", "MOVE", "UIDPLUS") if c in capabilities]
        s = self.servers
        self.say("maild demo: a support desk on this machine; no mail leaves it.\n")
        self.say(f"  IMAP  pymap (in memory) on {HOST}:{s.imap_port}, mailbox {s.user} "
                 f"[{' '.join(shown)}]")
        self.say(f"  SMTP  aiosmtpd on {HOST}:{s.smtp_port}, keeps every message maild sends")
        self.say(f"  files {self.work}/ (maild.yaml, maild.db)\n")
        self.say(f"1. {len(self.first)} customer mails arrive in INBOX; "
                 "maild processes them (like `maild run --once`):")
        for msg in self.first.values():
            self._mail_line(msg)

    def _pass_once(self, app: App) -> None:
        summary = daemon.run_once(app)
        counters = summary.mailboxes["support"]
        outbox = summary.outbox
        self.say(f"   -> {counters.fetched} fetched, {counters.tickets_created} new tickets, "
                 f"{counters.held} quarantined; {outbox.sent} acknowledgements sent\n")
        if outbox.unreachable:
            raise DemoFailed(f"the SMTP server could not be reached: {outbox.error}")
        if counters.held:
            raise DemoFailed(f"{counters.held} sample message(s) were quarantined")
        if outbox.sent != len(self.first):
            raise DemoFailed(f"the SMTP server accepted {outbox.sent} of {len(self.first)} "
                             f"acknowledgements ({outbox.retried} deferred, "
                             f"{outbox.failed} failed)")
        self.servers.wait_received(len(self.first))

    def _pass_daemon(self, app: App) -> DaemonPass:
        acks = self.servers.received
        starter_id = str(self.first[THREAD_START]["Message-ID"])
        ack = next((r for r in acks if r.header("In-Reply-To") == starter_id), None)
        if ack is None:
            raise DemoFailed(f"no acknowledgement for {THREAD_START} reached the SMTP server")
        now = datetime.now().astimezone()
        answer = customer_answer(ack, str(self.first[THREAD_START]["From"]), now)
        phone = restamp(sample(WHILE_RUNNING), now)
        self.say("2. the daemon runs (like `maild run`) and waits with IMAP IDLE; meanwhile:")
        found = DaemonPass()
        asyncio.run(self._daemon(app, answer, phone, found))
        self.say("   -> the daemon stopped on SIGTERM\n")
        return found

    async def _daemon(self, app: App, answer: bytes, phone: bytes, found: DaemonPass) -> None:
        idle = self.servers.idle
        expect = len(self.servers.received) + 1
        task = asyncio.create_task(daemon.run_forever(app), name="daemon")
        try:
            await asyncio.sleep(0)  # the daemon sets up its signal handlers, then waits
            seen = idle.count
            await self._until(task, lambda: idle.count > seen,
                              "the daemon did not start waiting with IMAP IDLE")
            # One message at a time, each while the daemon idles.
            msg = parsed(answer)
            self._mail_line(msg, "her answer to the acknowledgement; In-Reply-To is its "
                                 "Message-ID")
            found.answer_id = str(msg["Message-ID"]).strip("<>")
            seen = idle.count
            await asyncio.to_thread(self.servers.deliver, [answer])

            def answer_filed() -> bool:
                found.answer_ref = _ticket_of(app, found.answer_id)
                return found.answer_ref is not None and idle.count > seen

            await self._until(task, answer_filed, "the daemon did not file the customer's "
                              f"answer within {TIMEOUT:.0f} s")
            self._note(f"-> filed in ticket {found.answer_ref}")
            msg = parsed(phone)
            self._mail_line(msg, "written on a phone")
            delivered = time.monotonic()
            await asyncio.to_thread(self.servers.deliver, [phone])
            await self._until(task, lambda: len(self.servers.received) >= expect,
                              f"no acknowledgement for the new mail within {TIMEOUT:.0f} s")
            arrived = self.servers.received[expect - 1]
            found.phone_ref = _ticket_of(app, str(msg["Message-ID"]).strip("<>"))
            self._note(f"-> new ticket {found.phone_ref}, acknowledged "
                       f"{arrived.at - delivered:.1f} s after it arrived")
        finally:
            if not task.done():
                signal.raise_signal(signal.SIGTERM)  # the daemon's own handler stops it
            try:
                await asyncio.wait_for(task, TIMEOUT)
            except TimeoutError:
                raise DemoFailed(f"the daemon did not stop within {TIMEOUT:.0f} s of SIGTERM"
                                 ) from None

    def _mail_line(self, msg: EmailMessage, note: str = "") -> None:
        self.say(f"     {msg['From']!s:<{self.width}}  {msg['Subject']}")
        if note:
            self._note(f"({note})")

    def _note(self, text: str) -> None:
        self.say(f"     {'':<{self.width}}  {text}")

    @staticmethod
    async def _until(task: asyncio.Task[None], check: Callable[[], bool], reason: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not await asyncio.to_thread(check):
            if task.done():
                task.result()  # raises what stopped it
                raise DemoFailed("the daemon stopped early")
            if time.monotonic() > deadline:
                raise DemoFailed(reason)
            await asyncio.sleep(0.05)

    def _report(self, app: App, settings: Settings, found: DaemonPass) -> None:
        with app.sessions() as session:
            tickets = [TicketRow(t.ref, t.status, t.level, t.language, t.requester, t.subject, n)
                       for t, n in reversed(repo.list_tickets(session))]
        received = self.servers.received
        self.say("Tickets")
        self.say(f"  {'REF':<10} {'STATUS':<8} {'LEVEL':<6} {'LANG':<5} {'MSGS':<5} "
                 f"{'REQUESTER':<31} SUBJECT")
        for t in tickets:
            self.say(f"  {t.ref:<10} {t.status:<8} {t.level:<6} {t.language:<5} "
                     f"{t.messages:<5} {t.requester:<31} {t.subject}")
        self.say("  (the demo has no routing rules, so every ticket starts at the 1st level)")
        self.say(f"\nReplies the SMTP server received ({len(received)})")
        languages = {t.ref: t.language for t in tickets}
        for i, r in enumerate(received, 1):
            self._show_reply(i, r, languages)
        starter = _ticket_of(app, str(self.first[THREAD_START]["Message-ID"]).strip("<>"))
        detail = ticket_detail(settings, starter) if starter else None
        if detail is not None:
            self.say(f"The thread of {starter} (`maild tickets show {starter}`)")
            notes = _thread_notes(detail)
            width = max(len(m["subject"]) for m in detail["messages"])
            for m in detail["messages"]:
                self.say(f"  {m['direction']:<9} {m['from']:<29} {m['subject']:<{width}}  "
                         f"{notes.get(m['message_id'], '')}".rstrip())
        self._verify(tickets, received)
        if starter is None or found.answer_ref != starter:
            raise DemoFailed("the customer's answer did not join her ticket")
        used = sorted({LANGUAGES.get(t.language, t.language) for t in tickets})
        self.say(f"\nResult: OK. {len(tickets)} tickets, {len(received)} acknowledgements "
                 f"({' and '.join(used)} templates); the answer joined {starter} "
                 "without a second acknowledgement.")
        cfg = settings.config_path
        self.say("\nThe servers stop with the demo; configuration and database stay. Look further:")
        self.say(f"  maild -c {cfg} tickets list")
        self.say(f"  maild -c {cfg} tickets show {starter}")

    def _show_reply(self, i: int, r: Received, languages: dict[str, str]) -> None:
        subject = r.header("Subject")
        ref = next((k for k in languages if f"[{k}]" in subject), "")
        lang = LANGUAGES.get(languages.get(ref, ""), "?")
        self.say(f"  {i}. To: {r.header('To')}  ({lang} template)")
        self.say(f"     Subject:     {subject}")
        self.say(f"     Message-ID:  {r.header('Message-ID')}")
        self.say(f"     In-Reply-To: {r.header('In-Reply-To')}")
        for line in [line for line in body_lines(r.message) if line.strip()][:3]:
            self.say(f"     | {line}")
        self.say("     | ...\n")

    @staticmethod
    def _verify(tickets: list[TicketRow], received: list[Received]) -> None:
        expected = len(FIRST_MAILS) + 1
        if len(tickets) != expected:
            raise DemoFailed(f"expected {expected} tickets, found {len(tickets)}")
        for t in tickets:
            acks = [r for r in received if f"[{t.ref}]" in r.header("Subject")]
            if len(acks) != 1:
                raise DemoFailed(f"ticket {t.ref} got {len(acks)} acknowledgements, not 1")
            if acks[0].rcpt_tos != (t.requester,):
                raise DemoFailed(f"the acknowledgement of {t.ref} went to {acks[0].rcpt_tos}")
        if len(received) != expected:
            raise DemoFailed(f"the SMTP server received {len(received)} messages, "
                             f"expected {expected}")


def _ticket_of(app: App, message_id: str) -> str | None:
    """The reference of the ticket that holds the message `message_id`, if any."""
    with app.sessions() as session:
        return session.scalar(select(Ticket.ref).join(Message, Message.ticket_id == Ticket.id)
                              .where(Message.message_id == message_id))


def _thread_notes(detail: dict[str, Any]) -> dict[str, str]:
    """What the ticket's events say about each of its messages, by Message-ID."""
    notes: dict[str, str] = {}
    for event in detail["events"]:
        data = event["data"] if isinstance(event["data"], dict) else {}
        mid, kind = data.get("message_id"), str(event["kind"])
        if not isinstance(mid, str):
            continue
        if kind == "created":
            notes[mid] = "opened the ticket"
        elif kind == "message.received":
            notes[mid] = f"joined it (matched by {data.get('threaded_by')})"
        elif kind.endswith(".queued"):
            notes[mid] = f"{kind.removesuffix('.queued')}, queued"
        elif kind.endswith(".sent"):
            notes[mid] = f"{kind.removesuffix('.sent')}, sent"
    return notes


def run_demo(out: TextIO | None = None) -> int:
    """The demo; 0 when everything it shows worked, 1 with a one-line reason otherwise."""
    logs.configure("warning")
    work = Path(tempfile.mkdtemp(prefix="maild-demo-"))
    password = secrets.token_urlsafe(12)
    try:
        with LoopbackServers(user=SUPPORT_ADDRESS, password=password) as servers:
            Demo(work, servers, out or sys.stdout).run()
    except DemoFailed as exc:
        print(f"maild demo: {exc} (files in {work})", file=sys.stderr)
        return 1
    return 0
