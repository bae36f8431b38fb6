"""Routing rules: loading errors with file/rule/key/line, and matching as tables of cases."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.clock import FixedClock
from maild.domain import Inbound
from maild.errors import ConfigError
from maild.pipeline.parse import parse
from maild.rules.engine import RuleEngine, RuleSet
from maild.rules.loader import load_rules
from tests.kit import customer_mail

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
MONDAY_10 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 10:00 in Berlin
SUNDAY = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text,line,needle", [
    ("rules:\n  - name: a\n    when: {subject: x}\n  - name: a\n    when: {body: y}\n",
     4, "duplicate rule name 'a'"),
    ("rules:\n  - name: bad-regex\n    when:\n      subject: {regex: '(unclosed'}\n",
     4, "rule 'bad-regex': invalid regular expression"),
    ("rules:\n  - name: r\n    then: {department: marketing}\n",
     3, "rule 'r': unknown department 'marketing'"),
    ("rules:\n  - name: r\n    when: {subjekt: x}\n", 3,
     "rule 'r': unknown key (a condition is one of: all, any, not, from"),
    ("rules:\n  - name: r\n    when: {subject: x, body: y}\n", 3, "got subject, body"),
    ("rules:\n  - name: r\n    then: {notify: [nobody]}\n", 3, "unknown team 'nobody'"),
    ("rules:\n  - name: r\n    then: {level: 7}\n", 3, "less than or equal to 4"),
    ("levels:\n  1: {name: x, teem: a@b.c}\n", 2, "unknown key"),
    ("calendars:\n  office:\n    timezone: Mars/Olympus\n    hours: {mon: ['08:00-17:00']}\n",
     2, "unknown time zone"),
    ("calendars:\n  office:\n    hours: {mon: ['08:00-12:00', '11:00-13:00']}\n",
     2, "overlap"),
    ("business_hours: office\n", 1, "no calendar named 'office'"),
    ("rules:\n  - name: r\n    when: {business_hours: true}\n", 3,
     "business_hours needs a calendar"),
    ("agents:\n  - {address: a@b.c, name: A, level: 1, departments: [nope]}\n", 2,
     "unknown department 'nope'"),
    ("rules: [unclosed\n", 2, "invalid YAML"),
])
def test_invalid_rules_name_file_rule_key_and_line(
    tmp_path: Path, text: str, line: int, needle: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_rules(path)
    assert err.value.file == str(path)
    assert err.value.line == line, str(err.value)
    assert needle in str(err.value)


def shipped(clock_at: datetime = MONDAY_10) -> RuleEngine:
    return RuleEngine(load_rules(ROOT / "config" / "rules.yaml"), FixedClock(clock_at))


def inbound(**kwargs: object) -> Inbound:
    return parse(customer_mail(**kwargs), None)  # type: ignore[arg-type]


# (case, mail, expected level, department, priority, matched rules, answer)
CASES = [
    ("password reset, English",
     {"subject": "Forgot my password", "body": "Hi, I forgot my password, please reset it."},
     1, "customer_service", "normal", ["password-reset"], "password_reset"),
    ("password reset, German",
     {"subject": "Passwort vergessen",
      "body": "Hallo, ich habe mein Passwort vergessen. Können Sie mir helfen?"},
     1, "customer_service", "normal", ["password-reset"], "password_reset"),
    ("invoice question, German",
     {"subject": "Frage zu meiner Rechnung", "body": "Der Betrag ist zu hoch."},
     1, "accounting", "normal", ["invoices"], None),
    ("cancellation, German",
     {"subject": "Kündigung meines Vertrags", "body": "Hiermit kündige ich zum Monatsende."},
     2, "contracts", "normal", ["cancellations"], None),
    ("outage, English",
     {"subject": "Urgent", "body": "Our shop is down since 9 o'clock."},
     2, "technical", "high", ["outages"], None),
    ("outage, German",
     {"subject": "Dringend", "body": "Unsere Seite ist seit heute früh nicht erreichbar."},
     2, "technical", "high", ["outages"], None),
    ("premium customer adds priority and goes on",
     {"sender": "boss@bigcorp.example", "subject": "A question", "body": "Just asking."},
     1, "customer_service", "high", ["premium-customers"], None),
    ("premium and invoice: first match wins over later rules",
     {"sender": "vip@example.org", "subject": "Invoice 4711", "body": "Wrong amount."},
     1, "accounting", "normal", ["invoices"], None),
    ("nothing matches: the default",
     {"subject": "Hello", "body": "Some question about your product."},
     1, "customer_service", "normal", [], None),
    ("management channel bypasses the rules",
     {"to": "management@example.test", "subject": "Rechnung", "body": "Beschwerde"},
     2, "management", "high", ["management channel"], None),
]


@pytest.mark.parametrize("case,mail,level,department,priority,matched,answer", CASES,
                         ids=[c[0] for c in CASES])
def test_shipped_rules_route_as_expected(
    case: str, mail: dict[str, object], level: int, department: str, priority: str,
    matched: list[str], answer: str | None,
) -> None:
    result = shipped().classify(inbound(**mail))
    assert (result.level, result.department, result.priority) == (level, department, priority)
    assert list(result.matched) == matched
    assert result.answer == answer
    if matched and matched != ["management channel"]:
        # every rule up to the deciding one is recorded, hit or miss
        names = [h.name for h in result.hits]
        assert names[: names.index(matched[-1]) + 1] == names[: len(result.hits)][
            : names.index(matched[-1]) + 1]


def test_business_hours_and_tags_accumulate_with_continue() -> None:
    mail = {"sender": "boss@bigcorp.example", "subject": "A question", "body": "Hi"}
    weekday = shipped(MONDAY_10).classify(inbound(**mail))
    weekend = shipped(SUNDAY).classify(inbound(**mail))
    assert weekday.tags == ("premium",)
    assert weekend.tags == ("premium", "after-hours")
    assert weekend.matched == ("premium-customers", "after-hours")


def ruleset(tmp_path: Path, text: str) -> RuleSet:
    return load_rules(write(tmp_path, text))


def test_matchers_and_combinators(tmp_path: Path) -> None:
    rules = ruleset(tmp_path, """
