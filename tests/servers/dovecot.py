"""A real Dovecot IMAP server for tests.

``Dovecot()`` writes a private, stand-alone configuration into a temporary directory (its own
``base_dir``, ``state_dir``, log file, passwd-file users and Maildir homes) and runs
``dovecot -F`` on a free loopback port. Nothing under ``/etc/dovecot`` is read.

Dovecot refuses to touch mail as root, so when the tests run as root the mail files belong to an
unprivileged system account (``maild-test``, created with ``useradd --system`` when missing);
as an ordinary user, Dovecot runs rootless and everything belongs to that user.

    with Dovecot() as server:
        server.add_user("support@example.test", "secret")
        server.append("support@example.test", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from imapclient import IMAPClient, imap_utf7

from tests.servers.tls import client_context, make_self_signed_cert

HOST = "127.0.0.1"
MAIL_ACCOUNT = "maild-test"
"""The unprivileged system account that owns the mail when the tests run as root."""

START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
TERM_GRACE = 1.0
CLIENT_TIMEOUT = 15.0

_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
_FORBIDDEN_IN_PASSWD = re.compile(r"[:\r\n\x00]")


class DovecotError(RuntimeError):
    """Dovecot could not be started, stopped or driven as the test wanted."""


@dataclass(frozen=True)
class MailUser:
    """A mailbox on a test Dovecot, with shortcuts to the server's helpers."""

    username: str
    password: str
    host: str
    port: int
    server: Dovecot = field(repr=False, compare=False)

    def imap_config(self) -> dict[str, Any]:
        """The ``mailboxes[].imap`` block of maild's YAML configuration for this user."""
        return {
            "host": self.host,
            "port": self.port,
            "security": "none",
            "username": self.username,
            "password": self.password,
        }

    def connect(self) -> IMAPClient:
        """A logged-in IMAPClient; use it as a context manager so it logs out."""
        return self.server.connect(self.username)

    def append(self, raw: bytes, folder: str = "INBOX") -> int:
        return self.server.append(self.username, raw, folder)

    def append_many(self, messages: Iterable[bytes], folder: str = "INBOX") -> list[int]:
        return self.server.append_many(self.username, messages, folder)

    def fetch_all(self, folder: str = "INBOX") -> list[bytes]:
        return self.server.fetch_all(self.username, folder)

    def count(self, folder: str = "INBOX") -> int:
        return self.server.count(self.username, folder)

    def folders(self) -> list[str]:
        return self.server.folders(self.username)

    def fetch_by_uid(self, folder: str = "INBOX") -> dict[int, bytes]:
        return self.server.fetch_by_uid(self.username, folder)

    def flags(self, folder: str = "INBOX") -> dict[int, set[str]]:
        return self.server.flags(self.username, folder)

    def create_folder(self, folder: str) -> None:
        self.server.create_folder(self.username, folder)

    def uidvalidity(self, folder: str = "INBOX") -> int:
        return self.server.uidvalidity(self.username, folder)


@dataclass(frozen=True)
class _Account:
    password: str
    home: Path


def free_port(host: str = HOST) -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _imap_greeting(host: str, port: int) -> bool:
    """True when an IMAP greeting (``* OK``) arrives on the port."""
    try:
        with socket.create_connection((host, port), timeout=2.0) as sock:
            sock.settimeout(2.0)
            return sock.recv(64).startswith(b"* OK")
    except OSError:
        return False


def _dovecot_binary() -> str:
    found = os.environ.get("MAILD_TEST_DOVECOT") or shutil.which("dovecot")
    if found:
        return found
    if os.access("/usr/sbin/dovecot", os.X_OK):
        return "/usr/sbin/dovecot"
    raise DovecotError("dovecot is not installed (Debian: apt-get install dovecot-imapd)")


