"""More than two languages, end to end against Dovecot and aiosmtpd (issue 20, item 12): a
French customer gets the French acknowledgement, a Turkish one (no Turkish templates) the
default language's, the team hears of both in the staff language; `maild check` warns of a
template missing in a language that other templates have."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from maild import daemon
from maild.app import build
from maild.clock import FixedClock
from maild.store.models import Ticket
from tests.kit import customer_mail, settings_for, write_config
from tests.servers.dovecot import MailUser
from tests.servers.smtp import SmtpServer
from tests.test_agents import RULES, sent_to


def test_french_customer_gets_french_and_staff_the_staff_language(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, sqlite_url: str
) -> None:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    app = build(settings_for(
        tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(), rules="rules.yaml",
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"},
        default_language="en", staff_language="de"), clock=FixedClock())
    mail_user.append(customer_mail(
        sender="Camille Martin <camille@example.fr>", subject="Site inaccessible",
        body="Bonjour, mon site web est inaccessible depuis ce matin. Pouvez-vous "
             "regarder ? Merci d'avance."))
    mail_user.append(customer_mail(
        sender="Ayşe Yılmaz <ayse@example.com.tr>", subject="Fatura",  # noqa: RUF001
        body="Merhaba, kasım faturamı tekrar gönderebilir misiniz? Teşekkürler."))  # noqa: RUF001
    daemon.run_once(app)

    with app.sessions() as s:
        languages = {t.requester: t.language for t in s.scalars(select(Ticket))}
    assert languages == {"camille@example.fr": "fr", "ayse@example.com.tr": "en"}
    [french] = sent_to(smtp_server, "camille@example.fr")
    assert "merci pour votre message" in french.message.get_content()
    [turkish] = sent_to(smtp_server, "ayse@example.com.tr")
    assert "thank you for your message" in turkish.message.get_content()
    notes = sent_to(smtp_server, "level1@example.test")
    assert len(notes) == 2
    assert all("Antworten Sie auf diese Mail" in n.message.get_content() for n in notes)
    app.dispose()


def test_check_warns_of_a_missing_translation(tmp_path: Path, sqlite_url: str) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "acknowledgement.it.txt").write_text(
        "Subject: [{{ ticket.ref }}] {{ ticket.subject }}\n\nGrazie.\n", encoding="utf-8")
    config = write_config(tmp_path, db_url=sqlite_url, templates="templates",
                          staff_language="it")
    run = subprocess.run([sys.executable, "-m", "maild", "-c", str(config), "check"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr  # a warning: the mail falls back to English
    warnings = sorted(line for line in run.stdout.splitlines() if line.startswith("warning:"))
    staff = ("digest", "notification", "proposal", "queue", "refused", "report", "review",
             "wish_notification")
    customer = ("auto_resolved", "canned", "guarantee", "password_reset", "reminder", "reply",
                "survey", "wish_done", "wish_rejected")
    assert warnings == sorted(
        [f"warning: template {name}.it.txt is missing (the staff language); {name} mail in "
         "'it' falls back to English" for name in staff]
        + [f"warning: template {name}.it.txt is missing (other templates exist in it); "
           f"{name} mail in 'it' falls back to English" for name in customer])
    assert "customers are answered in de, en, fr, it, staff in it" in run.stdout
