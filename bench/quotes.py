"""Our quote stripping (maild/agents/parse.py) against mail-parser-reply, on the table of
tests/test_quotes.py: which cases each gets right, and the time a reply.

    .venv/bin/pip install mail-parser-reply   # not a dependency of maild
    .venv/bin/python -m bench.quotes

Right: for an attribution case, exactly the agent's new text is left; for a kept case, the
whole text. Figures are printed, never asserted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from maild.agents.parse import strip_quoted
from tests.test_quotes import CASES, KEPT, NEW, QUOTED


def _library() -> Callable[[str], str]:
    from mailparser_reply import EmailReplyParser  # type: ignore[import-not-found]

    parser = EmailReplyParser(languages=["de", "en", "fr"])
    return lambda text: str(parser.parse_reply(text) or "").strip()


def main() -> None:
    candidates: dict[str, Callable[[str], str]] = {"maild": strip_quoted}
    try:
        candidates["mail-parser-reply"] = _library()
    except ImportError:
        print("mail-parser-reply is not installed")
    table = [(client, f"{NEW}\n\n{attribution}\n\n{QUOTED}\n", NEW)
             for client, attribution in CASES]
    table += [(f"kept: {text[:30]!r}", text, text) for text in KEPT]
    for name, strip in candidates.items():
        wrong = []
        start = time.process_time()
        for case, text, expected in table:
            if strip(text) != expected:
                wrong.append(case)
        spent = (time.process_time() - start) / len(table)
        print(f"{name:<18} {len(table) - len(wrong)}/{len(table)} right, "
              f"{spent * 1e6:.0f} µs a reply; wrong: {', '.join(wrong) or '-'}")


if __name__ == "__main__":
    main()
