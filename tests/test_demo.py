"""`maild demo`: run as a newcomer runs it (a subprocess), and its sample mail on its own."""

from __future__ import annotations

import email.policy
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from maild.demo import (
    FIRST_MAILS,
    WHILE_RUNNING,
    Received,
    customer_answer,
    restamp,
    sample,
)
from maild.pipeline.guard import Guard
from maild.pipeline.parse import parse

SUBJECTS = {
    "01-rechnung.eml": ("de", "Frage zu meiner Rechnung"),
    "02-login.eml": ("en", "Can't log in after password reset"),
    "03-kuendigung.eml": ("de", "Kündigung meines Vertrags zum nächstmöglichen Termin"),
    "04-phone.eml": ("en", "Shop down?"),
    "05-stoerung.eml": ("de", "Störung: E-Mails kommen seit heute früh nicht mehr an"),
    "06-upgrade.eml": ("en", "Question about upgrading to the annual Business plan"),
}


def run_maild(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONIOENCODING": "utf-8"}
    env.pop("MAILD_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "maild", *args], capture_output=True, text=True,
        encoding="utf-8", timeout=90, env=env, cwd=tmp_path, check=False,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    tmp_path = tmp_path_factory.mktemp("demo")
    proc = run_maild("demo", tmp_path=tmp_path)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout, tmp_path


def ticket_rows(out: str) -> dict[str, list[str]]:
    """The Tickets table: REF -> [status, level, lang, msgs, requester, subject]."""
    rows = re.findall(r"^  (T-[A-Z0-9]+) +(\S+) +(\d) +(de|en) +(\d+) +(\S+) +(.+)$", out,
                      re.MULTILINE)
    return {ref: list(rest) for ref, *rest in rows}


def test_demo_names_every_ticket(demo: tuple[str, Path]) -> None:
    out, _ = demo
    rows = ticket_rows(out)
    assert len(rows) == len(SUBJECTS)
    assert sorted((r[2], r[5]) for r in rows.values()) == sorted(SUBJECTS.values())
    assert "Result: OK." in out


def test_demo_shows_one_acknowledgement_per_ticket_in_both_languages(
    demo: tuple[str, Path],
) -> None:
    out, _ = demo
    rows = ticket_rows(out)
    for ref, (_status, _level, lang, _msgs, requester, subject) in rows.items():
        assert out.count(f"Subject:     [{ref}] {subject}") == 1, ref
        template = {"de": "German", "en": "English"}[lang]
        assert re.search(rf"To: .*<{re.escape(requester)}>  \({template} template\)", out)
    assert out.count("(German template)") == 3
    assert out.count("(English template)") == 3
    assert "Guten Tag Erika Mustermann," in out
    assert "Hello Priya Patel," in out
    # Each acknowledgement answers the customer's own message.
    assert "In-Reply-To: <8c1d5e3a-2f4b-4c7e-9a61-3b0f2d7e91c4@example.com>" in out
    assert "In-Reply-To: <3F2A9C1E-7B44-4D0A-9E61-52C8B7D0A1F3@example.org>" in out


def test_demo_threads_the_answer_without_a_second_acknowledgement(
    demo: tuple[str, Path],
) -> None:
    out, _ = demo
    rows = ticket_rows(out)
    [ref] = [r for r, row in rows.items() if row[5] == "Frage zu meiner Rechnung"]
    assert rows[ref][3] == "3"  # her mail, the acknowledgement, her answer
    assert f"-> filed in ticket {ref}" in out
    thread = out.split(f"The thread of {ref}", 1)[1]
    assert re.search(rf"inbound .*AW: \[{ref}\] Frage zu meiner Rechnung +"
                     r"joined it \(matched by in-reply-to\)", thread)
    assert out.count(f"Subject:     [{ref}]") == 1
    assert "Replies the SMTP server received (6)" in out


def test_demo_keeps_a_database_the_cli_can_read(demo: tuple[str, Path]) -> None:
    out, tmp_path = demo
    match = re.search(r"maild -c (\S+/maild\.yaml) tickets list", out)
    assert match is not None
    config = Path(match.group(1))
    assert config.is_relative_to(tmp_path)
    proc = run_maild("-c", str(config), "tickets", "list", "--json", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(re.findall(r'"ref": "(T-[A-Z0-9]+)"', proc.stdout)) == sorted(ticket_rows(out))


@pytest.mark.parametrize("name", sorted(SUBJECTS))
def test_sample_mail_is_a_person_writing_in_the_expected_language(name: str) -> None:
    language, subject = SUBJECTS[name]
    inbound = parse(sample(name), None)
    inbound, report = Guard(frozenset({"support@example.test"})).inspect(inbound)
    assert (inbound.language, inbound.subject) == (language, subject)
    assert inbound.sender is not None
    assert inbound.sender.address.endswith((".example.com", "@example.com", "@example.org"))
    assert inbound.message_id
    assert inbound.automatic == ()
    assert report is None
    assert inbound.defects == ()


def test_every_sample_is_used() -> None:
    assert sorted((*FIRST_MAILS, WHILE_RUNNING)) == sorted(SUBJECTS)


def test_restamp_replaces_only_the_date_header() -> None:
    raw = sample("01-rechnung.eml")
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    stamped = restamp(raw, when)
    assert b"\r\nDate: Thu, 02 Jan 2025 03:04:05 +0000\r\n" in stamped
    assert stamped.replace(b"Thu, 02 Jan 2025 03:04:05 +0000",
                           b"Mon, 11 Mar 2024 09:14:02 +0100") == raw


def test_customer_answer_threads_on_the_acknowledgement() -> None:
    ack = EmailMessage(policy=email.policy.default)
    ack["From"] = "Example Support <support@example.test>"
    ack["To"] = "Erika Mustermann <erika.mustermann@example.com>"
    ack["Subject"] = "[T-ABC234] Frage zu meiner Rechnung"
    ack["Message-ID"] = "<maild.1.2@example.test>"
    ack["In-Reply-To"] = "<first@example.com>"
    ack["References"] = "<first@example.com>"
    ack.set_content("Guten Tag Erika Mustermann,\n\nvielen Dank.\n")
    received = Received("support@example.test", ("erika.mustermann@example.com",), ack, 0.0)
    raw = customer_answer(received, "Erika Mustermann <erika.mustermann@example.com>",
                          datetime(2025, 1, 2, 9, 30, tzinfo=UTC))
    answer = parse(raw, None)
    assert answer.subject == "AW: [T-ABC234] Frage zu meiner Rechnung"
    assert answer.in_reply_to == ("maild.1.2@example.test",)
    assert answer.references == ("first@example.com", "maild.1.2@example.test")
    assert answer.language == "de"
    assert "> Guten Tag Erika Mustermann," in answer.body_text


@pytest.mark.parametrize("missing", ["pymap", "aiosmtpd"])
def test_without_the_demo_extra_it_says_how_to_install_it(missing: str, tmp_path: Path) -> None:
    """A production install has no demo servers: `maild demo` says so in one line, exit 1.
    (The package is hidden from the import system, as if it were not installed.)"""
    code = (f"import sys; sys.modules[{missing!r}] = None; from maild.cli import main; "
            "sys.exit(main(['demo']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == (
        "maild: the demo's mail servers are not installed: pip install 'maild[demo]'\n")
