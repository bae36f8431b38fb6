"""Language detectors compared on real mail and short customer texts: accuracy and cost.

    .venv/bin/pip install lingua-language-detector fasttext-langdetect  # the others
    .venv/bin/python -m bench.language
    .venv/bin/python -m bench.language --corpus /work/shared/corpus/i18n

For each candidate: the time to build it (what a parse worker pays once at start), the
CPU time a message (subject and body, as `maild.pipeline.parse` hands them over) and the
share right, on three sets:

* **corpus**: the corpus's `i18n/` mail, labelled from its `index.csv` (a language named in
  the note; the kernel mailing lists linux-can and open-iscsi are English lists whatever
  their reply prefixes); mail in a script we have no label for is left out;
* **own**: maild's own demo mail (`maild/demo_mail`, German and English);
* **short**: `bench/language_samples.py`, one-line requests in de/en/fr/it/tr/pl/et.

Each set's figures read `right/as maild/total  ms a message`: *right* counts the answers
naming the labelled language; *as maild* counts the messages that would be answered in the
right language with templates in de/en/fr and English as default (the answer put through
`maild.pipeline.language.choose`: a Turkish text is right when it gets the default). The
build time is what a parse worker pays once (models preloaded). Figures are printed, never
asserted; fasttext-langdetect is listed though it cannot run here: it downloads its model at
first use, which neither a daemon nor this machine should do.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.language_samples import SHORT_TEXTS
from maild.pipeline.language import OTHERS, Choice, choose
from maild.pipeline.parse import parse

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path("/work/shared/corpus/i18n")
TEMPLATE_LANGUAGES = ("de", "en", "fr")
DEFAULT = "en"
_NOTE_LANGUAGES = {"french": "fr", "italian": "it", "german": "de", "russian": "ru",
                   "japanese": "ja", "norwegian": "no"}
_ENGLISH_LISTS = ("linux-can/", "open-iscsi/")
_OWN = {"01": "de", "02": "en", "03": "de", "04": "en", "05": "de", "06": "en"}


@dataclass(frozen=True)
class Sample:
    label: str
    text: str


def _text(raw: bytes) -> str:
    inbound = parse(raw, None)
    return f"{inbound.subject}\n{inbound.body_text}"


def corpus_samples(folder: Path) -> list[Sample]:
    out: list[Sample] = []
    with (folder / "index.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            note = row["source_note"].lower()
            if row["file"].startswith(_ENGLISH_LISTS):
                label: str | None = "en"  # the notes there speak of reply prefixes only
            elif "from header" in note:
                continue  # a Norwegian name in From: says nothing of the text's language
            else:
                label = next((code for word, code in _NOTE_LANGUAGES.items()
                              if word in note), None)
            if label is None:
                continue
            try:
                out.append(Sample(label, _text((folder / row["file"]).read_bytes())))
            except Exception:
                continue
    return out


def own_samples() -> list[Sample]:
    return [Sample(_OWN[p.name[:2]], _text(p.read_bytes()))
            for p in sorted((ROOT / "maild" / "demo_mail").glob("*.eml"))]


def short_samples() -> list[Sample]:
    return [Sample(lang, text) for lang, text in SHORT_TEXTS]


Detect = Callable[[str], str | None]


def _lingua(high: bool, languages: Sequence[str] | None, chars: int) -> Callable[[], Detect]:
    def build() -> Detect:
        from lingua import IsoCode639_1, LanguageDetectorBuilder

        builder = (LanguageDetectorBuilder.from_all_languages() if languages is None else
                   LanguageDetectorBuilder.from_iso_codes_639_1(
                       *(IsoCode639_1.from_str(c) for c in languages)))
        if not high:
            builder = builder.with_low_accuracy_mode()
        detector = builder.with_preloaded_language_models().build()

        def detect(text: str) -> str | None:
            found = detector.detect_language_of(text[:chars])
            return found.iso_code_639_1.name.lower() if found else None
        return detect
    return build


def _py3langid(languages: Sequence[str] | None) -> Callable[[], Detect]:
    def build() -> Detect:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
        if languages is not None:
            identifier.set_languages([c for c in languages if c in identifier.labels])

        def detect(text: str) -> str | None:
            return str(identifier.classify(text[:2000])[0])
        return detect
    return build


def _fasttext() -> Detect:
    from ftlangdetect import detect as ft_detect

    ft_detect("warm up", low_memory=True)  # loads (or downloads) lid.176.ftz

    def detect(text: str) -> str | None:
        return str(ft_detect(text[:2000].replace("\n", " "), low_memory=True)["lang"])
    return detect


def _maild() -> Detect:
    from maild.pipeline.language import LanguageDetector

    detector = LanguageDetector(TEMPLATE_LANGUAGES)
    return detector.identify


CANDIDATES: dict[str, Callable[[], Detect]] = {
    "lingua high, all languages": _lingua(True, None, 2000),
    "lingua low, all languages": _lingua(False, None, 2000),
    "lingua high, OTHERS": _lingua(True, OTHERS, 2000),
    "lingua low, OTHERS": _lingua(False, OTHERS, 2000),
    "lingua high, de/en/fr only": _lingua(True, TEMPLATE_LANGUAGES, 2000),
    "py3langid, all languages": _py3langid(None),
    "py3langid, OTHERS": _py3langid(OTHERS),
    "fasttext-langdetect": _fasttext,
    "maild (py3langid, OTHERS, sample)": _maild,
}


def measure(name: str, build: Callable[[], Detect],
            sets: dict[str, Sequence[Sample]]) -> None:
    """Right: the open answer is the label; as maild: the chosen template language is the
    label's, or the default for a label without templates."""
    start = time.process_time()
    try:
        detect = build()
    except Exception as exc:
        print(f"{name:<36} cannot run here: {type(exc).__name__}: {str(exc)[:80]}")
        return
    built = time.process_time() - start
    choice = Choice(TEMPLATE_LANGUAGES, DEFAULT)
    parts = [f"{name:<36} build {built * 1000:5.0f} ms"]
    for set_name, samples in sets.items():
        right = as_maild = 0
        spent = 0.0
        for s in samples:
            start = time.process_time()
            found = detect(s.text)
            spent += time.process_time() - start
            right += found == s.label
            expected = s.label if s.label in TEMPLATE_LANGUAGES else DEFAULT
            as_maild += choose(found, "", choice) == expected
        parts.append(f"{set_name} {right:3}/{as_maild:3}/{len(samples):<3} "
                     f"{spent / len(samples) * 1000:5.2f} ms")
    print("  ".join(parts), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--only", default="", help="candidates whose name contains this")
    ap.add_argument("--here", action="store_true",
                    help="measure in this process (else each candidate in a fresh one, so "
                    "that models one has loaded do not make another's start look free)")
    ap.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sets: dict[str, Sequence[Sample]] = {}
    if (args.corpus / "index.csv").exists():
        sets["corpus"] = corpus_samples(args.corpus)
    sets["own"] = own_samples()
    sets["short"] = short_samples()
    labels = {s: sorted({x.label for x in v}) for s, v in sets.items()}
    if not args.quiet:
        print("sets: " + "; ".join(f"{s} {len(v)} ({', '.join(labels[s])})"
                                   for s, v in sets.items()))
    for name, build in CANDIDATES.items():
        child = args.here and args.quiet  # started by the loop below: its one candidate
        if (name != args.only) if child else (args.only not in name):
            continue
        if args.here:
            measure(name, build, sets)
        else:
            subprocess.run([sys.executable, "-m", "bench.language", "--here", "--only", name,
                            "--corpus", str(args.corpus), "--quiet"], check=False)


if __name__ == "__main__":
    main()
