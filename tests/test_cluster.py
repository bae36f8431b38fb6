"""Several daemons on one PostgreSQL (maild/cluster): mailbox leases, fencing, takeover,
`maild status`, and SQLite's one daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, text

from maild.cluster.leases import Identity, LeaseLost, Leases
from maild.store import db
from tests.kit import customer_mail, message_id_of, write_config
from tests.servers.dovecot import Dovecot, MailUser
from tests.servers.smtp import SmtpServer


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.dispose()


def daemon_leases(engines: list[Engine], url: str, name: str, ttl: float = 1.0) -> Leases:
    engines.append(db.make_engine(url))
    return Leases(db.make_session_factory(engines[-1]),
                  Identity(name, 1, datetime.now(UTC)), ["a", "b"], ttl=ttl)


def test_leases_spread_expire_fence_and_are_not_taken_back(
    pg_url: str, engines: list[Engine]
) -> None:
    first, second = (daemon_leases(engines, pg_url, "one", ttl=2.0),
                     daemon_leases(engines, pg_url, "two", ttl=2.0))
    db.upgrade(engines[0])
    # Started together: for a lease period they only register; then they share.
    assert first.beat() == frozenset() and second.beat() == frozenset()
    time.sleep(0.7)
    held = [first.beat(), second.beat()]
    assert sorted(held[0] | held[1]) == ["a", "b"] and len(held[0]) == len(held[1]) == 1
    mine = next(iter(held[0]))
    with first.sessions() as session, session.begin():
        first.fence(session, mine)  # holds: no error
    # The first daemon stops beating (killed, hung): after the lease, the second takes
    # over its mailbox, and the first's commit is fenced off.
    time.sleep(2.2)
    assert second.beat() == frozenset({"a", "b"})
    with first.sessions() as session, session.begin(), pytest.raises(LeaseLost):
        first.fence(session, mine)
    # It comes back: it takes nothing from the live holder.
    assert first.beat() == frozenset()
    assert second.beat() == frozenset({"a", "b"})
    # A clean stop frees the mailboxes at once.
    second.release()
    assert first.beat() == frozenset({"a", "b"})


def test_a_heartbeat_without_the_database_holds_nothing(
    pg_url: str, engines: list[Engine]
) -> None:
    leases = daemon_leases(engines, pg_url, "one", ttl=1)
    db.upgrade(engines[0])
    leases.beat()
    time.sleep(0.4)
    assert leases.beat() == frozenset({"a", "b"})
    engines.append(db.make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    broken = Leases(db.make_session_factory(engines[-1]), leases.me, ["a", "b"], ttl=30)
    broken._held = {"a", "b"}
    assert broken.beat() == frozenset() and not broken.holds("a")


def test_a_second_daemon_on_one_sqlite_file_refuses_to_start(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, sqlite_url: str
) -> None:
    config = write_config(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
                          smtp={"host": smtp_server.host, "port": smtp_server.port,
                                "security": "none"})
    first = subprocess.Popen([sys.executable, "-m", "maild", "-c", str(config), "run"],
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            out = subprocess.run([sys.executable, "-m", "maild", "-c", str(config), "status",
                                  "--json"], capture_output=True, text=True, timeout=60,
                                 check=True)
            status = json.loads(out.stdout)
            if status["daemons"]:
                break
            time.sleep(0.3)
        assert status["daemons"] and status["mailboxes"][0]["holder"]["pid"] == first.pid
        second = subprocess.run([sys.executable, "-m", "maild", "-c", str(config), "run"],
                                capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 1
        assert f"another maild daemon (pid {first.pid})" in second.stderr
        assert "PostgreSQL" in second.stderr
    finally:
        first.terminate()
        first.wait(timeout=60)


class Daemons:
    """`maild run` processes on one configuration, each in a process group of its own."""

    def __init__(self, config: Path, logs: Path) -> None:
        self.config, self.logs = config, logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        with (self.logs / f"daemon-{len(self.procs)}.log").open("ab") as err:
            proc = subprocess.Popen([sys.executable, "-m", "maild", "-c", str(self.config),
                                     "run"], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def status(self) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-m", "maild", "-c", str(self.config), "status",
                              "--json"], capture_output=True, timeout=60, check=True)
        found: dict[str, Any] = json.loads(out.stdout)
        return found

    def holder(self, mailbox: str) -> int | None:
        return self.lease(mailbox)[0]

    def lease(self, mailbox: str) -> tuple[int | None, datetime | None]:
        """The pid holding `mailbox`, and since when (the database's time)."""
        for m in self.status()["mailboxes"]:
            if m["name"] == mailbox and m["holder"]:
                return int(m["holder"]["pid"]), datetime.fromisoformat(m["since"])
        return None, None

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_for(what: Callable[[], bool], timeout: float = 90.0, about: str = "") -> float:
    """Seconds until `what()` holds (fails the test after `timeout`)."""
    start = time.monotonic()
    while not what():
        assert time.monotonic() - start < timeout, f"timed out waiting for {about}"
        time.sleep(0.2)
    return time.monotonic() - start


@pytest.mark.slow
def test_three_daemons_share_two_mailboxes_and_take_over(
    tmp_path: Path, dovecot: Dovecot, smtp_server: SmtpServer, pg_url: str
) -> None:
    lease = 6.0
    users = [dovecot.new_user() for _ in range(2)]
    config = write_config(tmp_path, db_url=pg_url, imap=users[0].imap_config(),
                          smtp={"host": smtp_server.host, "port": smtp_server.port,
                                "security": "none"}, cluster={"lease_seconds": lease})
    document = yaml.safe_load(config.read_text())
    document["mailboxes"] = [{"name": f"box{i}", "imap": u.imap_config(), "folder": "INBOX"}
                             for i, u in enumerate(users)]
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    engine = db.make_engine(pg_url)
    db.upgrade(engine)
    sent: list[str] = []

    def deliver(n: int) -> None:
        for user in users:
            for _ in range(n):
                raw = customer_mail(sender=f"c{len(sent)}@example.com",
                                    subject=f"Question {len(sent)}")
                sent.append(message_id_of(raw))
                user.append(raw)

    def tickets() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM tickets")).scalar_one())

    def acknowledged() -> Counter[str]:
        return Counter(str(m.message["In-Reply-To"]) for m in smtp_server.messages
                       if m.message["In-Reply-To"])

    daemons = Daemons(config, tmp_path)
    try:
        for _ in range(3):
            daemons.start()
        deliver(3)
        wait_for(lambda: tickets() >= len(sent), about="tickets")
        assert tickets() == len(sent)
        holders = {daemons.holder("box0"), daemons.holder("box1")}
        assert None not in holders and len(holders) == 2  # spread over two daemons
        pids = {p.pid for p in daemons.procs}
        assert holders <= pids

        # SIGKILL the holder of box0: another daemon takes it over within the bound.
        killed = daemons.holder("box0")
        assert killed is not None
        killed_at = datetime.now(UTC)
        os.killpg(killed, signal.SIGKILL)
        wait_for(lambda: daemons.holder("box0") not in (None, killed))
        took = (daemons.lease("box0")[1] - killed_at).total_seconds()  # type: ignore[operator]
        deliver(3)
        wait_for(lambda: tickets() >= len(sent), about="tickets")
        assert tickets() == len(sent)
        # The bound: the lease, plus one heartbeat of the daemon that takes over.
        assert took <= lease + lease / 3 + 0.5, took

        # SIGSTOP (a hung machine) the holder of box1, later SIGCONT: it has lost the
        # lease and writes nothing of what it had in hand.
        hung = daemons.holder("box1")
        assert hung is not None and hung != killed
        hung_at = datetime.now(UTC)
        os.killpg(hung, signal.SIGSTOP)
        wait_for(lambda: daemons.holder("box1") not in (None, hung))
        hung_took = (daemons.lease("box1")[1] - hung_at).total_seconds()  # type: ignore[operator]
        deliver(3)
        wait_for(lambda: tickets() >= len(sent), about="tickets")
        assert tickets() == len(sent)
        os.killpg(hung, signal.SIGCONT)
        deliver(2)
        wait_for(lambda: tickets() >= len(sent), about="tickets")
        assert tickets() == len(sent)
        assert hung_took <= lease + lease / 3 + 0.5, hung_took

        # Every daemon's database connections cut: they see it, and go on.
        with engine.connect() as conn:
            cut = conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar_one()
        assert cut > 0
        deliver(2)
        wait_for(lambda: tickets() >= len(sent), about="tickets")
        assert tickets() == len(sent)
        wait_for(lambda: sum(acknowledged()[m] for m in sent) >= len(sent),
                 about=f"acknowledgements {sum(acknowledged()[m] for m in sent)}")
        time.sleep(lease)  # anything sent twice would have arrived by now
        acks = acknowledged()
        assert all(acks[m] == 1 for m in sent), [m for m in sent if acks[m] != 1]
        with engine.connect() as conn:
            per_message = conn.execute(text(
                "SELECT count(DISTINCT ticket_id), count(*) FROM messages "
                "WHERE direction = 'inbound'")).one()
        assert tuple(per_message) == (len(sent), len(sent))  # each message one ticket
        logs = "".join(p.read_text() for p in tmp_path.glob("daemon-*.log"))
        assert "lease.lost" in logs or "lease.stopped_working" in logs
        assert "db.connection_lost" in logs  # the cut was seen (and the pool reconnected)
    finally:
        daemons.stop()
        engine.dispose()


def test_health_reports_a_lost_database_and_the_daemon_stops_until_it_is_back(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, pg_url: str
) -> None:
    from tests.servers.dovecot import free_port
    from tests.servers.postgres import outage
    from tests.test_operations import metric, scrape

    port = free_port()
    config = write_config(tmp_path, db_url=pg_url, imap=mail_user.imap_config(),
                          smtp={"host": smtp_server.host, "port": smtp_server.port,
                                "security": "none"}, cluster={"lease_seconds": 3},
                          http={"port": port, "max_poll_age": 600})
    engine = db.make_engine(pg_url)
    db.upgrade(engine)

    def tickets() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM tickets")).scalar_one())

    def health() -> tuple[int, dict[str, Any]]:
        try:
            status, body = scrape(port, "/health")
        except OSError:
            return 0, {}
        return status, json.loads(body)

    daemons = Daemons(config, tmp_path)
    try:
        daemons.start()
        wait_for(lambda: health()[1].get("mailboxes_held") == ["support"], about="the lease")
        assert health() == (200, {"status": "ok", "problems": [], "database": "up",
                                  "mailboxes_held": ["support"]})
        mail_user.append(customer_mail(sender="c1@example.com", subject="Before"))
        wait_for(lambda: tickets() == 1, about="the first ticket")
        engine.dispose()
        with outage(pg_url) as terminated:
            assert terminated > 0  # the daemon's connections were cut
            wait_for(lambda: health()[0] == 503, about="failing health")
            body = health()[1]
            assert body["database"] == "down" and body["mailboxes_held"] == []
            assert any(p.startswith("database: unreachable") for p in body["problems"])
            assert metric(scrape(port, "/metrics")[1], "maild_database_up") == 0
            assert metric(scrape(port, "/metrics")[1], "maild_mailbox_lease_held",
                          'mailbox="support"') == 0
            # Mail arriving now stays in the mailbox: nothing is worked without the database.
            mail_user.append(customer_mail(sender="c2@example.com", subject="During"))
            time.sleep(3)
            assert mail_user.count("INBOX") == 1
        wait_for(lambda: health()[0] == 200, about="health back")
        wait_for(lambda: tickets() == 2, about="the second ticket")
        assert metric(scrape(port, "/metrics")[1], "maild_database_up") == 1
        logs = (tmp_path / "daemon-0.log").read_text()
        assert "lease.heartbeat_failed" in logs
    finally:
        daemons.stop()
        engine.dispose()
