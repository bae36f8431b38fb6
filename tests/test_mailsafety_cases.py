"""Hand-written cases for the mail-safety rules, in German and English.

Each table row is one message small enough to read at a glance. The corpus test
(test_mailsafety_corpus.py) shows the rules on real mail; these pin the edges: what exactly
counts, what exactly does not, and that nothing raises on garbage.
"""

from __future__ import annotations

import email
import email.message
import email.policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.mailsafety.autoreply import (
    BULK_REASONS,
    AutoVerdict,
    classify_automatic,
    subject_verdict,
)
from maild.mailsafety.bounce import FailedRecipient, Report, parse_report

OWN = frozenset({"Support@Example.COM", "billing@example.com"})


def msg(headers: str, body: str = "Hallo,\n\nich habe eine Frage.\n") -> email.message.Message:
    """A message from header lines ("Name: value", one per line) and a body."""
    raw = headers.strip("\n") + "\n\n" + body
    return email.message_from_bytes(raw.encode("utf-8"), policy=email.policy.compat32)


def raw_msg(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def verdict(headers: str, body: str = "Hallo\n") -> AutoVerdict:
    return classify_automatic(msg(headers, body), own_addresses=OWN)


PERSON = "From: Erika Mustermann <erika@example.org>\nTo: support@example.com\n"


# Header rules ---------------------------------------------------------------------------------

MACHINE_HEADERS = [
    ("Auto-Submitted: auto-replied", "auto-submitted:auto-replied"),
    ("Auto-Submitted: auto-generated (failure)", "auto-submitted:auto-generated"),
    ("Auto-Submitted: Auto-Notified; owner-email=x@example.net", "auto-submitted:auto-notified"),
    ("Auto-Submitted: =?utf-8?q?auto-replied?=", "auto-submitted:auto-replied"),
    ("Auto-Submitted: auto-replied\nAuto-Submitted: no", "auto-submitted:auto-replied"),
    ("Auto-Submitted: yes-please!", "auto-submitted:other"),
    ("Precedence: junk", "precedence:junk"),
    ("Precedence: auto_reply", "precedence:auto_reply"),
    ("X-Auto-Response-Suppress: All", "x-auto-response-suppress"),
    ("X-Auto-Response-Suppress: OOF, AutoReply", "x-auto-response-suppress"),
    ("X-Autoreply: yes", "x-autoreply"),
    ("X-Autorespond: Ich bin im Urlaub", "x-autorespond"),
    ("X-Autoreply-From: erika@example.org", "x-autoreply-from"),
    ("X-MS-Exchange-Inbox-Rules-Loop: erika@example.org", "x-ms-exchange-inbox-rules-loop"),
    ("X-POST-MessageClass: 9; Autoresponder", "x-autoresponder"),
    ("Return-Path: <>", "return-path:null"),
    (
        "Content-Type: multipart/report; report-type=delivery-status; boundary=x",
        "content-type:report",
    ),
]


@pytest.mark.parametrize(("header", "reason"), MACHINE_HEADERS)
def test_machine_headers(header: str, reason: str) -> None:
    result = verdict(PERSON + header)
    assert result.automatic
    assert result.machine_generated
    assert reason in result.reasons


BULK_HEADERS = [
    ("Precedence: bulk", "precedence:bulk"),
    ("Precedence: LIST (mailing list)", "precedence:list"),
    ("List-Id: Kunden-Forum <forum.example.org>", "list-id"),
    ("List-Unsubscribe: <mailto:leave@example.org>", "list-headers"),
    ("X-Mailing-List: linux-kernel@vger.kernel.org", "list-headers"),
    ("X-Loop: forum@example.org", "x-loop"),
]


@pytest.mark.parametrize(("header", "reason"), BULK_HEADERS)
def test_list_and_bulk_mail_is_not_answered_but_not_a_robot(header: str, reason: str) -> None:
    """RFC 3834: no automatic answer to list or bulk mail; yet a person may have written it."""
    result = verdict(PERSON + header)
    assert result.automatic
    assert not result.machine_generated
    assert result.reasons == (reason,)
    assert reason in BULK_REASONS


PEOPLE = [
    "Auto-Submitted: no",
    "Auto-Submitted: NO",
    "Auto-Submitted:   no   (written by a person)",
    "Auto-Submitted:",
    "Precedence: normal",
    "Precedence: first-class",
    "X-Autoreply: no",
    "X-Autoreply: false",
    "X-Auto-Response-Suppress: None",
    "Return-Path: <erika@example.org>",
    "Sender: Erika <erika@example.org>",
    "Reply-To: support@example.com",
    "Content-Type: text/plain; charset=utf-8",
]


@pytest.mark.parametrize("header", PEOPLE)
def test_people_are_answered(header: str) -> None:
    result = verdict(PERSON + header)
    assert result == AutoVerdict(automatic=False, reasons=())


SENDERS = [
    ("From: MAILER-DAEMON@mx.example.net", "sender:mailer-daemon"),
    ("From: Mail Delivery Subsystem <mailer-daemon@mx.example.net>", "sender:mailer-daemon"),
    ("From: Mail Delivery System <bounce-handler@mx.example.net>", "sender:mailer-daemon"),
    ("From: Mailer_Daemon@example.net", "sender:mailer-daemon"),
    ("From: postmaster@example.net", "sender:postmaster"),
    ("From: Erika <erika@example.org>\nSender: POSTMASTER@example.org", "sender:postmaster"),
    ("From: Erika <erika@example.org>\nReturn-Path: <MAILER-DAEMON>", "sender:mailer-daemon"),
]


@pytest.mark.parametrize(("headers", "reason"), SENDERS)
def test_daemons(headers: str, reason: str) -> None:
    result = verdict(headers + "\nTo: support@example.com")
    assert result.machine_generated
    assert reason in result.reasons


OWN_ADDRESS = [
    "From: support@example.com",
    "From: SUPPORT@EXAMPLE.COM",
    'From: "Support-Team" <Support@Example.Com>',
    "From: Erika <erika@example.org>\nSender: Billing <BILLING@example.com>",
    "From: Erika <erika@example.org>\nReturn-Path: <support@EXAMPLE.com>",
    "From: Erika <erika@example.org>\nX-Loop: Support@example.com",
]


@pytest.mark.parametrize("headers", OWN_ADDRESS)
def test_mail_from_our_own_addresses_is_a_loop(headers: str) -> None:
    result = verdict(headers + "\nTo: support@example.com")
    assert result.machine_generated
    assert "own-address" in result.reasons


def test_own_addresses_are_matched_whole_not_as_substrings() -> None:
    for sender in ("support@example.com.evil.test", "my-support@example.com", "support@example"):
        assert verdict(f"From: {sender}\nTo: support@example.com") == AutoVerdict(False, ())
        loop = verdict(f"From: erika@example.org\nX-Loop: {sender}")
        assert loop.reasons == ("x-loop",)


def test_own_addresses_default_to_none() -> None:
    result = classify_automatic(msg("From: support@example.com\nTo: support@example.com"))
    assert not result.automatic


# Subjects -------------------------------------------------------------------------------------

AUTO_SUBJECTS = [
    # English
    ("Out of Office: Your request 4711", "subject:out-of-office"),
    ("Out of Office AutoReply: Invoice", "subject:out-of-office"),
    ("Out of office", "subject:out-of-office"),
    ("Automatic reply: Invoice 4711", "subject:auto-reply"),
    ("Auto reply: Nyaan", "subject:auto-reply"),
    ("Auto-Reply: your mail", "subject:auto-reply"),
    ("AutoReply", "subject:auto-reply"),
    ("[rt.example.com #33575] AutoReply: FYI: server down", "subject:auto-reply"),
    ("=?UTF-8?Q?AutoRespons?= :Nyaan?", "subject:auto-reply"),
    ("Vacation reply", "subject:out-of-office"),
    ("[ILUG] Dermot Beirne/Dublin/IE/Exel is out of the office.", "subject:out-of-office"),
    ("John Smith is currently out of the office", "subject:out-of-office"),
    # German
    ("Abwesenheitsnotiz: Ihre Anfrage vom 3. Mai", "subject:out-of-office"),
    ("Automatische Antwort: AW: Rechnung 2024-17", "subject:auto-reply"),
    ("Autom. Antwort: Rechnung", "subject:auto-reply"),
    ("Automatische Rückantwort: Ihre Bestellung", "subject:auto-reply"),
    ("Abwesend: Lieferung", "subject:out-of-office"),
    ("Max Mustermann ist außer Haus.", "subject:out-of-office"),
    ("Max Mustermann ist nicht im Büro", "subject:out-of-office"),
    # Others that reach German help desks
    ("Réponse automatique : Facture", "subject:auto-reply"),
    ("Respuesta automática: Pedido", "subject:auto-reply"),
    ("Automatisch antwoord: Factuur", "subject:auto-reply"),
    ("[Automatyczna odpowiedź] test", "subject:auto-reply"),
]


@pytest.mark.parametrize(("subject", "reason"), AUTO_SUBJECTS)
def test_auto_reply_subjects(subject: str, reason: str | None) -> None:
    assert subject_verdict(subject) == reason
    if reason:
        result = verdict(PERSON + f"Subject: {subject}")
        assert result.machine_generated
        assert reason in result.reasons


PERSON_SUBJECTS = [
    # A person answering or forwarding an auto-reply
    "Re: Out of Office: Your request 4711",
    "AW: Abwesenheitsnotiz: Ihre Anfrage",
    "WG: Automatische Antwort: Rechnung",
    "Antw: Max Mustermann ist außer Haus.",
    "[ILUG-Social] Re: [ILUG] Dermot Beirne/Dublin/IE/Exel is out of the office.",
    "Fwd: John Smith is out of the office",
    # A person writing about auto-replies
    "Out of office settings do not work",
    "Automatische Antwort funktioniert nicht",
    "Frage zur Abwesenheitsnotiz in Outlook",
    "Autoreply problems since the update",
    "Urlaubsantrag für August",
    "Meeting: who is out of office next week?",
    "Rechnung 2024-17",
    "",
]


@pytest.mark.parametrize("subject", PERSON_SUBJECTS)
def test_subjects_people_write(subject: str) -> None:
    assert subject_verdict(subject) is None
    assert verdict(PERSON + f"Subject: {subject}") == AutoVerdict(False, ())


# Challenge-response ---------------------------------------------------------------------------

CHALLENGES = [
    "This account is protected by Bluebottle. Please click on the following link to have "
    "your address added to the recipient's allowed list.\nhttps://example.net/verify/1",
    'Your message about "Rechnung" has been waitlisted.\nPlease add yourself to my Boxbe '
    "Guest List so your messages will go to my Inbox.",
    "To fight spam, please verify that you are a human by clicking the link below.",
    "Damit Ihre Nachricht zugestellt wird, bestätigen Sie bitte einmalig Ihre Adresse, "
    "indem Sie auf den folgenden Link klicken.",
]


@pytest.mark.parametrize("body", CHALLENGES)
def test_challenge_response(body: str) -> None:
    result = verdict(PERSON + "Subject: Re: Rechnung", body)
    assert "challenge-response" in result.reasons


@pytest.mark.parametrize(
    "body",
    [
        "Please add yourself to the mailing list, then I can forward the notes.",
        "Können Sie bestätigen, dass meine E-Mail-Adresse korrekt ist?",
        "Our spam filter put your last mail into quarantine, sorry about that.",
    ],
)
def test_people_mentioning_lists_and_spam_are_not_challenges(body: str) -> None:
    assert verdict(PERSON + "Subject: Frage", body) == AutoVerdict(False, ())


# Malformed headers ----------------------------------------------------------------------------

MALFORMED = [
    b"From: erika@example.org\nAuto-Submitted: \xff\xfe\x80auto\n\nbody",
    b"From: \xe4rger <\xfc@example.org>\nSubject: \xc3\x28 Abwesenheitsnotiz\n\nbody",
    b"From: erika@example.org\nSubject: =?utf-8?b?!!!not-base64?=\n\nbody",
    b"From: erika@example.org\nSubject: =?x-unknown-charset?q?Out_of_Office?=\n\nbody",
    b"From: erika@example.org\nPrecedence: \x00bulk\x00\n\nbody",
    b"From: <<<>>>@@@\nReturn-Path: <<>\nSender: ,,,;;;\n\nbody",
    b"From: erika@example.org\nX-Autoreply:\n\nbody",
    b"From: erika@example.org\nList-Id:\n\nbody",
    b"From: erika@example.org\nContent-Type: multipart/mixed\n\nno boundary at all",
    b"From: erika@example.org\nContent-Type: text/plain; charset=no-such-charset\n\n\xff\xfe",
    b"Subject: " + b"Out of Office " * 20_000 + b"\n\nbody",
    b"\n\n\n",
    b"",
    b"no header at all, just text",
]


@pytest.mark.parametrize("raw", MALFORMED)
def test_malformed_headers_never_raise(raw: bytes) -> None:
    message = raw_msg(raw)
    result = classify_automatic(message, own_addresses=OWN)
    assert result.automatic == bool(result.reasons)
    assert parse_report(message) is None or isinstance(parse_report(message), Report)


def test_malformed_values_still_decide_sensibly() -> None:
    garbage_auto = classify_automatic(raw_msg(MALFORMED[0]))
    assert garbage_auto.reasons == ("auto-submitted:other",)
    empty = classify_automatic(raw_msg(b"From: erika@example.org\nX-Autoreply:\n\nbody"))
    assert not empty.automatic
    unknown_charset = classify_automatic(raw_msg(MALFORMED[3]))
    assert not unknown_charset.machine_generated  # undecodable, so left as written


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    message = raw_msg(raw)
    classify_automatic(message, own_addresses=OWN)
    parse_report(message)


HEADER_NAMES = [
    "From",
    "Sender",
    "Return-Path",
    "Subject",
    "Auto-Submitted",
    "Precedence",
    "List-Id",
    "X-Loop",
    "X-Autoreply",
    "Content-Type",
    "X-Failed-Recipients",
    "Message-ID",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(HEADER_NAMES), st.text(max_size=200)), max_size=8),
    st.text(max_size=2000),
)
def test_arbitrary_header_values_never_raise(headers: list[tuple[str, str]], body: str) -> None:
    message = email.message.Message()
    for name, value in headers:
        message[name] = value
    message.set_payload(body)
    result = classify_automatic(message, own_addresses=OWN)
    assert result.automatic == bool(result.reasons)
    report = parse_report(message)
    assert report is None or report.kind in ("failure", "delay", "success", "feedback", "mdn")


