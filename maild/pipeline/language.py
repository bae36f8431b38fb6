"""Which language to answer in: one for which templates exist, else the configured default.

The text is identified by py3langid (pyproject.toml and `bench/language.py` say why it and
not another) among the template languages *and* the other languages a European desk
commonly hears from (`OTHERS`): a Turkish or Polish mail is then recognised as such and
answered in the default language, where a detector knowing only the template languages
would have to call it one of them. The decision (`choose`, pure):

1. the text's language, when templates exist in it;
2. else the `Content-Language` the sender's client declared, when templates exist in it;
3. else the configured default.

The detector reads the first 1,000 characters, runs of white space as one (as right as
2,000 on the benchmark's mail, at two thirds of the cost). It is built once
per process and set of languages (`detector_for`), never per message: a parse worker pays
the model's loading once.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

# Languages a German hosting desk hears from (the template languages are added): enough
# neighbours that text in them is told apart from the template languages.
OTHERS = ("de", "en", "fr", "it", "es", "pt", "nl", "pl", "tr", "et", "cs", "sk", "sv",
          "da", "nb", "fi", "hu", "ro", "ru", "uk", "el", "hr", "sl", "lt", "lv", "bg",
          "sq", "bs", "sr", "ca")
SHIPPED = ("de", "en", "fr")  # the languages of maild's own templates
SAMPLE_CHARS = 1000  # enough for a sure answer; the cost grows with the length
_SPACE = re.compile(r"\s+")
_CODE = re.compile(r"^[a-z]{2}$")


@dataclass(frozen=True)
class Choice:
    """The decision's inputs beyond the text: what templates exist, what to fall back to."""

    available: tuple[str, ...]
    default: str


def primary_tag(content_language: str) -> str:
    """'fr' of 'fr-CH, de'; '' when the header names no ISO 639-1 language first."""
    first = content_language.split(",")[0].strip().lower()
    code = first.split("-")[0].split("_")[0]
    return code if _CODE.match(code) else ""


def choose(detected: str | None, content_language: str, choice: Choice) -> str:
    """The answer's language from what the detector said (None: not sure) and the hint."""
    if detected in choice.available:
        return detected
    hint = primary_tag(content_language)
    if hint in choice.available:
        return hint
    return choice.default


def sample(text: str) -> str:
    """The start of the text, runs of white space as one (a reply's blank lines are many).

    Only a prefix is read, grown until it gives enough characters (a mail may start with
    thousands of blank lines). Quoted lines stay: in a short reply they are most of the
    evidence, and mostly in the language of the conversation."""
    window = SAMPLE_CHARS * 2
    while True:
        head = _SPACE.sub(" ", text[:window])
        if len(head) > SAMPLE_CHARS or window >= len(text):
            return head[:SAMPLE_CHARS]
        window *= 4


class LanguageDetector:
    """py3langid's model over the template languages and `OTHERS`, loaded once."""

    def __init__(self, languages: Iterable[str]) -> None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self._model = LanguageIdentifier.from_model_file(MODEL_FILE)
        known = set(self._model.labels)
        # A template language the model does not know is named by the hint only.
        self._model.set_languages(
            [c for c in dict.fromkeys((*languages, *OTHERS)) if c in known])

    def identify(self, text: str) -> str | None:
        """The ISO 639-1 code of `text`'s language, None when it has no letters to go by."""
        text = sample(text)
        if not any(ch.isalpha() for ch in text):
            return None
        return str(self._model.classify(text)[0])


@functools.lru_cache(maxsize=2)  # about 90 MB each: one set of languages per daemon
def detector_for(languages: tuple[str, ...]) -> LanguageDetector:
    """The process's detector for these template languages (a parse worker builds it on its
    first message, or when it is warmed up; a reload with new languages builds another)."""
    return LanguageDetector(languages)


def load(languages: tuple[str, ...]) -> int:
    """Build this process's detector now (a parse worker's warm-up); its process id."""
    detector_for(languages)
    return os.getpid()


def detect_language(text: str, content_language: str = "", *, default: str = "en",
                    available: tuple[str, ...] = SHIPPED) -> str:
    """The language to answer `text` in: one of `available`, else `default`."""
    choice = Choice(available=available, default=default)
    return choose(detector_for(available).identify(text), content_language, choice)