rules:
  - name: header-and-domain
    when:
      all:
        - header: {name: X-Mailer, contains: outlook}
        - from_domain: [example.com, example.net]
    then: {tags: [a]}
  - name: case-sensitive
    when: {subject: {equals: URGENT, case_sensitive: true}}
    then: {priority: urgent}
  - name: attachment
    when: {attachment_type: {regex: "^application/pdf$"}}
    then: {department: accounting}
  - name: german
    when: {language: de}
    then: {tags: [de]}
""")
    engine = RuleEngine(rules, FixedClock())
    outlook = inbound(headers={"X-Mailer": "Microsoft Outlook 16.0"})
    assert engine.classify(outlook).matched == ("header-and-domain",)
    assert engine.classify(inbound(subject="URGENT")).priority == "urgent"
    assert engine.classify(inbound(subject="urgent")).priority == "normal"
    german = inbound(subject="Hallo", body="Ich habe eine Frage zu meinem Vertrag, bitte "
                                            "rufen Sie mich an. Vielen Dank und Grüße")
    assert engine.classify(german).matched == ("german",)


def _files(folder: str) -> list[Path]:
    return sorted(p for p in (CORPUS / folder).iterdir() if p.is_file())


def test_corpus_list_mail_routes_by_header(tmp_path: Path) -> None:
    """Real mailing-list mail: the List-Id rule matches exactly the linux-can messages."""
    rules = ruleset(tmp_path, """
rules:
  - name: can-bus
    when: {header: {name: List-Id, contains: linux-can.vger.kernel.org}}
    then: {department: technical, level: 2}
  - name: german-mail
    when: {language: de}
    then: {department: customer_service}