# Delivery reports -----------------------------------------------------------------------------

DSN = """\
From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: support@example.com
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

This is the mail system at host mx.example.net.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Original-Recipient: rfc822; Kunde@Example.ORG
Final-Recipient: rfc822; kunde.alias@mailhost.example.org
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {code} {status} <kunde.alias@mailhost.example.org>: {text}

--B
Content-Type: message/rfc822

From: Support <support@example.com>
To: kunde@example.org
Subject: [#T-1001] Ihre Anfrage
Message-ID: <ticket-1001.ack@support.example.com>

Guten Tag,
--B--
"""


def test_rfc3464_failure() -> None:
    report = parse_report(
        msg(DSN.format(action="failed", status="5.1.1", code=550, text="User unknown"))
    )
    assert report == Report(
        kind="failure",
        recipients=(
            FailedRecipient(
                address="Kunde@Example.ORG",
                status="5.1.1",
                action="failed",
                diagnostic="550 5.1.1 <kunde.alias@mailhost.example.org>: User unknown",
                permanent=True,
            ),
        ),
        original_message_ids=("ticket-1001.ack@support.example.com",),
        reason="5.1.1 550 5.1.1 <kunde.alias@mailhost.example.org>: User unknown",
    )


def test_rfc3464_delay_is_temporary() -> None:
    report = parse_report(
        msg(DSN.format(action="delayed", status="4.4.7", code=451, text="try again later"))
    )
    assert report is not None
    assert report.kind == "delay"
    assert [(r.address, r.status, r.permanent) for r in report.recipients] == [
        ("Kunde@Example.ORG", "4.4.7", False)
    ]


