"""The command line (INTERFACE.md). The only place that chooses exit codes:
0 success, 2 bad usage or invalid configuration, 1 any other failure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from maild import __version__
from maild.errors import ConfigError, MaildError
from maild.settings import Settings, default_config_path, load_settings


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own usage errors exit 2 as well
        self.print_usage(sys.stderr)
        raise _Usage(message)


class _Usage(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="maild", description="A support mailbox as a tiered support desk.")
    p.add_argument("-c", "--config", type=Path, default=None,
                   help="configuration file (default: $MAILD_CONFIG or ./config/maild.yaml)")
    p.add_argument("--version", action="version", version=f"maild {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="the daemon (IMAP IDLE, outbox sender, scheduled jobs)")
    run.add_argument("--once", action="store_true",
                     help="process what is there now, try due mail once, then exit")
    sub.add_parser("check", help="validate configuration and templates; touch no server")
    route = sub.add_parser("route", help="dry run: how a message would be routed")
    route.add_argument("file", type=Path)
    route.add_argument("--json", action="store_true")

    tickets = sub.add_parser("tickets", help="list and show tickets")
    tsub = tickets.add_subparsers(dest="tickets_command", required=True, parser_class=_Parser)
    tlist = tsub.add_parser("list", help="tickets, newest first")
    tlist.add_argument("--status", choices=["new", "open", "waiting_customer", "resolved",
                                            "closed"])
    tlist.add_argument("--json", action="store_true")
    tshow = tsub.add_parser("show", help="one ticket with its messages and events")
    tshow.add_argument("ref", help="the ticket number or reference")
    tshow.add_argument("--json", action="store_true")

    topen = tsub.add_parser("open", help="intake: open a ticket on a caller's behalf")
    topen.add_argument("--customer", required=True, help="the caller's email address")
    topen.add_argument("--subject", required=True)
    topen.add_argument("--level", type=int, choices=[1, 2, 3, 4])
    topen.add_argument("--department")
    topen.add_argument("--body-file", type=Path, help="the call notes (default: none)")
    topen.add_argument("--json", action="store_true")

    sla = sub.add_parser("sla", help="service level agreements")
    ssub = sla.add_subparsers(dest="sla_command", required=True, parser_class=_Parser)
    scheck = ssub.add_parser("check", help="one SLA pass now; prints what it raised")
    scheck.add_argument("--json", action="store_true")

    answers = sub.add_parser("answers", help="canned answers: shipped, and accepted from "
                             "solutions")
    asub = answers.add_subparsers(dest="answers_command", required=True, parser_class=_Parser)
    alist = asub.add_parser("list", help="names, languages, first lines, uses in 90 days")
    alist.add_argument("--json", action="store_true")
    ashow = asub.add_parser("show", help="one canned answer's text in each language")
    ashow.add_argument("name")
    ashow.add_argument("--json", action="store_true")
    aexport = asub.add_parser("export", help="write every canned answer's template files "
                              "into DIR")
    aexport.add_argument("dir", type=Path)

    training = sub.add_parser("training", help="per trainee: drafts approved, edited, "
                              "rejected, waiting, and the time they waited for review")
    training.add_argument("--json", action="store_true")

    dbp = sub.add_parser("db", help="database maintenance")
    dsub = dbp.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
    dsub.add_parser("upgrade", help="apply database migrations")
    sub.add_parser("demo", help="a self-contained demo on loopback servers")
    return p


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config or default_config_path())


def _emit(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def cmd_check(args: argparse.Namespace) -> int:
    from maild.commands import check_configuration

    settings = _settings(args)
    for line in check_configuration(settings):
        print(line)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from maild import daemon, logs
    from maild.app import build

    settings = _settings(args)
    logs.configure(settings.log_level)
    app = build(settings)
    # What start-up left (imports, templates, rules) lives as long as the daemon: moved out
    # of the collector's way, a full collection no longer walks it (~100 ms each).
    gc.freeze()
    try:
        if args.once:
            summary = daemon.run_once(app)
            for name, c in summary.mailboxes.items():
                print(f"{name}: {c.fetched} fetched, {c.tickets_created} new tickets, "
                      f"{c.held} quarantined, {c.queued} queued", file=sys.stderr)
            if summary.sla:
                print(f"sla: {len(summary.sla)} warnings and breaches raised", file=sys.stderr)
            o = summary.outbox
            print(f"outbox: {o.sent} sent, {o.retried} deferred, {o.failed} failed"
                  + (f", SMTP unreachable: {o.error}" if o.unreachable else ""),
                  file=sys.stderr)
        else:
            asyncio.run(daemon.run_forever(app))
    finally:
        app.dispose()
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    from maild.commands import route

    result = route(_settings(args), args.file)
    if args.json:
        _emit(result)
    else:
        print(f"matched:    {', '.join(result['matched']) or '(no rule; defaults)'}")
        print(f"level:      {result['level']}")
        print(f"department: {result['department'] or '-'}")
        print(f"priority:   {result['priority']}")
        print(f"template:   {result['template']}")
        ack = result["acknowledgement"]
        if ack:
            print(f"\nSubject: {ack['subject']}\n\n{ack['body']}")
        else:
            print("\n(no acknowledgement: " + ", ".join(result["automatic"]) + ")")
    return 0


def cmd_tickets(args: argparse.Namespace) -> int:
    from maild.commands import ticket_detail, ticket_list

    settings = _settings(args)
    if args.tickets_command == "open":
        from maild.commands import open_ticket

        try:
            body = args.body_file.read_text(encoding="utf-8") if args.body_file else ""
        except OSError as exc:
            raise ConfigError(f"--body-file: {exc}") from None
        opened = open_ticket(settings, customer=args.customer, subject=args.subject,
                             level=args.level, department=args.department, body=body)
        if args.json:
            _emit(opened)
        else:
            print(f"opened {opened['ref']} (#{opened['id']}); acknowledgement "
                  + ("sent" if opened["acknowledgement_sent"] else "queued"))
        return 0
    if args.tickets_command == "list":
        rows = ticket_list(settings, args.status)
        if args.json:
            _emit(rows)
        else:
            for t in rows:
                print(f"{t['id']:>6}  {t['ref']:<10} {t['status']:<16} L{t['level']} "
                      f"{t['priority']:<7} {t['requester']:<32} {t['subject'][:60]}")
        return 0
    detail = ticket_detail(settings, args.ref)
    if detail is None:
        raise MaildError(f"no ticket {args.ref}")
    if args.json:
        _emit(detail)
    else:
        from maild.commands import format_ticket

        print(format_ticket(detail))
    return 0


def cmd_answers(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from maild.knowledge.catalogue import catalogue
    from maild.outbound.render import Templates
    from maild.store import db

    settings = _settings(args)
    with db.opened(settings.database.url) as sessions, sessions() as session:
        entries = catalogue(Templates(settings.templates), session, datetime.now(UTC))
    if args.answers_command == "list":
        if args.json:
            _emit([{"name": a.name, "languages": list(a.languages), "subject": a.subject,
                    "first_line": a.first_line, "uses": a.uses} for a in entries])
        else:
            for a in entries:
                print(f"{a.name:<24} {','.join(a.languages):<6} {a.uses:>5}  {a.first_line[:60]}")
        return 0
    if args.answers_command == "show":
        found = next((a for a in entries if a.name == args.name), None)
        if found is None:
            raise MaildError(f"no canned answer {args.name}")
        if args.json:
            _emit({"name": found.name, "uses": found.uses, "texts": found.texts})
        else:
            for lang, text in sorted(found.texts.items()):
                print(f"== {found.name}.{lang}.txt\n{text}")
        return 0
    try:
        args.dir.mkdir(parents=True, exist_ok=True)
        for a in entries:
            for lang, text in a.texts.items():
                (args.dir / f"{a.name}.{lang}.txt").write_text(text, encoding="utf-8")
    except OSError as exc:
        raise MaildError(f"export to {args.dir}: {exc}") from None
    print(f"{sum(len(a.texts) for a in entries)} files of {len(entries)} canned answers "
          f"written to {args.dir}")
    return 0


def cmd_training(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from maild.store import db
    from maild.training.counts import trainee_counts

    settings = _settings(args)
    with db.opened(settings.database.url) as sessions, sessions() as session:
        rows = trainee_counts(session, datetime.now(UTC))
    if args.json:
        _emit([r.as_json() for r in rows])
        return 0
    print(f"{'trainee':<32} {'approved':>8} {'edited':>6} {'rejected':>8} {'waiting':>7} "
          f"{'waited':>8}")
    for r in rows:
        print(f"{r.trainee:<32} {r.approved:>8} {r.edited:>6} {r.rejected:>8} "
              f"{r.waiting:>7} {r.waited_seconds / 3600:>7.1f}h")
    return 0


def cmd_sla(args: argparse.Namespace) -> int:
    from maild.commands import sla_check

    raised = sla_check(_settings(args))
    if args.json:
        _emit(raised)
    else:
        for r in raised:
            print(f"{r['kind']:<6} {r['ticket']:<10} {r['target']:<15} due {r['due']}  "
                  f"policy {r['policy']}  {' '.join(r['actions'])}")
        print(f"{len(raised)} raised", file=sys.stderr)
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from maild import logs
    from maild.store import db

    settings = _settings(args)
    logs.configure("info")  # show each migration as it is applied
    with db.opened(settings.database.url):
        pass  # opening migrates
    print("database is up to date", file=sys.stderr)
    return 0


# What `maild demo` needs beyond maild itself: the `demo` extra (proxyprotocol comes with
# pymap).
_DEMO_PACKAGES = frozenset({"aiosmtpd", "pymap", "proxyprotocol"})


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from maild.demo import run_demo
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in _DEMO_PACKAGES:
            raise
        raise MaildError(
            "the demo's mail servers are not installed: pip install 'maild[demo]'"
        ) from None
    return run_demo()


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run, "check": cmd_check, "route": cmd_route, "tickets": cmd_tickets,
    "db": cmd_db, "demo": cmd_demo, "sla": cmd_sla, "training": cmd_training,
    "answers": cmd_answers,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except _Usage as exc:
        print(f"maild: error: {exc}", file=sys.stderr)
        return 2
    from maild import logs

    logs.configure("warning")  # stdout stays for --json output; `run` sets its own level
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"maild: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except MaildError as exc:
        print(f"maild: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - last resort: one line, exit 1
        print(f"maild: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
