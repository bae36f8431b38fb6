"""Which language to answer in: German or English, English when unsure.

A deliberately small, explainable heuristic (stop words and umlauts) rather than a model:
the acknowledgement only needs to pick between the shipped templates.
"""

from __future__ import annotations

# A word is a run of these letters, all of them in Latin-1. The lower-cased text is read as
# Latin-1 bytes (a character beyond it, never a letter, as "?"), in which one C-level pass
# turns every other character into a space: far faster than a regex finding the runs. The
# stop words are Latin-1 bytes too, like the words they are compared with.
_LETTERS = "abcdefghijklmnopqrstuvwxyzäöüß"
_ONLY_LETTERS = bytes(b if chr(b) in _LETTERS else 0x20 for b in range(256))
_GERMAN = frozenset(
    w.encode("latin-1") for w in
    "und der die das ist nicht ich sie wir ihr mit für auf ein eine einen dem den des "
    "bitte danke vielen dank hallo guten tag sehr geehrte geehrter damen herren grüße "
    "gruß freundlichen mein meine unser unsere kein keine habe haben wird werden kann "
    "können noch schon auch aber oder wenn weil dass rechnung vertrag kündigung "
    "funktioniert problem seit heute leider".split()
)
_ENGLISH = frozenset(
    w.encode("latin-1") for w in
    "and the is are not you we with for on a an of to this that it my our your "
    "please thanks thank hello hi dear regards kind best invoice contract cancel "
    "does doesn't cannot can't since today unfortunately have has will would could".split()
)


def detect_language(text: str, content_language: str = "", *, default: str = "en") -> str:
    """'de' or 'en' for `text`; `default` when the evidence is weak."""
    declared = content_language.strip().lower()[:2]
    sample = text[:5000]
    words = sample.lower().encode("latin-1", "replace").translate(_ONLY_LETTERS).split()
    german = sum(map(_GERMAN.__contains__, words))
    if not sample.isascii():  # a str knows that without reading itself
        german += 2 * sum(sample.count(ch) for ch in "äöüß")
    english = sum(map(_ENGLISH.__contains__, words))
    if german >= 3 and german > english * 1.2:
        return "de"
    if english >= 3 and english > german * 1.2:
        return "en"
    if declared in ("de", "en"):
        return declared
    return default