def test_rfc3464_temporary_failure_is_a_failure_but_not_permanent() -> None:
    report = parse_report(
        msg(DSN.format(action="failed", status="4.4.7", code=421, text="expired"))
    )
    assert report is not None
    assert report.kind == "failure"
    assert not report.recipients[0].permanent


def test_positive_dsn_is_a_success_report() -> None:
    report = parse_report(msg(DSN.format(action="delivered", status="2.0.0", code=250, text="Ok")))
    assert report is not None
    assert report.kind == "success"
    assert report.original_message_ids == ("ticket-1001.ack@support.example.com",)


MDN = """\
From: Kunde <kunde@example.org>
To: support@example.com
Subject: Gelesen: [#T-1001] Ihre Anfrage
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="M"

--M
Content-Type: text/plain

Die Nachricht wurde angezeigt.
--M
Content-Type: message/disposition-notification

Reporting-UA: kunde-pc; Microsoft Outlook 16.0
Final-Recipient: rfc822;kunde@example.org
Original-Message-ID: <ticket-1001.ack@support.example.com>
Disposition: manual-action/MDN-sent-manually; displayed
--M--
"""


def test_read_receipt() -> None:
    report = parse_report(msg(MDN))
    assert report is not None
    assert report.kind == "mdn"
    assert report.original_message_ids == ("ticket-1001.ack@support.example.com",)
    assert report.recipients[0].address == "kunde@example.org"
    assert report.reason == "disposition: displayed"


