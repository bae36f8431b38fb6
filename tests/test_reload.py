"""SIGHUP on a running daemon: a valid rule file replaces the old one at once; an invalid one
is refused, the error (file and line) logged, and the old rules stay. SIGTERM exits 0."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, select

from maild.store.models import Ticket
from tests.kit import customer_mail, write_config
from tests.servers.dovecot import MailUser
from tests.servers.smtp import SmtpServer

V1 = ("rules:\n  - name: first\n    when: {subject: {contains: alpha}}\n"
      "    then: {priority: low}\n")
V2 = ("rules:\n  - name: second\n    when: {subject: {contains: beta}}\n"
      "    then: {priority: urgent}\n")
BROKEN = "rules:\n  - name: broken\n    when: {subject: {regex: '(beta'}}\n"


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_sighup_reloads_valid_rules_and_keeps_old_on_error(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, sqlite_url: str
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(V1, encoding="utf-8")
    config = write_config(
        tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(), rules="rules.yaml",
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"})
    log = tmp_path / "daemon.log"
    engine = create_engine(sqlite_url)

    def priority_of(subject: str) -> str | None:
        with engine.connect() as conn:
            return conn.scalar(select(Ticket.priority).where(Ticket.subject == subject))

    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "maild", "-c", str(config), "run"],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_until(lambda: "daemon.started" in log.read_text(), "start")
        mail_user.append(customer_mail(subject="beta one"))
        wait_until(lambda: priority_of("beta one") is not None, "first ticket")
        assert priority_of("beta one") == "normal"

        rules.write_text(V2, encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "config.reloaded" in log.read_text(), "reload")
        mail_user.append(customer_mail(subject="beta two"))
        wait_until(lambda: priority_of("beta two") is not None, "second ticket")
        assert priority_of("beta two") == "urgent"

        rules.write_text(BROKEN, encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "config.reload_failed" in log.read_text(), "refused reload")
        assert f"{rules}:3" in log.read_text()
        mail_user.append(customer_mail(subject="beta three"))
        wait_until(lambda: priority_of("beta three") is not None, "third ticket")
        assert priority_of("beta three") == "urgent"  # the old rules still apply
        assert proc.poll() is None
        assert log.read_text().count("imap.connected") == 1  # reloads kept the connection
        smtp_server.wait_for(3)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        engine.dispose()
    assert code == 0
