"""Where an agent's new text ends and the quoted original starts, for the replies of the
common mail clients in the shipped templates' languages (de, en, fr): nothing quoted may
reach the customer, and text that merely mentions writing stays."""

from __future__ import annotations

import pytest

from maild.agents.parse import parse_agent_text, strip_quoted

NEW = "Das Update ist eingespielt, bitte noch einmal versuchen."
QUOTED = "Sehr geehrte Damen und Herren,\nmein Export bricht ab.\nAndrea"

# (client, attribution or header block that the client writes above the quoted original)
CASES = [
    ("gmail de wrapped",
     "Am Mo., 23. Nov. 2026 um 09:02 Uhr schrieb Example Support <\nsupport@example.test>:"),
    ("gmail de",
     "Am Mo., 23. Nov. 2026 um 09:02 Uhr schrieb Example Support <support@example.test>:"),
    ("gmail en wrapped",
     "On Mon, Nov 23, 2026 at 9:02 AM Example Support <\nsupport@example.test> wrote:"),
    ("gmail en three lines",
     "On Mon, Nov 23, 2026 at 9:02 AM Example Support of the Hosting Department\n"
     "of Example Hosting GmbH <\nsupport@example.test> wrote:"),
    ("gmail fr wrapped",
     "Le lun. 23 nov. 2026 à 09:02, Example Support <\nsupport@example.test> a écrit :"),
    ("gmail fr",
     "Le lun. 23 nov. 2026 à 09:02, Example Support <support@example.test> a écrit :"),
    ("apple mail en", "On 23 Nov 2026, at 09:02, Example Support <support@example.test> wrote:"),
    ("apple mail de", "Am 23.11.2026 um 09:02 schrieb Example Support <support@example.test>:"),
    ("apple mail fr",
     "Le 23 nov. 2026 à 09:02, Example Support <support@example.test> a écrit :"),
    ("thunderbird en", "On 23.11.26 09:02, Example Support wrote:"),
    ("thunderbird de", "Am 23.11.26 um 09:02 schrieb Example Support:"),
    ("thunderbird fr", "Le 23/11/2026 à 09:02, Example Support a écrit :"),
    ("thunderbird de wrapped",
     "Am 23.11.26 um 09:02 schrieb Example Support vom Kundendienst der Example\n"
     "Hosting GmbH:"),
    ("outlook en", "-----Original Message-----\nFrom: Example Support <support@example.test>\n"
     "Sent: Monday, November 23, 2026 9:02 AM\nTo: Andrea <andrea@example.test>\n"
     "Subject: [T-ABC234] Export"),
    ("outlook de", "-----Ursprüngliche Nachricht-----\nVon: Example Support "
     "<support@example.test>\nGesendet: Montag, 23. November 2026 09:02\n"
     "An: Andrea <andrea@example.test>\nBetreff: [T-ABC234] Export"),
    ("outlook fr", "-----Message d'origine-----\nDe : Example Support <support@example.test>\n"
     "Envoyé : lundi 23 novembre 2026 09:02\nÀ : Andrea <andrea@example.test>\n"
     "Objet : [T-ABC234] Export"),
    ("outlook en header block", "From: Example Support <support@example.test>\n"
     "Sent: Monday, November 23, 2026 9:02 AM\nTo: andrea@example.test\nSubject: Export"),
    ("outlook de header block", "Von: Example Support <support@example.test>\n"
     "Gesendet: Montag, 23. November 2026 09:02\nAn: andrea@example.test\nBetreff: Export"),
    ("outlook fr header block", "De : Example Support <support@example.test>\n"
     "Envoyé : lundi 23 novembre 2026 09:02\nÀ : andrea@example.test\nObjet : Export"),
    ("outlook web rule", "________________________________\nFrom: Example Support "
     "<support@example.test>\nSent: Monday, November 23, 2026 9:02 AM"),
    ("gmx/web.de de", "Gesendet: Montag, 23. November 2026 um 09:02 Uhr\n"
     "Von: \"Example Support\" <support@example.test>\nAn: andrea@example.test\n"
     "Betreff: Re: [T-ABC234] Export"),
    ("gmx en", "Sent: Monday, November 23, 2026 at 9:02 AM\n"
     "From: \"Example Support\" <support@example.test>\nTo: andrea@example.test\n"
     "Subject: Re: [T-ABC234] Export"),
    ("gmx fr", "Envoyé: lundi 23 novembre 2026 à 09:02\n"
     "De: \"Example Support\" <support@example.test>\nÀ: andrea@example.test\n"
     "Objet: Re: [T-ABC234] Export"),
    ("t-online", "-----Original-Nachricht-----\nBetreff: [T-ABC234] Export\n"
     "Datum: 2026-11-23T09:02:11+0100\nVon: \"Example Support\" <support@example.test>\n"
     "An: andrea@example.test"),
    ("t-online header block", "Betreff: [T-ABC234] Export\nDatum: 2026-11-23T09:02:11+0100\n"
     "Von: \"Example Support\" <support@example.test>"),
    ("thunderbird forward fr", "-------- Message transféré --------\n"
     "Sujet : Export\nDate : Mon, 23 Nov 2026 09:02:11 +0100"),
]


@pytest.mark.parametrize(("client", "attribution"), CASES, ids=[c for c, _ in CASES])
def test_quoted_original_is_stripped(client: str, attribution: str) -> None:
    body = f"{NEW}\n\n{attribution}\n\n{QUOTED}\n"
    assert strip_quoted(body) == NEW
    assert parse_agent_text(f"#priority high\n{body}").text == NEW


@pytest.mark.parametrize(("client", "attribution"), CASES, ids=[c for c, _ in CASES])
def test_quoted_original_is_stripped_when_quoted_with_marks(
        client: str, attribution: str) -> None:
    quoted = "\n".join(f"> {line}" for line in QUOTED.split("\n"))
    assert strip_quoted(f"{NEW}\n{attribution}\n{quoted}") == NEW


KEPT = [
    "The customer wrote: the export fails at row 12.",
    "On Monday the customer wrote:\nthe export fails at row 12.",
    "Der Kunde schrieb am Montag, dass der Export abbricht:\nZeile 12 ist defekt.",
    "Le client a écrit :\nl'export échoue à la ligne 12.",
    "From: what I can see in the logs, the export works again.",
    "I wrote to the customer on 23.11. and asked for the log.\nNo answer yet.",
    "Am 23.11. habe ich dem Kunden geschrieben.\nVon ihm kam noch nichts.",
    "Sent: the new invoice\nTo do: check the payment",
]


@pytest.mark.parametrize("text", KEPT)
def test_text_that_mentions_writing_is_kept(text: str) -> None:
    assert strip_quoted(text) == text
