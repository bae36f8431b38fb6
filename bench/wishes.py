"""Wish matching benchmark: how long `#wish TITLE` takes to find its wish among N, against a
floor measured in the same run.

    .venv/bin/python -m bench.wishes                 # N = 1,000 and 10,000 wishes
    .venv/bin/python -m bench.wishes --n 5000

N wish titles are made from a seeded vocabulary of English and German support words (four
words each, so many titles share words, the hard case), and 50 agents' titles are matched
against them, a third misspelt. Not timed: making the titles.

* **floor**: rapidfuzz's token set ratio of the agent's normalised title against every
  normalised title (`process.extract`, in C): the one scan over all wishes any matcher must
  make;
* **maild**: `maild.wishes.match.best_match`, cold (its cache of normalised titles empty)
  and warm (as in a daemon, which compares every new title with the same wishes).

Printed: milliseconds per match, and maild's ratio to the floor.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from rapidfuzz import fuzz, process

from maild.wishes.match import Candidate, best_match, normalise

WORDS = ("dark mode invoice export csv pdf hotline weekend backup restore domain transfer "
         "mailbox storage quota rechnung kündigung sepa lastschrift webmail kalender zwei "
         "faktor login api token ssl zertifikat php version datenbank ftp zugang").split()


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def _per_match(run: Callable[[str], object], queries: list[str]) -> float:
    start = time.perf_counter()
    for query in queries:
        run(query)
    return (time.perf_counter() - start) / len(queries) * 1000


def bench(n: int, seed: int = 16) -> None:
    rng = random.Random(seed)
    titles = [" ".join(rng.sample(WORDS, 4)) for _ in range(n)]
    candidates = [Candidate(f"W-{i + 1}", t, rng.randrange(9)) for i, t in enumerate(titles)]
    queries = []
    for i in range(50):
        words = rng.sample(WORDS, 4)
        queries.append(" ".join(_typo(w, rng) if i % 3 == 0 else w for w in words))

    normalise.cache_clear()
    cold = _per_match(lambda q: best_match(q, candidates, 75.0), queries[:5])
    warm = statistics.median(_per_match(lambda q: best_match(q, candidates, 75.0), queries)
                             for _ in range(3))
    normalised = [normalise(t) for t in titles]
    floor = min(_per_match(lambda q: process.extract(
        normalise(q), normalised, scorer=fuzz.token_set_ratio, limit=None), queries)
        for _ in range(3))
    print(f"N={n:>6}: floor {floor:7.2f} ms  maild warm {warm:7.2f} ms (ratio "
          f"{warm / floor:4.2f})  cold {cold:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, action="append", help="wishes (repeatable)")
    args = parser.parse_args()
    for n in args.n or [1000, 10000]:
        bench(n)


if __name__ == "__main__":
    main()
