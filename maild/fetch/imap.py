"""IMAP source on imapclient (synchronous: the daemon runs it in a worker thread).

Security fails closed: `tls` wraps the socket from the start, `starttls` demands the
STARTTLS capability and upgrades before login, and only `none` talks in plain text. The
source works in sets of UIDs: fetch a batch, then move (or copy and flag) the whole batch
with one command once the database has committed. A move can be sent without waiting for
its answer, which is read before the source's next command: the server moves one batch
while the daemon writes the next.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from imapclient.imapclient import join_message_ids

from maild.auth.oauth2 import imap_login
from maild.auth.providers import TokenProviders
from maild.domain import Fetched, SourceRef
from maild.errors import TransportError
from maild.settings import ImapSettings, MailboxSettings, Security
from maild.tls import tls_context

PROCESSED_KEYWORD = "$MaildProcessed"
# What a dropped or refused connection looks like through imapclient.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError, IMAPClientError, ssl.SSLError, socket.timeout, EOFError,
)


def connect(cfg: ImapSettings, tokens: TokenProviders | None = None) -> IMAPClient:
    """A logged-in client, secured as configured, or a TransportError."""
    try:
        if cfg.security is Security.TLS:
            client = IMAPClient(cfg.host, port=cfg.effective_port, ssl=True,
                                ssl_context=tls_context(cfg.ca_file), timeout=cfg.timeout)
        else:
            client = IMAPClient(cfg.host, port=cfg.effective_port, ssl=False,
                                timeout=cfg.timeout)
            if cfg.security is Security.STARTTLS:
                if not client.has_capability("STARTTLS"):
                    client.shutdown()
                    raise TransportError(
                        f"IMAP server {cfg.host}:{cfg.effective_port} does not offer "
                        "STARTTLS; refusing to log in without TLS"
                    )
                client.starttls(tls_context(cfg.ca_file))
        if cfg.oauth2 is not None:
            if tokens is None:
                raise TransportError("OAuth2 sign-in configured but no token provider given")
            imap_login(client, cfg.username or "", tokens.for_settings(cfg.oauth2))
        else:
            client.login(cfg.username or "", cfg.secret() or "")
    except TransportError:
        raise
    except CONNECTION_ERRORS as exc:
        raise TransportError(
            f"IMAP {cfg.host}:{cfg.effective_port}: {type(exc).__name__}: {exc}"
        ) from exc
    return client


def chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


class ImapSource:
    """One mailbox folder: unacknowledged UIDs, batched fetch, acknowledgement by move or flag."""

    def __init__(self, mailbox: MailboxSettings, tokens: TokenProviders | None = None) -> None:
        self.mailbox = mailbox
        self._tokens = tokens
        self._client: IMAPClient | None = None
        self.uidvalidity = 0
        self._use_move = False
        self._uidplus = False
        self._in_flight: str | None = None  # the tag of a move sent, its answer not yet read

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            raise TransportError("not connected")
        return self._client

    def open(self) -> None:
        client = connect(self.mailbox.imap, self._tokens)
        self._client = client
        try:
            for folder in (self.mailbox.processed_folder, self.mailbox.quarantine_folder):
                if not client.folder_exists(folder):
                    client.create_folder(folder)
            info = client.select_folder(self.mailbox.folder)
        except CONNECTION_ERRORS as exc:
            self.close()
            raise TransportError(f"IMAP mailbox {self.mailbox.name}: {exc}") from exc
        self.uidvalidity = int(info[b"UIDVALIDITY"])
        has_move = client.has_capability("MOVE")
        self._use_move = has_move if self.mailbox.use_move is None else (
            self.mailbox.use_move and has_move)
        self._uidplus = client.has_capability("UIDPLUS")

    def close(self) -> None:
        """Log out; a move still in flight is answered first where the connection allows
        (what it could not move stays in the folder, and is recognised when fetched again)."""
        with contextlib.suppress(*CONNECTION_ERRORS, TransportError):
            self.finish_move()
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except CONNECTION_ERRORS:
            with contextlib.suppress(*CONNECTION_ERRORS):
                client.shutdown()

    def unacknowledged(self) -> list[int]:
        """UIDs of the messages not yet acknowledged, oldest first."""
        self.finish_move()
        uids = self.client.search(["NOT", "DELETED", "NOT", "KEYWORD", PROCESSED_KEYWORD])
        return sorted(int(u) for u in uids)

    def fetch(self, uids: Sequence[int]) -> list[Fetched]:
        self.finish_move()
        data = self.client.fetch(list(uids), ["BODY.PEEK[]"])
        out = []
        for uid in uids:
            body = data.get(uid, {}).get(b"BODY[]")
            if body is None:
                continue  # expunged meanwhile by someone else
            source = SourceRef(self.mailbox.name, self.mailbox.folder, self.uidvalidity, uid)
            out.append(Fetched(source=source, raw=bytes(body)))
        return out

    def acknowledge(self, uids: Sequence[int], folder: str, *, wait: bool = True) -> None:
        """Move `uids` to `folder` in one command (or copy, flag and expunge them).

        A move is sent, and its answer read by `finish_move`: at once, or with `wait=False`
        by the source's next command (every one calls it first), so a failed move still
        raises, only later. (Copy, flag and expunge, where MOVE is missing, always wait.)
        """
        if not uids:
            return
        self.finish_move()
        client = self.client
        if self._use_move:
            # imapclient only has commands that wait for their answer; imaplib, under it,
            # sends a command and reads its answer by tag when asked (what imapclient's
            # own `move` does in one go).
            self._in_flight = client._imap._command(
                "UID", "MOVE", join_message_ids(list(uids)), client._normalise_folder(folder))
            if wait:
                self.finish_move()
            return
        client.copy(list(uids), folder)
        client.add_flags(list(uids), [b"\\Deleted", PROCESSED_KEYWORD.encode()])
        if self._uidplus:
            client.uid_expunge(list(uids))

    def finish_move(self) -> None:
        """Read the answer to a move sent (if one is still unread); raise as imapclient's
        `move` would had it failed. Nothing is read twice: the move counts as answered
        even when it raises."""
        tag, self._in_flight = self._in_flight, None
        if tag is None:
            return
        client = self.client
        typ, data = client._imap._command_complete("UID", tag)
        client._checkok("move", typ, data)

    def wait(self, stop: Callable[[], bool]) -> None:
        """Block until the server reports a change, `idle_renew` passes, or `stop()`.

        The socket is watched with select() and IDLE ended with DONE, which reads the
        server's answer in blocking mode: imapclient's idle_check can stop halfway through a
        line (imapclient issue 519). Whatever the server said, the caller searches again.
        """
        self.finish_move()
        client = self.client
        deadline = time.monotonic() + (
            self.mailbox.idle_renew if self.mailbox.idle else self.mailbox.poll_interval)
        if not (self.mailbox.idle and client.has_capability("IDLE")):
            while not stop() and time.monotonic() < deadline:
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            client.noop()
            return
        sock = client.socket()
        client.idle()
        try:
            if _buffered(client, sock):
                return  # mail that came between the last SEARCH and IDLE (see _buffered)
            while not stop() and time.monotonic() < deadline:
                buffered = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
                if buffered or select.select([sock], [], [], 0.5)[0]:
                    break
        finally:
            client.idle_done()


def _buffered(client: IMAPClient, sock: socket.socket) -> bool:
    """Whether the server already said something that sits in imaplib's read buffer.

    A message that arrives between our last SEARCH and IDLE is announced with `* N EXISTS`
    in the same packet as the `+ idling` continuation; imaplib reads both into its buffer,
    so select() on the socket never fires. Peek without blocking.
    """
    reader = getattr(client._imap, "file", None)
    if reader is None or not hasattr(reader, "peek"):
        return False
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        return bool(reader.peek(1))
    except (BlockingIOError, ssl.SSLWantReadError, TimeoutError):
        return False
    finally:
        sock.settimeout(timeout)
