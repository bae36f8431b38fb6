"""Which language a customer is answered in: the text's, among the template languages;
else the Content-Language the client declared; else the configured default."""

from __future__ import annotations

from pathlib import Path

import pytest

from maild.outbound.render import Templates, shipped_templates
from maild.pipeline.language import Choice, choose, detect_language, primary_tag
from maild.pipeline.parse import parse

SHIPPED = ("de", "en", "fr")
ALL = ("de", "en", "fr", "it", "tr", "pl", "et")

SHORT = [
    ("de", "Hallo, meine Webseite ist seit heute Morgen nicht erreichbar."),
    ("de", "Rechnung falsch\nBitte prüfen."),
    ("en", "Hello, my website has been down since this morning."),
    ("en", "Cannot log in anymore"),
    ("fr", "Bonjour, mon site web est inaccessible depuis ce matin."),
    ("fr", "Impossible de me connecter"),
    ("it", "Buongiorno, il mio sito web non è raggiungibile da stamattina."),
    ("it", "Vorrei disdire il mio contratto alla fine del mese."),
    ("tr", "Merhaba, web sitem bu sabahtan beri erişilemiyor."),
    ("tr", "Sözleşmemi ay sonunda iptal etmek istiyorum."),
    ("pl", "Dzień dobry, moja strona internetowa nie działa od rana."),
    ("pl", "Nie mogę się zalogować"),
    ("et", "Tere, minu veebileht ei ole täna hommikust saadik kättesaadav."),
    ("et", "Minu postkasti parool ei tööta enam."),
]


@pytest.mark.parametrize(("language", "text"), SHORT)
def test_short_text_with_templates_in_its_language(language: str, text: str) -> None:
    assert detect_language(text, default="de", available=ALL) == language


@pytest.mark.parametrize(("language", "text"), SHORT)
def test_short_text_without_templates_gets_the_default(language: str, text: str) -> None:
    """Only de/en/fr templates: a Turkish mail is not called German, English or French at
    random; it gets the configured default."""
    expected = language if language in SHIPPED else "de"
    assert detect_language(text, default="de", available=SHIPPED) == expected


@pytest.mark.parametrize(("detected", "header", "expected"), [
    ("fr", "", "fr"),                 # the text decides when there are templates for it
    ("fr", "de-DE", "fr"),            # even against the client's declaration
    ("tr", "de-DE", "de"),            # no Turkish templates: the declared language
    ("tr", "fr-CH, de", "fr"),        # the first declared language counts
    ("tr", "tr", "en"),               # declared, but no templates in it: the default
    (None, "FR", "fr"),               # nothing to go by in the text: the declaration
    (None, "", "en"),                 # nothing at all: the default
    ("it", "x-klingon", "en"),        # not an ISO 639-1 code: ignored
])
def test_choice(detected: str | None, header: str, expected: str) -> None:
    assert choose(detected, header, Choice(available=SHIPPED, default="en")) == expected


def test_primary_tag() -> None:
    assert primary_tag(" fr-CH , de") == "fr"
    assert primary_tag("de_AT") == "de"
    assert primary_tag("") == ""
    assert primary_tag("i-klingon") == ""


def test_content_language_header_is_the_hint_in_parse() -> None:
    """A Turkish mail whose client declares French gets French; without the header, the
    default; the same text with Turkish templates gets Turkish."""
    body = "Merhaba, web sitem bu sabahtan beri erişilemiyor. Lütfen yardım edin."  # noqa: RUF001
    raw = (b"From: a@example.test\r\nTo: s@example.test\r\nSubject: Yardim\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n%b\r\n" + body.encode())
    hinted = raw % b"Content-Language: fr-FR\r\n"
    plain = raw % b""
    assert parse(hinted, None, default_language="de").language == "fr"
    assert parse(plain, None, default_language="de").language == "de"
    assert parse(plain, None, default_language="de",
                 languages=("de", "en", "tr")).language == "tr"


def test_digits_and_symbols_only_fall_back() -> None:
    assert detect_language("12345 --- ???", "fr", default="de") == "fr"
    assert detect_language("12345 --- ???", default="de") == "de"


def test_template_languages_are_those_of_the_customer_templates(tmp_path: Path) -> None:
    """An admin's `acknowledgement.tr.txt` makes Turkish a language customers are answered
    in; the staff-only notification in another language does not."""
    (tmp_path / "acknowledgement.tr.txt").write_text("Subject: x\n\nMerhaba\n")
    (tmp_path / "notification.es.txt").write_text("Subject: x\n\nHola\n")
    assert Templates(tmp_path).languages() == ("de", "en", "fr", "tr")
    assert Templates().languages() == SHIPPED


def test_shipped_templates_exist_in_every_shipped_language() -> None:
    assert Templates().missing("en", "en") == []
    for staff in SHIPPED:
        assert Templates().missing(staff, staff) == []


def test_the_repository_templates_are_the_shipped_ones() -> None:
    """`templates/` is what a checkout shows an admin; maild/shipped_templates what an
    installation reads: one folder (a link), so they cannot drift apart."""
    root = Path(__file__).resolve().parent.parent
    assert shipped_templates().resolve() == (root / "templates").resolve()
