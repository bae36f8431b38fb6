"""The command line (INTERFACE.md). The only place that chooses exit codes:
0 success, 2 bad usage or invalid configuration, 1 any other failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maild import __version__
from maild.errors import ConfigError, MaildError

if TYPE_CHECKING:
    from maild.settings import Settings


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
    tlist.add_argument("--level", type=int, choices=[1, 2, 3, 4])
    tlist.add_argument("--department")
    tlist.add_argument("--assignee", metavar="ADDR")
    tlist.add_argument("--priority", choices=["low", "normal", "high", "urgent"])
    tlist.add_argument("--customer", metavar="ADDR",
                       help="the requester, or anyone who wrote into the ticket as customer")
    tlist.add_argument("--sla", choices=["breached", "due-today"],
                       help="breached: a target was missed; due-today: a due time it still "
                            "owes is today (the time zone of the SLA file's first calendar)")
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

    report = sub.add_parser("report", help="the KPI report (default: the last full week)")
    report.add_argument("--from", dest="start", metavar="DATE",
                        help="first day, YYYY-MM-DD (organisation's time zone)")
    span = report.add_mutually_exclusive_group()
    span.add_argument("--to", metavar="DATE", help="last day, included")
    span.add_argument("--period", choices=["day", "week", "month", "year"],
                      help="the one beginning --from, else the last full one")
    report.add_argument("--by", choices=["department", "level", "agent", "mailbox"],
                        default="department", help="the breakdown of the text, CSV and HTML")
    out = report.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--csv", action="store_true")
    out.add_argument("--html", type=Path, metavar="FILE", help="write a page with charts")
    _wishes_parser(sub)
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
    status = sub.add_parser("status", help="which daemon holds which mailbox; jobs' last runs")
    status.add_argument("--json", action="store_true")
    return p


def _wishes_parser(sub: Any) -> None:
    statuses = ["new", "under_review", "planned", "in_progress", "done", "rejected"]
    wishes = sub.add_parser("wishes", help="the feature-request register")
    wsub = wishes.add_subparsers(dest="wishes_command", required=True, parser_class=_Parser)
    wlist = wsub.add_parser("list", help="wishes with their counts; or, with --top or "
                                         "--since, a period's top wishes and changes")
    wlist.add_argument("--status", choices=statuses)
    wlist.add_argument("--department")
    wlist.add_argument("--sort", choices=["count", "recent"])
    wlist.add_argument("--top", type=int, metavar="N",
                       help="the N wishes most customers asked for in the period")
    wlist.add_argument("--since", metavar="DATE", help="period start (YYYY-MM-DD, UTC)")
    wlist.add_argument("--until", metavar="DATE", help="period end, inclusive")
    wlist.add_argument("--json", action="store_true")
    wshow = wsub.add_parser("show", help="one wish with its requests and history")
    wshow.add_argument("key")
    wshow.add_argument("--json", action="store_true")
    wset = wsub.add_parser("set", help="change a wish's status (and department)")
    wset.add_argument("key")
    wset.add_argument("--status", required=True, choices=statuses)
    wset.add_argument("--reason", help="required for rejected")
    wset.add_argument("--department")
    wset.add_argument("--by", help="who decides (default: the login name)")
    wset.add_argument("--json", action="store_true")
    wmerge = wsub.add_parser("merge", help="move KEY's requests to INTO; both histories kept")
    wmerge.add_argument("key")
    wmerge.add_argument("into")
    wmerge.add_argument("--by", help="who decides (default: the login name)")


def _settings(args: argparse.Namespace) -> Settings:
    from maild.settings import default_config_path, load_settings

    return load_settings(args.config or default_config_path())


def _emit(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def cmd_check(args: argparse.Namespace) -> int:
    from maild.configcheck import check_configuration

    settings = _settings(args)
    for line in check_configuration(settings):
        print(line)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio
    import gc

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
    # The read-only commands import only what they need (maild/readonly.py), not the daemon.
    from maild import readonly

    if args.tickets_command == "list":
        rows = readonly.ticket_list(settings, readonly.TicketFilter(
            status=args.status, level=args.level, department=args.department,
            assignee=args.assignee, priority=args.priority, customer=args.customer,
            sla=args.sla))
        if args.json:
            _emit(rows)
        elif rows:
            print(readonly.format_list(rows))
        return 0
    detail = readonly.ticket_detail(settings, args.ref)
    if detail is None:
        raise MaildError(f"no ticket {args.ref}")
    if args.json:
        _emit(detail)
    else:
        print(readonly.format_ticket(detail))
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


def cmd_report(args: argparse.Namespace) -> int:
    from maild.reports.command import Options, build, write_html
    from maild.reports.period import PeriodError, parse_day
    from maild.reports.render import to_csv, to_json, to_text

    try:
        options = Options(start=parse_day(args.start, "--from") if args.start else None,
                          to=parse_day(args.to, "--to") if args.to else None,
                          period=args.period, by=args.by)
    except PeriodError as exc:
        raise _Usage(str(exc)) from None
    try:
        report = build(_settings(args), options)
    except PeriodError as exc:
        raise _Usage(str(exc)) from None
    if args.json:
        _emit(to_json(report))
    elif args.csv:
        sys.stdout.write(to_csv(report))
    elif args.html:
        try:
            write_html(report, args.by, args.html)
        except OSError as exc:
            raise MaildError(f"--html {args.html}: {exc.strerror or exc}") from None
        print(f"wrote {args.html}", file=sys.stderr)
    else:
        sys.stdout.write(to_text(report, args.by))
    return 0


def cmd_wishes(args: argparse.Namespace) -> int:
    import getpass

    from maild.wishes import cli as wishes
    from maild.wishes import views

    settings = _settings(args)
    by = getattr(args, "by", None) or f"{getpass.getuser()} (command line)"
    try:
        if args.wishes_command == "list" and (args.top is not None or args.since):
            found = wishes.wish_period(settings, since=args.since, until=args.until,
                                       top=args.top or 10)
            print(json.dumps(found, indent=2, ensure_ascii=False) if args.json
                  else views.format_period(found))
        elif args.wishes_command == "list":
            rows = wishes.wish_list(settings, status=args.status, department=args.department,
                                    sort=args.sort)
            print(json.dumps(rows, indent=2, ensure_ascii=False) if args.json
                  else views.format_list(rows))
        elif args.wishes_command == "show":
            detail = wishes.wish_show(settings, args.key)
            print(json.dumps(detail, indent=2, ensure_ascii=False) if args.json
                  else views.format_detail(detail))
        elif args.wishes_command == "set":
            done = wishes.wish_set(settings, args.key, status=args.status, reason=args.reason,
                                   department=args.department, by=by)
            if args.json:
                _emit(done)
            else:
                print(f"{done['key']}: {done['status']}"
                      + (f" ({done['reason']})" if done["reason"] else "")
                      + ("" if done["changed"] else ", unchanged")
                      + (f"; {done['customers_told']} customers told" if done[
                          "customers_told"] else ""))
        else:
            merged = wishes.wish_merge(settings, args.key, args.into, by=by)
            print(f"{merged['merged']} merged into {merged['into']}")
    except wishes.BadInput as exc:
        changing = args.wishes_command in ("set", "merge")
        print(f"maild: error: {exc}" + ("; nothing was changed" if changing else ""),
              file=sys.stderr)
        return 2
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from maild import logs
    from maild.store import db

    settings = _settings(args)
    logs.configure("info")  # show each migration as it is applied
    db.migrate(settings.database.url)
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


def cmd_status(args: argparse.Namespace) -> int:
    from maild.cluster.status import format_status, status
    from maild.store import db

    settings = _settings(args)
    url = settings.database.url
    sqlite_file = None
    if url.startswith("sqlite:///"):
        sqlite_file = Path(url.removeprefix("sqlite:///"))
    with db.opened(url) as sessions, sessions() as session:
        found = status(session, [m.name for m in settings.mailboxes], sqlite_file)
    if args.json:
        _emit(found)
    else:
        print(format_status(found))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run, "check": cmd_check, "route": cmd_route, "tickets": cmd_tickets,
    "db": cmd_db, "demo": cmd_demo, "sla": cmd_sla, "status": cmd_status,
    "report": cmd_report,
    "wishes": cmd_wishes,
    "training": cmd_training, "answers": cmd_answers,
}


def _reads_only(args: argparse.Namespace) -> bool:
    """`check` and `tickets list/show`: they log nothing (maild/readonly.py configures the
    logs itself before it migrates a database), so they skip the logging set-up's imports."""
    return args.command == "check" or (
        args.command == "tickets" and args.tickets_command in ("list", "show"))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except _Usage as exc:
        print(f"maild: error: {exc}", file=sys.stderr)
        return 2
    if _reads_only(args):
        # maild uses no pydantic plugins: without this, pydantic reads the entry points of
        # every installed distribution when it builds the first model (settings), a tenth
        # of what a read-only command costs.
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    else:
        from maild import logs

        logs.configure("warning")  # stdout stays for --json output; `run` sets its own level
    try:
        return COMMANDS[args.command](args)
    except _Usage as exc:
        print(f"maild: error: {exc}", file=sys.stderr)
        return 2
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
