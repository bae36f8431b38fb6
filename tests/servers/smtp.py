"""A real SMTP server for tests: aiosmtpd's ``Controller`` on a free loopback port.

Every accepted message is recorded; failures can be programmed (``fail_next``,
``reject_recipient``) and the server can be stopped and started again on the same port.

    with SmtpServer() as smtp:
        ...  # send to smtp.host:smtp.port
        [message] = smtp.wait_for(1)
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import functools
import shutil
import ssl
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import aiosmtplib
from aiosmtpd.controller import Controller

from tests.servers.dovecot import HOST, free_port
from tests.servers.tls import client_context, make_self_signed_cert

Stage = Literal["MAIL", "RCPT", "DATA"]


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the server accepted (answered 250 to DATA)."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    """The message as received (dot-unstuffed), CRLF line endings as sent."""
    tls: bool
    """Whether the session had switched to TLS (STARTTLS or implicit TLS)."""
    peer: tuple[str, int] | None = None
    """The client's address and port: messages with the same peer came over one connection."""

    @functools.cached_property
    def message(self) -> EmailMessage:
        """``data`` parsed with ``email.policy.default``, when first asked for: parsing as
        the mail arrives would put the sink's work on the CPU that a benchmark measures."""
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass(frozen=True)
class _Failure:
    code: int
    text: str

    def reply(self) -> str:
        return f"{self.code} {self.text}"


def _default_text(code: int) -> str:
    if 400 <= code < 500:
        return "4.3.0 Temporary failure (programmed by the test)"
    return "5.7.1 Rejected (programmed by the test)"


def _is_tls(server: Any, session: Any) -> bool:
    if session.ssl is not None:  # after STARTTLS
        return True
    transport = getattr(server, "transport", None)  # implicit TLS
    return transport is not None and transport.get_extra_info("ssl_object") is not None


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        failure = self._server._take_failure("MAIL")
        if failure is not None:
            return failure.reply()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        rejected = self._server._rejection(address)
        if rejected is not None:
            return rejected.reply()
        failure = self._server._take_failure("RCPT")
        if failure is not None:
            return failure.reply()
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        failure = self._server._take_failure("DATA")
        if failure is not None:
            return failure.reply()
        content = envelope.original_content or envelope.content
        data = bytes(content) if not isinstance(content, str) else content.encode()
        self._server._record(
            ReceivedMessage(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                data=data,
                tls=_is_tls(server, session),
                peer=tuple(session.peer) if session.peer else None,
            )
        )
        return "250 OK message accepted"


