"""Threading measured on real mail (issue 22): the list threads of the shared corpus, as
mail of mutual outsiders to a support address, through the real pipeline
(bench/threads.py), scored pairwise against the ground truth. Targets per set: F1 at
least 0.99, precision at least 0.999 (two conversations must practically never merge).

The figures are printed (`pytest -s tests/test_threads_corpus.py`); maild sends nothing
(no SMTP server, the outbox is never drained)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.threads import SETS, find_corpus, measure

CORPUS = find_corpus(Path(__file__).resolve().parent)


@pytest.mark.parametrize("name", list(SETS))
def test_tickets_follow_the_threads_of_real_lists(name: str) -> None:
    assert CORPUS is not None, "shared/corpus not found beside the repository"
    score = measure(CORPUS, name)
    print("\n" + score.line())
    assert score.held == 0
    assert score.joined > 0  # the senders were outsiders to each other's tickets
    assert score.precision >= 0.999, score.line()
    assert score.f1 >= 0.99, score.line()
