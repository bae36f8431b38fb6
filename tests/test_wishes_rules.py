"""The register's pure parts as tables: title matching (English, German, typos, a wish
that must stay apart), the counting rules, re-review, and what agents and quality
management write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from maild.agents.parse import Command, parse_agent_text
from maild.wishes.match import Candidate, best_match, normalise, similarity
from maild.wishes.register import WishCommand, WishError, read_command
from maild.wishes.rules import (
    Asked,
    StatusCommand,
    StatusError,
    check_change,
    counts,
    parse_status_commands,
    rereview_due,
)

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
THRESHOLD = 75.0


@pytest.mark.parametrize("a,b", [
    ("Dark mode for the control panel", "Control panel in dark mode"),
    ("Dark mode for the control panel", "dark-mode control panel, please"),
    ("Darkmode im Kundenbereich", "Dark-Mode für den Kundenbereich"),
    ("Dark mode for the control panel", "Control panel in darkmode"),
    ("Rechnungen als CSV exportieren", "CSV-Export der Rechnungen"),
    ("Rechnungen als CSV exportieren", "Rechnung als CSV exportieren"),
    ("Zwei-Faktor-Authentifizierung", "Zwei Faktor Authentifizierung fürs Login"),
    ("Kündigung per E-Mail", "Kuendigung per Email"),
    # typos
    ("Export invoices as CSV", "Exprot invoices as CVS"),
    ("Zwei-Faktor-Authentifizierung", "Zwei-Faktor-Authentifzierung"),
    ("Dark mode", "Dakr mode"),
])
def test_similar_titles_join(a: str, b: str) -> None:
    assert similarity(normalise(a), normalise(b)) >= THRESHOLD


@pytest.mark.parametrize("a,b", [
    ("Export invoices as CSV", "Export invoices as PDF"),
    ("Export invoices as CSV", "Phone support on weekends"),
    ("Dark mode for the control panel", "Dark mode for the webmail"),
    ("Zwei-Faktor-Authentifizierung", "Telefonsupport am Wochenende"),
    ("More storage", "More mailboxes"),
    ("Dark mode", "Dark mode for the mobile app"),
])
def test_different_wishes_stay_apart(a: str, b: str) -> None:
    assert similarity(normalise(a), normalise(b)) < THRESHOLD


def test_normalise() -> None:
    assert normalise("Dark-Mode für den Kundenbereich!") == "dark mode kundenbereich"
    assert normalise("The") == "the"  # a title of filler words alone is kept


def test_best_match_takes_the_most_similar_and_ties_to_more_customers() -> None:
    wishes = [Candidate("W-1", "Export invoices as PDF", 9),
              Candidate("W-2", "Export invoices as CSV", 1),
              Candidate("W-3", "CSV export of invoices", 4)]
    found = best_match("Exprot invoices as CSV", wishes, THRESHOLD)
    assert found is not None and found.key == "W-3"  # W-2 and W-3 tie; W-3 has more
    assert best_match("Phone support on weekends", wishes, THRESHOLD) is None


def asked(*pairs: tuple[str, int]) -> list[Asked]:
    return [Asked(customer, T0 + timedelta(hours=h)) for customer, h in pairs]


def test_counts_a_customer_once_and_keeps_every_request() -> None:
    c = counts(asked(("a@x", 0), ("b@x", 1), ("A@x", 5)))
    assert (c.requests, c.customers) == (3, 2)
    assert c.first == T0 and c.last == T0 + timedelta(hours=5)
    assert counts([]) == type(c)(0, 0, None, None)


@pytest.mark.parametrize("status,history,threshold,due", [
    ("rejected", [("a@x", 3), ("b@x", 4), ("c@x", 5)], 3, True),
    ("rejected", [("a@x", 3), ("a@x", 4), ("b@x", 5)], 3, False),  # two customers
    ("rejected", [("a@x", 1), ("b@x", 1), ("c@x", 5)], 3, False),  # two before rejection
    ("rejected", [("a@x", 1), ("a@x", 3), ("b@x", 4), ("c@x", 5)], 3, True),  # asked again
    ("under_review", [("a@x", 3), ("b@x", 4), ("c@x", 5)], 3, False),
])
def test_rereview(status: str, history: list[tuple[str, int]], threshold: int,
                  due: bool) -> None:
    rejected = T0 + timedelta(hours=2)
    newer = rereview_due(status, rejected, asked(*history), threshold)
    assert (newer is not None) == due
    if newer is not None:
        assert all(a.at > rejected for a in newer)


def test_status_changes() -> None:
    assert check_change("planned", "") is None
    assert check_change("rejected", " Too costly ") == "Too costly"
    with pytest.raises(StatusError, match="needs a reason"):
        check_change("rejected", "  ")
    with pytest.raises(StatusError, match="unknown status"):
        check_change("maybe", None)


def test_quality_management_commands() -> None:
    assert parse_status_commands(
        "\n#wish-status w-42 rejected Too costly for the shared plans\n#WISH-STATUS W-7 done"
        "\nthanks\n") == [StatusCommand("W-42", "rejected", "Too costly for the shared plans"),
                          StatusCommand("W-7", "done", None)]
    for body, error in [("#wish-status W-42 rejected", "needs a reason"),
                        ("#wish-status W-42", "KEY STATUS"),
                        ("#wish-status W-42 soon", "unknown status"),
                        ("#wish W-42 done", "unknown command"),
                        ("Please reject W-42", "no command")]:
        with pytest.raises(StatusError, match=error):
            parse_status_commands(body)


def test_agent_wish_commands() -> None:
    parsed = parse_agent_text("#wish Dark mode\n#no Phone support on Sundays\nSorry, no.")
    assert parsed.commands == (Command("wish", "Dark mode"),
                               Command("no", "Phone support on Sundays"))
    assert parsed.text == "Sorry, no."
    # Another command than #wish, unknown to agents: an error, never text to a customer.
    assert parse_agent_text("#wish-status W-1 done\nx").unknown == ("#wish-status W-1 done",)
    assert read_command("wish", "Dark  mode") == WishCommand("match", "Dark mode")
    assert read_command("wish", "new Dark mode") == WishCommand("new", "Dark mode")
    assert read_command("wish", "w-42") == WishCommand("key", "W-42")
    assert read_command("no", "Sunday hotline") == WishCommand("match", "Sunday hotline",
                                                               not_possible=True)
    for name, argument in [("wish", ""), ("wish", "new"), ("no", " ")]:
        with pytest.raises(WishError):
            read_command(name, argument)