def _mail_account() -> tuple[int, int]:
    """uid and gid that own the mail: ``maild-test`` as root, else the current user."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    try:
        entry = pwd.getpwnam(MAIL_ACCOUNT)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        result = subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                MAIL_ACCOUNT,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=False,
        )
        # 9: the account appeared meanwhile (another test process made it).
        if result.returncode not in (0, 9):
            raise DovecotError(
                f"useradd {MAIL_ACCOUNT} failed: {result.stderr.decode(errors='replace')}"
            ) from None
        entry = pwd.getpwnam(MAIL_ACCOUNT)
    return entry.pw_uid, entry.pw_gid


def _live_group_members(pgid: int) -> set[int] | None:
    """Pids in process group ``pgid`` that are not zombies; None without /proc."""
    members: set[int] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in (b"Z", b"X"):
            members.add(int(entry))
    return members


def _terminate_group(master: subprocess.Popen[bytes]) -> None:
    """SIGTERM Dovecot's whole process group and wait (bounded) until it is gone.

    Signalling the master alone makes it wait 1-3 s for its children; signalling the group
    ends most of them at once. The master then still sleeps in its shutdown loop after its
    children have exited, so once only the master is left it gets SIGKILL; and now and then
    anvil or log hangs for ~5 s in a blocking read, so whatever is left after
    ``TERM_GRACE`` seconds gets SIGKILL too (the mail is safe in the Maildir by then).
    """
    pgid = master.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    grace_end = time.monotonic() + TERM_GRACE
    while True:
        master.poll()
        members = _live_group_members(pgid)
        if members is None:  # no /proc: rely on the master alone
            master.wait(timeout=STOP_TIMEOUT)
            return
        if not members:
            break
        if members == {master.pid}:
            master.kill()
        elif time.monotonic() > grace_end:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        if time.monotonic() > grace_end + STOP_TIMEOUT:
            raise DovecotError(f"Dovecot processes {sorted(members)} did not exit")
        time.sleep(0.01)
    master.wait(timeout=STOP_TIMEOUT)


class Dovecot:
    """A private Dovecot on a loopback high port.

    ``tls=True`` makes a self-signed certificate (``ca_file``), serves implicit TLS on
    ``tls_port`` and offers STARTTLS on ``port``; ``tls=False`` sets ``ssl = no``, so STARTTLS
    is not offered at all. ``capabilities_remove`` drops capabilities (e.g. ``["MOVE"]`` or
    ``["IDLE"]``) from what the server advertises after login (``imap_capability``); Dovecot
    would still execute the command if a client sent it regardless.
    """

    def __init__(
        self,
        *,
        tls: bool = False,
        capabilities_remove: Sequence[str] = (),
        base_directory: str | Path | None = None,
    ) -> None:
        self.host = HOST
        self.tls = tls
        self._capabilities_remove = {c.upper() for c in capabilities_remove}
        self._capability_override: str | None = None
        self._binary = _dovecot_binary()
        self._uid, self._gid = _mail_account()
        self._rootless = os.geteuid() != 0
        self.directory = Path(tempfile.mkdtemp(prefix="maild-dovecot-", dir=base_directory))
        self.directory.chmod(0o755)  # the mail account must reach its home below it
        self.config_path = self.directory / "dovecot.conf"
        self.users_directory = self.directory / "users"
        self.log_path = self.directory / "dovecot.log"
        self._master_out_path = self.directory / "master.out"
        (self.directory / "run").mkdir()
        (self.directory / "state").mkdir()
        (self.directory / "home").mkdir(mode=0o755)
        self.users_directory.mkdir(mode=0o755)
        self.log_path.touch(mode=0o644)
        self.port = free_port()
        self.tls_port: int | None = None
        self.ca_file: Path | None = None
        self._key_file: Path | None = None
        if tls:
            self.tls_port = free_port()
            while self.tls_port == self.port:
                self.tls_port = free_port()
            self.ca_file, self._key_file = make_self_signed_cert(self.directory / "tls")
        self._accounts: dict[str, _Account] = {}
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._closed = False
        atexit.register(self.close)

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start Dovecot and wait (bounded) until it greets on its port(s)."""
        if self._closed:
            raise DovecotError("this Dovecot was closed")
        if self.running:
            return
        if self._capabilities_remove and self._capability_override is None:
            self._capability_override = self._probe_capabilities()
        self._write_config()
        self._spawn()

    def stop(self) -> None:
        """Stop Dovecot and all its processes; wait (bounded) until the ports are closed."""
        process = self._process
        if process is None:
            return
        self._process = None
        _terminate_group(process)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(_port_open(self.host, p) for p in self._ports()):
            if time.monotonic() > deadline:
                raise DovecotError(f"Dovecot's ports stayed open after stop\n{self.log_tail()}")
            time.sleep(0.01)

    def restart(self) -> None:
        self.stop()
        self.start()

    def ensure_running(self) -> None:
        """Start Dovecot again if a test stopped it (or it died)."""
        if not self.running:
            self.stop()  # reaps a dead master and ends what is left of its processes
            self.start()

    def close(self) -> None:
        """Stop Dovecot and delete its directory (mail included)."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            atexit.unregister(self.close)
            shutil.rmtree(self.directory, ignore_errors=True)

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

    def log_tail(self, lines: int = 40) -> str:
        """The end of Dovecot's log and of the master's own output, for error messages."""
        parts = []
        for path in (self._master_out_path, self.log_path):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    parts.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(parts) or "(Dovecot wrote no log)"

    def client_context(self) -> ssl.SSLContext:
        """A verifying SSL context that trusts this server's certificate (``tls=True`` only)."""
        if self.ca_file is None:
            raise DovecotError("this Dovecot has no TLS (use Dovecot(tls=True))")
        return client_context(self.ca_file)

    # -- users ---------------------------------------------------------------------------

    def add_user(self, username: str, password: str) -> None:
        """Add a mail user; usable at once, also while Dovecot runs.

        Each user has a passwd-file of its own (``users/<username>``, found through ``%u`` in
        the passdb/userdb path): Dovecot re-reads a changed passwd-file at most once a second,
        so appending to one shared file would make a user added right after a login invisible
        for up to a second.
        """
        if (
            not username
            or _FORBIDDEN_IN_PASSWD.search(username + password)
            or "/" in username
            or username.startswith(".")
        ):
            raise ValueError(f"unusable username or password for a passwd-file: {username!r}")
        # Dovecot lowercases login names before the lookup (auth_username_format = %Lu).
        key = username.lower()
        with self._lock:
            if key in self._accounts:
                raise ValueError(f"user {username!r} exists already")
            safe = re.sub(r"[^A-Za-z0-9._@+-]", "_", username)
            home = self.directory / "home" / f"{len(self._accounts):04d}-{safe}"
            home.mkdir(mode=0o700)
            os.chown(home, self._uid, self._gid)
            line = f"{key}:{{PLAIN}}{password}:{self._uid}:{self._gid}::{home}::\n"
            (self.users_directory / key).write_text(line)
            self._accounts[key] = _Account(password, home)

    def new_user(self, prefix: str = "user", domain: str = "example.test") -> MailUser:
        """Add a user with a unique address and a random password."""
        username = f"{prefix}-{secrets.token_hex(4)}@{domain}"
        password = secrets.token_urlsafe(12)
        self.add_user(username, password)
        return MailUser(username, password, self.host, self.port, self)

    def password(self, username: str) -> str:
        return self._account(username).password

    def home(self, username: str) -> Path:
        return self._account(username).home

    # -- IMAP helpers (as the user, over the plain port) ---------------------------------

    def connect(self, username: str) -> IMAPClient:
        """A logged-in IMAPClient on the plain port; use ``with`` so it logs out."""
        client = IMAPClient(self.host, self.port, ssl=False, timeout=CLIENT_TIMEOUT)
        try:
            client.login(username, self.password(username))
        except BaseException:
            client.shutdown()
            raise
        return client

    def append(self, username: str, raw: bytes, folder: str = "INBOX") -> int:
        """APPEND one message (creating the folder if needed); returns its UID."""
        return self.append_many(username, [raw], folder)[0]

    def append_many(
        self, username: str, messages: Iterable[bytes], folder: str = "INBOX"
    ) -> list[int]:
        """APPEND messages in order on one connection; returns their UIDs."""
        uids = []
        with self.connect(username) as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            for raw in messages:
                response = client.append(folder, raw)
                match = _APPENDUID.search(response)
                if match is None:
                    raise DovecotError(f"APPEND gave no APPENDUID: {response!r}")
                uids.append(int(match.group(2)))
        return uids

    def fetch_all(self, username: str, folder: str = "INBOX") -> list[bytes]:
        """Raw bytes of every message in ``folder``, by UID; [] if the folder does not exist."""
        return list(self.fetch_by_uid(username, folder).values())

    def fetch_by_uid(self, username: str, folder: str = "INBOX") -> dict[int, bytes]:
        """``{uid: raw bytes}`` in UID order (without setting \\Seen)."""
        with self.connect(username) as client:
            if not client.folder_exists(folder):
                return {}
            client.select_folder(folder, readonly=True)
            uids = sorted(client.search("ALL"))
            if not uids:
                return {}
            data = client.fetch(uids, ["BODY.PEEK[]"])
            return {uid: bytes(data[uid][b"BODY[]"]) for uid in uids}

    def flags(self, username: str, folder: str = "INBOX") -> dict[int, set[str]]:
        """``{uid: {flag, ...}}`` (flags as str, e.g. ``"\\\\Seen"``); {} if no such folder."""
        with self.connect(username) as client:
            if not client.folder_exists(folder):
                return {}
            client.select_folder(folder, readonly=True)
            uids = sorted(client.search("ALL"))
            if not uids:
                return {}
            data = client.get_flags(uids)
            return {uid: {f.decode() for f in data[uid]} for uid in uids}

    def count(self, username: str, folder: str = "INBOX") -> int:
        """Number of messages in ``folder``; 0 if the folder does not exist."""
        with self.connect(username) as client:
            if not client.folder_exists(folder):
                return 0
            return int(client.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"])

    def folders(self, username: str) -> list[str]:
        with self.connect(username) as client:
            return [str(name) for _flags, _delimiter, name in client.list_folders()]

    def create_folder(self, username: str, folder: str) -> None:
        with self.connect(username) as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)

    def uidvalidity(self, username: str, folder: str = "INBOX") -> int:
        with self.connect(username) as client:
            return int(client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])

    def reset_uidvalidity(self, username: str, folder: str = "INBOX") -> int:
        """Give ``folder`` a new UIDVALIDITY, keeping its messages; returns the new value.

        Restarts Dovecot: the folder's ``dovecot-uidlist`` and index files are deleted while it
        is stopped, so Dovecot rebuilds them with the next UIDVALIDITY and renumbers the UIDs.
        Open connections are dropped, as on a real server that does this.
        """
        old = self.uidvalidity(username, folder)
        maildir = self._maildir(username, folder)
        root = self._maildir(username, "INBOX")
        self.stop()
        stale = [*maildir.glob("dovecot-uidlist*"), *maildir.glob("dovecot.index*")]
        stale += root.glob("dovecot.list.index*")
        for path in stale:
            path.unlink(missing_ok=True)
        self.start()
        new = self.uidvalidity(username, folder)
        if new == old:
            raise DovecotError(f"UIDVALIDITY of {folder!r} stayed {old} after the reset")
        return new

    # -- internals -----------------------------------------------------------------------

    def _account(self, username: str) -> _Account:
        try:
            return self._accounts[username.lower()]
        except KeyError:
            raise KeyError(f"no user {username!r} on this Dovecot (add_user first)") from None

    def _maildir(self, username: str, folder: str) -> Path:
        root = self.home(username) / "Maildir"
        if folder.upper() == "INBOX":
            return root
        encoded: bytes = imap_utf7.encode(folder)
        return root / ("." + encoded.decode("ascii"))

    def _ports(self) -> list[int]:
        return [self.port] if self.tls_port is None else [self.port, self.tls_port]

    def _spawn(self) -> None:
        # Leftovers of a previous master (it may have been killed holding them) would make
        # the new one wait ~10 s for a stale dotlock on state/instances.
        for stale in [
            *(self.directory / "state").glob("*.lock"),
            self.directory / "run/master.pid",
        ]:
            stale.unlink(missing_ok=True)
        with self._master_out_path.open("ab") as out:
            # The master stays in the foreground (-F) as our child, in its own process group;
            # its output goes to a file, never to the test runner's pipes.
            self._process = subprocess.Popen(
                [self._binary, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            code = self._process.poll()
            if code is not None:
                self._process = None
                raise DovecotError(f"dovecot exited with status {code}\n{self.log_tail()}")
            ready = _imap_greeting(self.host, self.port)
            if ready and self.tls_port is not None:
                ready = _port_open(self.host, self.tls_port)
            if ready:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise DovecotError(
                    f"Dovecot did not accept connections on {self.host}:{self.port} within "
                    f"{START_TIMEOUT:.0f}s\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def _probe_capabilities(self) -> str:
        """The post-login CAPABILITY list minus ``capabilities_remove``, from a probe login."""
        probe = f"capability-probe-{secrets.token_hex(4)}"
        self.add_user(probe, secrets.token_urlsafe(12))
        self._write_config()
        self._spawn()
        try:
            with self.connect(probe) as client:
                capabilities = [c.decode() for c in client.capabilities()]
        finally:
            self.stop()
        kept = [c for c in capabilities if c.upper() not in self._capabilities_remove]
        return " ".join(kept)

    def _write_config(self) -> None:
        self.config_path.write_text(self._render_config())

    def _render_config(self) -> str:
        d = self.directory
        if self.tls:
            ssl_settings = f"ssl = yes\nssl_cert = <{self.ca_file}\nssl_key = <{self._key_file}\n"
            imaps = (
                f"  inet_listener imaps {{\n    address = {self.host}\n"
                f"    port = {self.tls_port}\n    ssl = yes\n  }}\n"
            )
        else:
            ssl_settings = "ssl = no\n"
            imaps = "  inet_listener imaps {\n    port = 0\n  }\n"
        if self._rootless:
            user = pwd.getpwuid(self._uid).pw_name
            group = grp.getgrgid(self._gid).gr_name
            rootless = (
                f"default_login_user = {user}\ndefault_internal_user = {user}\n"
                f"default_internal_group = {group}\n"
            )
            chroot = "  chroot =\n"  # only root can chroot
        else:
            rootless = ""
            chroot = ""
        capability = (
            f"imap_capability = {self._capability_override}\n" if self._capability_override else ""
        )
        return f"""\
# Written by tests/servers/dovecot.py: a private, stand-alone test server.
base_dir = {d}/run
state_dir = {d}/state
instance_name = maild-test-{self.port}
log_path = {self.log_path}
info_log_path = {self.log_path}
protocols = imap
listen = {self.host}
{ssl_settings}disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
# Every lookup reads the passwd-files, so users added while running work at once.
auth_cache_size = 0
# Failed logins answer after ~0.5 s (Dovecot's fixed flush tick) instead of 2 s...
auth_failure_delay = 0
first_valid_uid = {self._uid}
last_valid_uid = {self._uid}
first_valid_gid = {self._gid}
last_valid_gid = {self._gid}
mail_location = maildir:~/Maildir
mail_fsync = never
mail_max_userip_connections = 1000
# IDLE: inotify wakes the IDLE-ing process (Dovecot then waits a fixed 0.5 s to batch
# changes); this is only the fallback poll interval.
mailbox_idle_check_interval = 1 secs
{capability}{rootless}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.users_directory}/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.users_directory}/%u
}}
namespace inbox {{
  inbox = yes
}}
service imap {{
  process_limit = 1000
}}
# ...and without the growing penalty (2, 4, 8... s) for repeated failures from one IP:
# the auth process cannot open the penalty socket, so it skips penalty checks.
service anvil {{
{chroot}  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
{chroot}  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}
{imaps}}}
"""
