"""A reproducible, realistic mix of support mail for the benchmarks.

Synthetic on purpose: every address is under a reserved example domain, so nothing here can
reach a real person even by mistake. The mix (with the default shares):

* ~72 % new customer mails: German or English, 1-8 KB of text, about a third with an HTML
  alternative part, about one in ten with a small attachment (PDF-like or PNG-like, 2-24 KB);
* ~25 % replies from the same customer, threading to one of their earlier mails by
  In-Reply-To and References, with a quoted original and an ``AW:``/``Re:`` subject;
* ~3 % duplicates: the exact bytes of an earlier message delivered again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

SUPPORT = "support@example.test"

_FIRST_DE = ["Erika", "Jürgen", "Anna", "Matthias", "Sabine", "Thomas", "Ute", "Jörg",
             "Katrin", "Björn", "Heike", "Uwe", "Monika", "Stefan", "Özlem", "Günter"]
_LAST_DE = ["Mustermann", "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer",
            "Wagner", "Becker", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Größer"]
_FIRST_EN = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Isla",
             "Jack", "Karen", "Liam", "Mia", "Noah", "Olivia", "Paul"]
_LAST_EN = ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans", "Thomas",
            "Roberts", "Walker", "Wright", "Robinson", "Thompson", "White", "Hughes"]
_DOMAINS = ["example.com", "example.org", "example.net", "kunde.example", "firma.example"]

_SUBJECTS_DE = [
    "Rechnung {n} doppelt abgebucht", "Login funktioniert nicht mehr", "Kündigung zum {d}",
    "Störung: Webseite nicht erreichbar", "Frage zum Vertrag {n}", "Upgrade auf Paket Pro",
    "E-Mail-Postfach voll", "SSL-Zertifikat abgelaufen", "Bitte um Rückruf",
    "Datenbank läuft sehr langsam", "Domain-Umzug {n}", "Mahnung erhalten, obwohl bezahlt",
]
_SUBJECTS_EN = [
    "Invoice {n} charged twice", "Cannot log in since this morning", "Cancel my contract",
    "Outage: website down", "Question about contract {n}", "Upgrade to the Pro plan",
    "Mailbox full", "SSL certificate expired", "Please call me back",
    "Database very slow", "Domain transfer {n}", "Reminder received although paid",
]
_PARAGRAPHS_DE = [
    "Sehr geehrte Damen und Herren, seit heute Morgen kann ich mich nicht mehr in meinem "
    "Kundenkonto anmelden. Die Seite meldet nur, dass das Passwort falsch sei, obwohl ich es "
    "gestern noch geändert habe.",
    "Leider funktioniert unsere Webseite seit gestern Abend nicht mehr. Die Besucher sehen "
    "nur eine Fehlermeldung, und auch die Mails kommen nicht mehr an. Bitte prüfen Sie das "
    "dringend, wir verlieren Umsatz.",
    "Auf der Rechnung für diesen Monat wurde der Betrag zweimal abgebucht. Ich bitte um "
    "Erstattung des doppelten Betrags auf das bekannte Konto und um eine korrigierte "
    "Rechnung.",
    "Wir möchten unseren Vertrag zum nächstmöglichen Zeitpunkt kündigen. Bitte bestätigen "
    "Sie mir die Kündigung schriftlich und nennen Sie mir das genaue Vertragsende.",
    "Können Sie mir sagen, ob ein Wechsel auf das größere Paket auch mitten im Monat möglich "
    "ist? Wir brauchen mehr Speicherplatz für die Datenbank und die Sicherungen.",
    "Die Datenbank reagiert seit dem letzten Wartungsfenster extrem langsam. Einfache "
    "Abfragen dauern mehrere Sekunden, vorher waren es Millisekunden.",
    "Im Anhang finden Sie den Screenshot der Fehlermeldung. Ich habe den Browser-Cache "
    "bereits geleert und es mit zwei verschiedenen Browsern versucht.",
    "Für Rückfragen bin ich heute bis 18 Uhr unter der bekannten Nummer erreichbar. Vielen "
    "Dank für Ihre schnelle Hilfe.",
]
_PARAGRAPHS_EN = [
    "Hello, since this morning I cannot log in to my account. The page only says that the "
    "password is wrong, although I changed it yesterday and it worked then.",
    "Unfortunately our website has been down since last night. Visitors only see an error "
    "page and our mail does not arrive either. Please look into this urgently.",
    "This month's invoice was charged twice to our card. Please refund the duplicate amount "
    "and send us a corrected invoice for our records.",
    "We would like to cancel our contract at the earliest possible date. Please confirm the "
    "cancellation in writing and tell us the exact end date.",
    "Could you tell me whether an upgrade to the larger plan is possible in the middle of "
    "the month? We need more storage for the database and the backups.",
    "The database has been extremely slow since the last maintenance window. Simple queries "
    "take several seconds where they used to take milliseconds.",
    "Attached is a screenshot of the error message. I have already cleared the browser cache "
    "and tried two different browsers.",
    "I am available until 6 pm today at the usual number if you have questions. Thanks a lot "
    "for your quick help.",
]
_SIGNATURE_DE = "\n\nMit freundlichen Grüßen\n{name}\n{company}\nTel. +49 30 {phone}\n"
_SIGNATURE_EN = "\n\nKind regards\n{name}\n{company}\nPhone +44 20 {phone}\n"


@dataclass(frozen=True)
class Customer:
    name: str
    address: str
    german: bool
    company: str


@dataclass
class Mix:
    """The messages in mailbox order, and what maild should make of them."""

    messages: list[bytes] = field(default_factory=list)
    new: int = 0
    replies: int = 0
    duplicates: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(len(m) for m in self.messages)


def _customer(rng: random.Random, index: int) -> Customer:
    german = rng.random() < 0.6
    first = rng.choice(_FIRST_DE if german else _FIRST_EN)
    last = rng.choice(_LAST_DE if german else _LAST_EN)
    local = f"{first}.{last}.{index}".lower()
    local = local.translate(str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss",
                                           "Ö": "oe", "Ü": "ue", "Ä": "ae"}))
    company = f"{last} {'GmbH' if german else 'Ltd'}"
    return Customer(f"{first} {last}", f"{local}@{rng.choice(_DOMAINS)}", german, company)


def _body(rng: random.Random, customer: Customer, target_bytes: int) -> str:
    paragraphs = _PARAGRAPHS_DE if customer.german else _PARAGRAPHS_EN
    parts: list[str] = []
    size = 0
    while size < target_bytes:
        paragraph = rng.choice(paragraphs)
        parts.append(paragraph)
        size += len(paragraph.encode()) + 2
    signature = (_SIGNATURE_DE if customer.german else _SIGNATURE_EN).format(
        name=customer.name, company=customer.company, phone=rng.randint(1000000, 9999999))
    return "\n\n".join(parts) + signature


def _html(text: str) -> str:
    paragraphs = "".join(
        f"<p>{p.replace('&', '&amp;').replace('<', '&lt;')}</p>\n" for p in text.split("\n\n"))
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head>"
            f"<body style=\"font-family: Arial\">\n{paragraphs}</body></html>\n")


def _message(
    rng: random.Random, customer: Customer, *, subject: str, body: str, message_id: str,
    date: datetime, in_reply_to: str | None = None, references: tuple[str, ...] = (),
) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"{customer.name} <{customer.address}>"
    msg["To"] = f"Example Support <{SUPPORT}>"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    msg["MIME-Version"] = "1.0"
    msg["User-Agent"] = rng.choice(["Mozilla Thunderbird 115.4", "Microsoft Outlook 16.0",
                                    "Apple Mail (2.3774)", "Roundcube Webmail/1.6.5"])
    if customer.german:
        msg["Content-Language"] = "de-DE"
    msg.set_content(body)
    if rng.random() < 0.35:
        msg.add_alternative(_html(body), subtype="html")
    if rng.random() < 0.10:
        kind = rng.choice([("application", "pdf", "Rechnung.pdf"),
                           ("image", "png", "screenshot.png")])
        payload = rng.randbytes(rng.randint(2_000, 24_000))
        msg.add_attachment(payload, maintype=kind[0], subtype=kind[1], filename=kind[2])
    return msg.as_bytes()


def build_mix(
    n: int, *, seed: int = 20261120, reply_share: float = 0.25, duplicate_share: float = 0.03,
    customers_per_mail: float = 0.5, distinct_senders: bool = False,
) -> Mix:
    """`n` messages; the same arguments always give the same bytes.

    New mails come from a pool of ``customers_per_mail * n`` customers (so some customers
    open several tickets), or each from a customer of its own with `distinct_senders`.
    """
    rng = random.Random(seed)
    mix = Mix()
    pool = n if distinct_senders else max(1, int(n * customers_per_mail))
    customers = [_customer(rng, i) for i in range(pool)]
    unused = iter(customers)
    start = datetime(2026, 11, 20, 7, 0, tzinfo=UTC)
    # (customer, subject, message id, references) of every new mail and reply so far
    threads: list[tuple[Customer, str, str, tuple[str, ...]]] = []
    for i in range(n):
        date = start + timedelta(seconds=17 * i + rng.randint(0, 16))
        message_id = f"<{seed}.{i}.{rng.getrandbits(40):x}@mail.{rng.choice(_DOMAINS)}>"
        roll = rng.random()
        if threads and mix.messages and roll < duplicate_share:
            mix.messages.append(rng.choice(mix.messages))
            mix.duplicates += 1
            continue
        if threads and roll < duplicate_share + reply_share:
            customer, subject, parent, refs = rng.choice(threads)
            quoted = "\n".join("> " + line for line in
                               _body(rng, customer, 300).splitlines()[:6])
            reply_body = _body(rng, customer, rng.randint(300, 1500)) + "\n\n" + quoted + "\n"
            prefix = "AW: " if customer.german else "Re: "
            chain = (*refs, parent)[-10:]
            raw = _message(rng, customer, subject=prefix + subject, body=reply_body,
                           message_id=message_id, date=date, in_reply_to=parent,
                           references=chain)
            threads.append((customer, subject, message_id, chain))
            mix.replies += 1
        else:
            customer = next(unused) if distinct_senders else rng.choice(customers)
            template = rng.choice(_SUBJECTS_DE if customer.german else _SUBJECTS_EN)
            subject = template.format(n=rng.randint(10000, 99999),
                                      d=f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.")
            body = _body(rng, customer, rng.choice([600, 1200, 2500, 4000, 7000]))
            raw = _message(rng, customer, subject=subject, body=body, message_id=message_id,
                           date=date)
            threads.append((customer, subject, message_id, ()))
            mix.new += 1
        mix.messages.append(raw)
    return mix