ARF = """\
From: abuse@isp.example.net
To: abuse@example.com
Subject: Abuse report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain

This is an abuse report.
--F
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Rcpt-To: <kunde@example.org>
--F
Content-Type: text/rfc822-headers

From: support@example.com
Message-ID: <newsletter-7@support.example.com>
--F--
"""


def test_feedback_report() -> None:
    report = parse_report(msg(ARF))
    assert report is not None
    assert report.kind == "feedback"
    assert report.reason == "feedback: abuse"
    assert report.original_message_ids == ("newsletter-7@support.example.com",)
    assert [r.address for r in report.recipients] == ["kunde@example.org"]


TEXT_BOUNCES = [
    # German Exchange non-delivery report
    (
        "From: Microsoft Outlook <postmaster@firma.example.de>\n"
        "To: support@example.com\nSubject: Unzustellbar: [#T-1001] Ihre Anfrage",
        "Ihre Nachricht hat einige oder alle Empfänger nicht erreicht.\n\n"
        "Betreff: [#T-1001] Ihre Anfrage\nGesendet: 01.02.2024 10:00\n\n"
        "Die Nachricht hat folgende Empfänger nicht erreicht:\n\n"
        "max.mustermann@firma.example.de am 01.02.2024 10:00\n"
        "    Die E-Mail-Adresse wurde nicht gefunden. #550 5.1.1 RESOLVER.ADR.RecipNotFound\n",
        "failure",
        "max.mustermann@firma.example.de",
    ),
    # qmail
    (
        "From: MAILER-DAEMON@mail.example.net\nTo: support@example.com\nSubject: failure notice",
        "Hi. This is the qmail-send program at mail.example.net.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "<kunde@example.org>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
        "--- Below this line is a copy of the message.\n\n"
        "From: support@example.com\nMessage-ID: <ticket-7@support.example.com>\n\nHallo\n",
        "failure",
        "kunde@example.org",
    ),
    # Exim delay warning
    (
        "From: Mail Delivery System <Mailer-Daemon@mx.example.net>\nTo: support@example.com\n"
        "Subject: Warning: message 1abcDE-0001xy-00 delayed 24 hours",
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent has not yet been delivered to one or more of its\n"
        "recipients after more than 24 hours on the queue on mx.example.net.\n\n"
        "The address to which the message has not yet been delivered is:\n\n"
        "  kunde@example.org\n\n"
        "No action is required on your part. Delivery attempts will continue for\n"
        "some time.\n",
        "delay",
        "kunde@example.org",
    ),
]


