"""What an agent wrote: commands on the first lines, then the text, quotes stripped.

```
#escalate 3 needs a look at the database
#priority high
The customer's export fails at row 12. Quoted text and signatures below are dropped.
```

Commands: note, escalate [N] [reason], department NAME, priority P, pending, resolve,
close, assign ADDRESS|me, ask QUESTION (internal: to the mentor or the next level), answer
NAME (a canned answer), answers [WORD] (the catalogue, to the agent), solution NAME (propose
the text as a canned answer), no-solution (nothing reusable here). A line that starts
with `#` but names no command is an error the agent is told about, not text that reaches a
customer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

COMMANDS = ("note", "escalate", "department", "priority", "pending", "resolve", "close",
            "assign", "ask", "answer", "answers", "solution", "no-solution")
INTAKE_COMMANDS = ("customer", "level", "department", "priority")
_COMMAND = re.compile(r"^\s*#([a-z]+(?:-[a-z]+)*)\b\s*(.*?)\s*$", re.IGNORECASE)
# Where the quoted original starts in the replies of common clients (English and German).
_QUOTE_STARTS = (
    re.compile(r"^\s*On .{5,200} wrote:\s*$"),
    re.compile(r"^\s*Am .{5,200} schrieb .{1,200}:\s*$"),
    re.compile(r"^\s*-{2,}\s*(Original Message|Ursprüngliche Nachricht|Forwarded message|"
               r"Weitergeleitete Nachricht)\s*-{2,}\s*$", re.IGNORECASE),
    re.compile(r"^\s*(From|Von|Gesendet|Sent):\s.+$"),
    re.compile(r"^\s*_{20,}\s*$"),  # Outlook's rule above the quoted header block
    re.compile(r"^>"),
    re.compile(r"^-- ?$"),  # signature separator
)


@dataclass(frozen=True)
class Command:
    name: str
    argument: str


@dataclass(frozen=True)
class AgentText:
    commands: tuple[Command, ...]
    text: str
    unknown: tuple[str, ...] = ()


def strip_quoted(text: str) -> str:
    """The new part of a reply: everything before the first quote marker."""
    kept: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if any(p.match(line) for p in _QUOTE_STARTS):
            break
        kept.append(line)
    return "\n".join(kept).strip()


def parse_agent_text(body: str, known: tuple[str, ...] = COMMANDS) -> AgentText:
    lines = body.replace("\r\n", "\n").split("\n")
    commands: list[Command] = []
    unknown: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() and not commands and not unknown:
            i += 1
            continue  # blank lines before the first command
        found = _COMMAND.match(line)
        if not found:
            break
        name = found.group(1).lower()
        if name in known:
            commands.append(Command(name, found.group(2)))
        else:
            unknown.append(line.strip())
        i += 1
    return AgentText(commands=tuple(commands), text=strip_quoted("\n".join(lines[i:])),
                     unknown=tuple(unknown))
