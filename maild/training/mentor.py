"""Who may decide a trainee's draft, and whom a waiting draft reminds: pure functions of
the directory (the organisation) and the mentor recorded on the draft."""

from __future__ import annotations

from dataclasses import dataclass

from maild.rules.engine import Organisation
from maild.rules.schema import Agent


def may_decide(mentor: str, author: str, agent: Agent | None, org: Organisation) -> bool:
    """The mentor named on the draft: that agent, or any full agent of that team (its
    level, or its department); never the trainee themselves nor another trainee."""
    if agent is None or agent.trainee or agent.address.lower() == author.lower():
        return False
    mentor = mentor.lower()
    if "@" in mentor:
        return agent.address.lower() == mentor
    if mentor.startswith("level") and mentor[5:].isdigit():
        return agent.level == int(mentor[5:])
    return mentor in agent.departments


@dataclass(frozen=True)
class Reminders:
    """Whom a waiting draft reminds first, and whom after that (team names or addresses,
    as `TicketService.notify` takes them)."""

    first: str
    then: str


def reminders(mentor: str, org: Organisation) -> Reminders:
    """An agent mentor first, then the team of the mentor's level; a team mentor is reminded
    twice (there is no one above a team in the directory)."""
    if "@" in mentor:
        agent = org.agents.get(mentor.lower())
        team = f"level{agent.level}" if agent is not None else mentor
        if org.team_address(team) is None:
            team = mentor
        return Reminders(mentor, team)
    return Reminders(mentor, mentor)


def next_level_team(level: int) -> str:
    """Where an agent's #ask goes when they have no mentor."""
    return f"level{min(level + 1, 4)}"