""")
    engine = RuleEngine(rules, FixedClock())
    can = [parse(p.read_bytes(), None) for p in _files("i18n/linux-can")]
    iscsi = [parse(p.read_bytes(), None) for p in _files("i18n/open-iscsi")]
    assert all(engine.classify(m).matched == ("can-bus",) for m in can)
    assert all("can-bus" not in engine.classify(m).matched for m in iscsi)
    german = [parse(p.read_bytes(), None) for p in _files("i18n/rt")
              if p.name.startswith("8859-15")]
    assert german and all(engine.classify(m).department == "customer_service" for m in german)


def test_every_corpus_message_classifies_with_the_shipped_rules() -> None:
    engine = shipped()
    files = [p for folder in ("threads/notmuch-default", "i18n/linux-can", "malformed/enmime")
             for p in _files(folder)]
    for path in files:
        try:
            message = parse(path.read_bytes(), None)
        except ValueError:
            continue  # unparseable mail is the runner's business (quarantine)
        result = engine.classify(message)
        assert result.level in (1, 2, 3, 4), path
        assert len(result.hits) >= 1 or result.department == "management", path


def test_route_command_explains_and_changes_nothing(tmp_path: Path) -> None:
    import json
    import shutil
    import subprocess
    import sys

    for name in ("maild.yaml", "rules.yaml", "sla.yaml"):
        shutil.copy(ROOT / "config" / name, tmp_path / name)
    mail = tmp_path / "mail.eml"
    mail.write_bytes(customer_mail(subject="Frage zu meiner Rechnung",
                                   body="Guten Tag, die Rechnung ist zu hoch. Mit freundlichen "
                                        "Grüßen und vielen Dank"))
    run = subprocess.run([sys.executable, "-m", "maild", "-c", str(tmp_path / "maild.yaml"),
                          "route", str(mail), "--json"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["matched"] == ["invoices"]
    assert (out["level"], out["department"], out["priority"]) == (1, "accounting", "normal")
    assert out["template"] == "acknowledgement"
    assert out["acknowledgement"]["subject"].endswith("Frage zu meiner Rechnung")
    assert "vielen Dank" in out["acknowledgement"]["body"]
    assert {r["name"]: r["matched"] for r in out["rules"]}["password-reset"] is False
    assert not (tmp_path / "maild.db").exists()  # a dry run touches no database
    text = subprocess.run([sys.executable, "-m", "maild", "-c", str(tmp_path / "maild.yaml"),
                           "route", str(mail)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert text.returncode == 0 and "accounting" in text.stdout


def test_route_detects_among_the_template_languages_as_the_daemon_does(tmp_path: Path
                                                                       ) -> None:
    """An admin who adds Spanish templates gets Spanish customers answered in Spanish by
    the daemon: the dry run must say so too."""
    import json
    import shutil
    import subprocess
    import sys

    for name in ("maild.yaml", "rules.yaml", "sla.yaml"):
        shutil.copy(ROOT / "config" / name, tmp_path / name)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "acknowledgement.es.txt").write_text(
        "Subject: [{{ ticket.ref }}] {{ ticket.subject }}\n\nHola, hemos recibido su "
        "mensaje.\n")
    with (tmp_path / "maild.yaml").open("a") as config:
        config.write("\ntemplates: templates/\n")
    mail = tmp_path / "mail.eml"
    mail.write_bytes(customer_mail(
        subject="Problema con mi factura",
        body="Buenos días, no entiendo mi última factura: el importe es mucho más alto de lo "
             "habitual. ¿Podrían comprobarlo, por favor? Muchas gracias."))
    run = subprocess.run([sys.executable, "-m", "maild", "-c", str(tmp_path / "maild.yaml"),
                          "route", str(mail), "--json"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["language"] == "es"
    assert out["acknowledgement"]["body"].startswith("Hola")