@pytest.mark.parametrize(("headers", "body", "kind", "address"), TEXT_BOUNCES)
def test_text_bounces(headers: str, body: str, kind: str, address: str) -> None:
    report = parse_report(msg(headers, body))
    assert report is not None
    assert report.kind == kind
    assert [r.address for r in report.recipients] == [address]
    assert all(r.permanent == (kind == "failure") for r in report.recipients)


def test_qmail_bounce_names_the_original_message() -> None:
    headers, body, _kind, _address = TEXT_BOUNCES[1]
    report = parse_report(msg(headers, body))
    assert report is not None
    assert report.original_message_ids == ("ticket-7@support.example.com",)
    assert report.recipients[0].status == "5.1.1"


PEOPLE_WRITING_ABOUT_BOUNCES = [
    (
        "From: Kunde <kunde@example.org>\nTo: support@example.com\nSubject: Mail nicht zustellbar",
        "Seit dem 5.1.24 kommen meine Mails nicht an.\n450 Euro habe ich schon bezahlt.\n",
    ),
    (
        "From: Kunde <kunde@example.org>\nTo: support@example.com\nSubject: Mail delivery failed",
        "Hallo, meine Mails an Sie kommen als unzustellbar zurück. Was kann ich tun?\n",
    ),
    (
        "From: Customer <customer@example.org>\nTo: support@example.com\n"
        "Subject: Fwd: Undelivered Mail Returned to Sender",
        "Why do I get this?\n\n---------- Forwarded message ---------\n"
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\n\n"
        "This is the mail system at host mx.example.net.\n\n"
        "<colleague@example.org>: host mx.example.org said: 550 5.1.1 User unknown\n",
    ),
    (
        "From: Kunde <kunde@example.org>\nTo: support@example.com\n"
        "Subject: AW: Unzustellbar: Rechnung",
        "Die Adresse max@example.org gibt es nicht mehr, bitte an moritz@example.org.\n",
    ),
    (
        "From: noreply@shop.example.org\nReply-To: kunde@example.org\n"
        "To: support@example.com\nSubject: Kontaktformular",
        "Nachricht: Mein Paket konnte nicht zugestellt werden, die Adresse existiert nicht.\n",
    ),
]


@pytest.mark.parametrize(("headers", "body"), PEOPLE_WRITING_ABOUT_BOUNCES)
def test_people_writing_about_bounces_are_not_bounces(headers: str, body: str) -> None:
    """A customer who forwards or describes a bounce wants an answer: not a report."""
    assert parse_report(msg(headers, body)) is None


def test_x_failed_recipients_alone_is_enough() -> None:
    report = parse_report(
        msg(
            "From: Mail Delivery System <Mailer-Daemon@mx.example.net>\n"
            "X-Failed-Recipients: kunde@example.org, zweite@example.org\n"
            "Subject: Mail delivery failed: returning message to sender",
            "A message that you sent could not be delivered.\n",
        )
    )
    assert report is not None
    assert [r.address for r in report.recipients] == ["kunde@example.org", "zweite@example.org"]


def test_ordinary_mail_is_no_report() -> None:
    assert parse_report(msg(PERSON + "Subject: Frage zur Rechnung")) is None
