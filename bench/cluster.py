"""Several daemons on one PostgreSQL (issue 19): throughput with 1, 2 and 3 daemons over the
same backlog in four mailboxes, and the takeover time after a SIGKILL.

    .venv/bin/python -m bench.cluster                  # 2,000 messages, 1-3 daemons, 5 kills
    .venv/bin/python -m bench.cluster --n 500 --kills 3

For each daemon count, on a fresh PostgreSQL database and four fresh Dovecot users:

1. The backlog (bench/mailmix.py's mix, dealt round-robin over the four mailboxes) is
   appended to a `Staging` folder of each user (not timed).
2. The `maild run` processes start; once every mailbox is leased, each user's staged mail
   is moved into its INBOX at once (IMAP MOVE), and the clock starts.
3. It stops when every INBOX is empty: maild moves a message out only after its commit,
   so that is the moment all of it is committed. Committed messages per second, set
   against the single daemon's figure of the same run (the floor).

Then, with the most daemons, the holder of the first mailbox is killed (SIGKILL) `--kills`
times (restarted each time as a standby): the takeover time is the new lease's `since`
(the database's clock) minus the moment of the kill, against `cluster.lease_seconds`.
The bound is the lease plus one heartbeat of the daemon that takes over (a third of the
lease). On two cores the throughput cannot grow with more daemons: what it must not do is
drop.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, text

from bench.mailmix import build_mix
from maild.logs import configure
from maild.store import db
from tests.kit import write_config
from tests.servers.dovecot import Dovecot, MailUser
from tests.servers.postgres import PgDatabase
from tests.servers.smtp import SmtpServer

MAILBOXES = 4


def leases(engine: Engine) -> dict[str, tuple[int, datetime]]:
    """Mailbox -> (holder's pid, since)."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT l.mailbox, d.pid, l.since FROM mailbox_leases l "
            "JOIN daemons d ON d.id = l.daemon_id"))
        return {name: (int(pid), since) for name, pid, since in rows}


def wait(what: Any, timeout: float, about: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench.cluster: timed out waiting for {about}")
        time.sleep(0.05)


class Daemons:
    def __init__(self, config: Path, logs: Path) -> None:
        self.config, self.logs, self.procs = config, logs, list[subprocess.Popen[bytes]]()

    def start(self) -> subprocess.Popen[bytes]:
        with (self.logs / f"daemon-{len(self.procs)}.log").open("ab") as err:
            proc = subprocess.Popen([sys.executable, "-m", "maild", "-c", str(self.config),
                                     "run"], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def run(count: int, messages: list[bytes], dovecot: Dovecot, sink: SmtpServer, folder: Path,
        lease: float, kills: int) -> tuple[float, list[float]]:
    """Committed messages per second with `count` daemons; takeover times (s) of `kills`."""
    database = PgDatabase.create()
    engine = db.make_engine(database.url)
    work = folder / f"daemons-{count}"
    work.mkdir()
    config, users = config_for(work, database.url, dovecot, sink, lease, messages)
    daemons = Daemons(config, work)
    try:
        db.upgrade(engine)
        for _ in range(count):
            daemons.start()
        wait(lambda: len(leases(engine)) == MAILBOXES, 120, "every mailbox leased")
        start = time.monotonic()
        for user in users:
            with user.connect() as imap:
                imap.select_folder("Staging")
                imap.move(imap.search("ALL"), "INBOX")
        wait(lambda: all(u.count("INBOX") == 0 for u in users), 900, "the backlog")
        rate = len(messages) / (time.monotonic() - start)
        took = [takeover(daemons, engine, lease) for _ in range(kills)]
        return rate, took
    finally:
        daemons.stop()
        engine.dispose()
        database.drop()


def config_for(work: Path, url: str, dovecot: Dovecot, sink: SmtpServer, lease: float,
               messages: list[bytes]) -> tuple[Path, list[MailUser]]:
    """Four users with the backlog staged, and a configuration with one mailbox each."""
    users = [dovecot.new_user() for _ in range(MAILBOXES)]
    for i, user in enumerate(users):
        with user.connect() as imap:
            imap.create_folder("Staging")
        user.append_many(messages[i::MAILBOXES], "Staging")
    config = write_config(work, db_url=url, imap=users[0].imap_config(),
                          smtp={"host": sink.host, "port": sink.port, "security": "none"},
                          cluster={"lease_seconds": lease})
    document = yaml.safe_load(config.read_text())
    document["mailboxes"] = [{"name": f"box{i}", "imap": u.imap_config(), "folder": "INBOX"}
                             for i, u in enumerate(users)]
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    return config, users


def takeover(daemons: Daemons, engine: Engine, lease: float) -> float:
    """SIGKILL box0's holder; seconds until another daemon's lease on it began. The killed
    daemon is replaced by a new one (a standby) so the count of daemons stays."""
    pid, _ = leases(engine)["box0"]
    killed_at = datetime.now(UTC)
    os.killpg(pid, signal.SIGKILL)
    wait(lambda: leases(engine).get("box0", (pid, killed_at))[0] != pid, 10 * lease,
         "the takeover")
    since = leases(engine)["box0"][1]
    daemons.start()
    time.sleep(lease / 2)  # the newcomer registers before the next kill
    return (since - killed_at).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="messages in the backlog")
    parser.add_argument("--daemons", default="1,2,3", help="daemon counts to compare")
    parser.add_argument("--kills", type=int, default=5, help="takeovers measured")
    parser.add_argument("--lease", type=float, default=6.0, help="cluster.lease_seconds")
    args = parser.parse_args()
    configure("warning")  # the migrations of each fresh database are not news here
    counts = [int(c) for c in args.daemons.split(",")]
    messages = build_mix(args.n).messages
    load = os.getloadavg()[0]
    rates: dict[int, float] = {}
    took: list[float] = []
    with (Dovecot() as dovecot, SmtpServer() as sink,
          tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp):
        for count in counts:
            kills = args.kills if count == max(counts) and count > 1 else 0
            cpu = time.process_time()
            rates[count], found = run(count, messages, dovecot, sink, Path(tmp), args.lease,
                                      kills)
            took += found
            sink.clear()
            print(f"{count} daemon(s): {rates[count]:8.1f} committed messages/s "
                  f"(bench's own CPU {time.process_time() - cpu:.1f} s)", flush=True)
    floor = rates[counts[0]]
    print(f"\n{args.n} messages over {MAILBOXES} mailboxes, PostgreSQL, lease "
          f"{args.lease:g} s, load {load:.1f} at the start")
    print(f"{'daemons':>8} {'msg/s':>9} {'vs ' + str(counts[0]):>8}")
    for count in counts:
        print(f"{count:>8} {rates[count]:>9.1f} {rates[count] / floor:>7.2f}x")
    if took:
        bound = args.lease + args.lease / 3
        print(f"takeover after SIGKILL, {len(took)} kills: median "
              f"{statistics.median(took):.2f} s, max {max(took):.2f} s "
              f"(lease {args.lease:g} s; bound lease + one heartbeat = {bound:.1f} s; "
              f"median/lease {statistics.median(took) / args.lease:.2f})")
        print("  each: " + ", ".join(f"{t:.2f}" for t in took))


if __name__ == "__main__":
    main()
