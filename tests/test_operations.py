"""Operating maild: the systemd unit, sd_notify, SIGTERM, metrics, health, mailboxes."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, func, select

from maild import daemon
from maild.app import build
from maild.clock import FixedClock
from maild.store.models import Message, Ticket
from tests.kit import customer_mail, settings_for, write_config
from tests.servers.dovecot import Dovecot, MailUser, free_port
from tests.servers.smtp import SmtpServer

ROOT = Path(__file__).resolve().parents[1]


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_unit_file_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: scripts/test installs the systemd package"
    unit = (ROOT / "systemd" / "maild.service").read_text()
    for option in ("Type=notify", "WatchdogSec=", "ExecReload=", "Restart=on-failure",
                   "DynamicUser=yes", "StateDirectory=", "ConfigurationDirectory=",
                   "LoadCredential=", "ProtectSystem=strict", "ProtectHome=yes",
                   "NoNewPrivileges=yes", "PrivateTmp=yes", "RestrictAddressFamilies=",
                   "SystemCallFilter="):
        assert option in unit, option
    # verify checks that ExecStart exists: point it at this checkout's maild.
    local = tmp_path / "maild.service"
    local.write_text(unit.replace("/usr/local/bin/maild", str(Path(sys.executable).parent
                                                               / "maild")))
    result = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_sd_notify_protocol_and_sigterm(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, sqlite_url: str
) -> None:
    """READY, WATCHDOG pings, RELOADING (with MONOTONIC_USEC) then READY, STOPPING; exit 0."""
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    config = write_config(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
                          smtp={"host": smtp_server.host, "port": smtp_server.port,
                                "security": "none"})
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "300000"}
    seen: list[str] = []

    def read_until(state: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                seen.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
            if seen[-1].startswith(state):
                return
        raise AssertionError(f"no {state} in {seen}")

    with (tmp_path / "log").open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "maild", "-c", str(config), "run"],
                                env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        read_until("READY=1")
        read_until("WATCHDOG=1")
        read_until("WATCHDOG=1")
        proc.send_signal(signal.SIGHUP)
        read_until("RELOADING=1")
        read_until("READY=1")
        proc.send_signal(signal.SIGTERM)
        read_until("STOPPING=1")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    states = [s.split("\n")[0] for s in seen if not s.startswith("WATCHDOG")]
    assert states == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
    reloading = next(s for s in seen if s.startswith("RELOADING"))
    assert re.search(r"MONOTONIC_USEC=\d+", reloading)


def test_sigterm_during_a_busy_run_loses_nothing(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, sqlite_url: str
) -> None:
    messages = [customer_mail(sender=f"c{i}@example.com", subject=f"Request {i}")
                for i in range(300)]
    mail_user.append_many(messages)
    config = write_config(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
                          smtp={"host": smtp_server.host, "port": smtp_server.port,
                                "security": "none"}, mailbox={"batch_size": 10})
    engine = create_engine(sqlite_url)

    def stored() -> int:
        try:
            with engine.connect() as conn:
                return int(conn.scalar(select(func.count()).select_from(Message)
                                       .where(Message.direction == "inbound")) or 0)
        except Exception:
            return 0

    with (tmp_path / "log").open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "maild", "-c", str(config), "run"],
                                stdout=subprocess.DEVNULL, stderr=err)
    wait_until(lambda: stored() >= 50, "some progress")
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert time.monotonic() - started < 20  # within the grace period
    # Nothing half-done: every stored message has left INBOX, every other one is still there.
    in_db = stored()
    assert in_db < 300 or mail_user.count("INBOX") == 0
    assert mail_user.count("Processed") == in_db
    assert mail_user.count("INBOX") == 300 - in_db
    again = subprocess.run([sys.executable, "-m", "maild", "-c", str(config), "run", "--once"],
                           capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert stored() == 300 and mail_user.count("INBOX") == 0
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Ticket)) == 300
    engine.dispose()
    assert len({str(m.message["Message-ID"]) for m in smtp_server.messages}) == 300


def scrape(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def find_metric(text: str, name: str, labels: str = "") -> float | None:
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + \
        r" ([0-9.e+]+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else None


def metric(text: str, name: str, labels: str = "") -> float:
    value = find_metric(text, name, labels)
    assert value is not None, f"{name}{{{labels}}} not in metrics"
    return value


def test_metrics_and_health_during_a_run(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, sqlite_url: str
) -> None:
    port = free_port()
    app = build(settings_for(
        tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"},
        http={"port": port, "max_send_age": 1}), clock=FixedClock())
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete,
                              args=(daemon.run_forever(app, stop),))
    thread.start()
    try:
        for i in range(5):
            mail_user.append(customer_mail(sender=f"q{i}@example.com", subject=f"Q {i}"))
        mail_user.append(b"Subject: no sender\r\n\r\nbody\r\n")
        smtp_server.wait_for(5, timeout=30)
        wait_until(lambda: find_metric(scrape(port, "/metrics")[1], "maild_replies_sent_total",
                                       'kind="acknowledgement"') == 5, "sent counter")
        # The mails may come in more than one fetch: the acks can be out before the last.
        wait_until(lambda: find_metric(scrape(port, "/metrics")[1],
                                       "maild_processing_seconds_count") == 6, "all processed")
        status, text = scrape(port, "/metrics")
        assert status == 200
        assert metric(text, "maild_messages_fetched_total", 'mailbox="support"') == 6
        assert metric(text, "maild_messages_quarantined_total", 'mailbox="support"') == 1
        assert metric(text, "maild_tickets_created_total", 'department="",level="1"') == 5
        assert metric(text, "maild_imap_connected", 'mailbox="support"') == 1
        assert metric(text, "maild_outbox_depth") == 0
        assert metric(text, "maild_processing_seconds_count") == 6
        status, body = scrape(port, "/health")
        assert status == 200 and '"ok"' in body
        # The SMTP server goes away with mail waiting: health fails once sends are too old.
        smtp_server.stop()
        mail_user.append(customer_mail(subject="while SMTP is down"))
        wait_until(lambda: scrape(port, "/health")[0] == 503, "failing health")
        assert "outbox" in scrape(port, "/health")[1]
        assert metric(scrape(port, "/metrics")[1], "maild_outbox_depth") == 1
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=60)
        loop.close()
        app.dispose()


def test_several_mailboxes_with_their_own_defaults(
    tmp_path: Path, dovecot: Dovecot, smtp_server: SmtpServer, sqlite_url: str
) -> None:
    support, billing = dovecot.new_user(), dovecot.new_user()
    support.append(customer_mail(subject="Login"))
    billing.append(customer_mail(subject="Invoice"))
    config = write_config(tmp_path, db_url=sqlite_url, imap=support.imap_config(),
                          smtp={"host": smtp_server.host, "port": smtp_server.port,
                                "security": "none"})
    import yaml

    data = yaml.safe_load(config.read_text())
    data["mailboxes"].append({"name": "billing", "imap": billing.imap_config(),
                              "department": "accounting", "priority": "high"})
    config.write_text(yaml.safe_dump(data))
    run = subprocess.run([sys.executable, "-m", "maild", "-c", str(config), "run", "--once"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    engine = create_engine(sqlite_url)
    with engine.connect() as conn:
        rows = conn.execute(select(Ticket.subject, Ticket.mailbox, Ticket.department,
                                   Ticket.priority).order_by(Ticket.subject)).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("Invoice", "billing", "accounting", "high"),
                                        ("Login", "support", None, "normal")]
    assert support.count("INBOX") == billing.count("INBOX") == 0


def test_first_run_over_a_backlog_shows_progress(
    tmp_path: Path, mail_user: MailUser, sqlite_url: str
) -> None:
    mail_user.append_many([customer_mail(subject=f"Old {i}") for i in range(120)])
    config = write_config(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
                          mailbox={"batch_size": 25}, log_level="info")
    run = subprocess.run([sys.executable, "-m", "maild", "-c", str(config), "run", "--once"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    progress = [line for line in run.stderr.splitlines() if "imap.progress" in line]
    assert len(progress) == 5 and '"total": 120' in progress[-1]
    assert '"done": 120' in progress[-1]