class SmtpServer:
    """aiosmtpd on ``host:port`` (a free loopback port unless ``port`` is given).

    ``tls=True``: self-signed certificate (``ca_file``), STARTTLS offered and, by default,
    required before MAIL (``require_starttls``). ``implicit_tls=True``: the port speaks TLS from
    the first byte (SMTPS). Both make ``ca_file`` and ``client_context()`` available.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        tls: bool = False,
        implicit_tls: bool = False,
        require_starttls: bool = True,
        hostname: str = "smtp.maild.test",
    ) -> None:
        if tls and implicit_tls:
            raise ValueError("choose STARTTLS (tls=True) or implicit TLS, not both")
        self.host = HOST
        self.port = port if port is not None else free_port()
        self.hostname = hostname
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.require_starttls = require_starttls
        self.ca_file: Path | None = None
        self._key_file: Path | None = None
        self._directory: Path | None = None
        if tls or implicit_tls:
            self._directory = Path(tempfile.mkdtemp(prefix="maild-smtp-"))
            self.ca_file, self._key_file = make_self_signed_cert(self._directory)
        self._condition = threading.Condition()
        self._messages: list[ReceivedMessage] = []
        self._failures: dict[Stage, deque[_Failure]] = {
            s: deque() for s in ("MAIL", "RCPT", "DATA")
        }
        self._rejected: dict[str, _Failure] = {}
        self._controller: Controller | None = None

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        """Start listening (again) on the same port; returns once the server answers."""
        if self._controller is not None:
            return
        kwargs: dict[str, Any] = {}
        if self.tls:
            kwargs["tls_context"] = self._server_context()
            kwargs["require_starttls"] = self.require_starttls
        controller = Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            ready_timeout=10.0,
            ssl_context=self._server_context() if self.implicit_tls else None,
            server_hostname=self.hostname,
            **kwargs,
        )
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        """Stop listening; recorded messages and programmed failures are kept."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def close(self) -> None:
        self.stop()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def client_context(self) -> ssl.SSLContext:
        """A verifying client SSL context that trusts this server's certificate."""
        if self.ca_file is None:
            raise RuntimeError("this SmtpServer has no TLS (use tls=True or implicit_tls=True)")
        return client_context(self.ca_file)

    # -- what arrived --------------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A copy of the messages accepted so far, in arrival order."""
        with self._condition:
            return list(self._messages)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages arrived; raise TimeoutError after ``timeout``."""
        with self._condition:
            if not self._condition.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} message(s) at {self.host}:{self.port} within "
                    f"{timeout}s, got {len(self._messages)}"
                )
            return list(self._messages)

    def clear(self) -> None:
        """Forget recorded messages, programmed failures and rejected recipients."""
        with self._condition:
            self._messages.clear()
            for queue in self._failures.values():
                queue.clear()
            self._rejected.clear()

    # -- programmed failures -------------------------------------------------------------

    def fail_next(
        self, count: int = 1, code: int = 451, text: str | None = None, *, stage: Stage = "DATA"
    ) -> None:
        """Answer the next ``count`` commands of ``stage`` (DATA, RCPT or MAIL) with ``code``."""
        if not 400 <= code < 600:
            raise ValueError(f"a failure needs a 4xx or 5xx code, not {code}")
        failure = _Failure(code, text or _default_text(code))
        with self._condition:
            self._failures[stage].extend([failure] * count)

    def reject_recipient(self, address: str, code: int = 550, text: str | None = None) -> None:
        """Answer RCPT TO for ``address`` (case-insensitive) with ``code``, every time."""
        if not 400 <= code < 600:
            raise ValueError(f"a rejection needs a 4xx or 5xx code, not {code}")
        with self._condition:
            self._rejected[address.lower()] = _Failure(
                code, text or f"{code // 100}.1.1 <{address}>: Recipient address rejected"
            )

    # -- called from the server thread ---------------------------------------------------

    def _take_failure(self, stage: Stage) -> _Failure | None:
        with self._condition:
            queue = self._failures[stage]
            return queue.popleft() if queue else None

    def _rejection(self, address: str) -> _Failure | None:
        with self._condition:
            return self._rejected.get(address.lower())

    def _record(self, message: ReceivedMessage) -> None:
        with self._condition:
            self._messages.append(message)
            self._condition.notify_all()

    def _server_context(self) -> ssl.SSLContext:
        assert self.ca_file is not None and self._key_file is not None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, self._key_file)
        return context


def send(server: SmtpServer, message: EmailMessage, **options: Any) -> Any:
    """Send ``message`` to ``server`` with aiosmtplib in a fresh event loop; returns its result.

    ``options`` go to ``aiosmtplib.SMTP`` (``start_tls``, ``use_tls``, ``tls_context``...),
    except ``sender`` and ``recipients`` which go to ``send_message``. Unlike a bare
    ``asyncio.run(aiosmtplib.send(...))`` this waits until the socket is really closed: a TLS
    close still in flight when the loop ends leaks the socket, and the ResourceWarning then
    fails some later test (pytest runs with ``filterwarnings = error``).
    """
    send_options = {k: options.pop(k) for k in ("sender", "recipients") if k in options}
    options.setdefault("timeout", 10)

    async def go() -> Any:
        client = aiosmtplib.SMTP(hostname=server.host, port=server.port, **options)
        await client.connect()
        transport = client.transport
        try:
            result = await client.send_message(message, **send_options)
            transport = client.transport  # the TLS transport after STARTTLS
            return result
        finally:
            with contextlib.suppress(aiosmtplib.SMTPException):
                await client.quit()
            client.close()
            if transport is not None:
                await wait_closed(transport)

    return asyncio.run(go())


async def wait_closed(transport: asyncio.BaseTransport, timeout: float = 5.0) -> None:
    """Wait until ``transport``'s socket is closed (TLS shutdown done), abort after ``timeout``."""
    loop = asyncio.get_running_loop()
    sock = transport.get_extra_info("socket")
    deadline = loop.time() + timeout
    while sock is not None and sock.fileno() != -1:
        if loop.time() > deadline:
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()
            else:
                transport.close()
            await asyncio.sleep(0)
            break
        await asyncio.sleep(0.002)
