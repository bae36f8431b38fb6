"""What an agent wrote: commands on the first lines, then the text, quotes stripped.

```
#escalate 3 needs a look at the database
#priority high
The customer's export fails at row 12. Quoted text and signatures below are dropped.
```

Commands: note, escalate [N] [reason], department NAME, priority P, pending, resolve,
close, assign ADDRESS|me, cc add ADDRESS, cc remove ADDRESS, wish TITLE|KEY|new TITLE,
no TITLE (maild/wishes/), ask QUESTION (internal: to the mentor or the next level), answer
NAME (a canned answer), answers [WORD] (the catalogue, to the agent), solution NAME (propose
the text as a canned answer), no-solution (nothing reusable here). A line that starts with
`#` but names no command is an error the agent is told about, not text that reaches a
customer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

COMMANDS = ("note", "escalate", "department", "priority", "pending", "resolve", "close",
            "assign", "cc", "wish", "no", "ask", "answer", "answers", "solution",
            "no-solution")
INTAKE_COMMANDS = ("customer", "level", "department", "priority")
# A name may hold hyphens: `#wish-status` is another command than `#wish`.
_COMMAND = re.compile(r"^\s*#([a-z]+(?:-[a-z]+)*)(?![\w-])\s*(.*?)\s*$", re.IGNORECASE)
# Where the quoted original starts in the replies of common clients, in the languages of the
# shipped templates (de, en, fr). An attribution line ("On ... wrote:") may be wrapped by
# the client (Gmail wraps at about 80 characters, often inside the address), so it is
# matched against one, two and three lines joined. It must hold a digit (the date or time
# every client puts there), so that "On Monday the customer wrote:" stays text.
_ATTRIBUTIONS = (
    re.compile(r"On\s.{0,200}\d.{0,200}\swrote\s?:"),  # Gmail, Apple Mail, Thunderbird
    re.compile(r"Am\s.{0,200}\d.{0,200}\sschrieb\s.{1,200}:"),
    re.compile(r"Am\s.{0,200}\d.{0,200}\s(hat|haben)\s.{1,200}\sgeschrieben\s?:"),
    re.compile(r"Le\s.{0,200}\d.{0,200}\sa\s[ée]crit\s?:"),
)
_JOIN = 3  # lines an attribution may span
_SEPARATOR = re.compile(
    r"^\s*-{2,}\s*(Original Message|Original-Nachricht|Ursprüngliche Nachricht|"
    r"Forwarded message|Weitergeleitete Nachricht|Message d'origine|Message original|"
    r"Message transféré)\s*-{2,}\s*$", re.IGNORECASE)
# A header block (Outlook, GMX/web.de, T-Online, Apple Mail's forward): two or more of these
# lines in a row, one of them naming the sender.
_HEADER = re.compile(r"^\s*\*?(From|Sent|To|Cc|Subject|Date|Von|Gesendet|An|Betreff|Datum|"
                     r"De|Envoyé|À|Objet|Date d'envoi)\*?\s?:\*?\s", re.IGNORECASE)
_SENDER = re.compile(r"^\s*\*?(From|Von|De)\*?\s?:", re.IGNORECASE)
_OTHER_STARTS = (
    re.compile(r"^\s*_{20,}\s*$"),  # Outlook's rule above the quoted header block
    re.compile(r"^>"),
    re.compile(r"^-- ?$"),  # signature separator
)


def _header_block(lines: list[str], i: int) -> bool:
    """A run of two or more header lines from line `i`, one of them the sender's."""
    run = 0
    sender = False
    for line in lines[i:i + 6]:
        if not _HEADER.match(line):
            break
        run += 1
        sender = sender or bool(_SENDER.match(line))
    return run >= 2 and sender and bool(_HEADER.match(lines[i]))


def _attribution(lines: list[str], i: int) -> bool:
    """Lines from `i` (one to three, joined) are an attribution ending in a colon."""
    joined = ""
    for line in lines[i:i + _JOIN]:
        joined = f"{joined} {line.strip()}" if joined else line.strip()
        if joined.endswith(":") and any(p.fullmatch(joined) for p in _ATTRIBUTIONS):
            return True
        if not line.strip():
            return False
    return False


def quote_start(lines: list[str], i: int) -> bool:
    line = lines[i]
    return (any(p.match(line) for p in _OTHER_STARTS) or bool(_SEPARATOR.match(line))
            or _header_block(lines, i) or _attribution(lines, i))


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
    lines = text.replace("\r\n", "\n").split("\n")
    end = next((i for i in range(len(lines)) if quote_start(lines, i)), len(lines))
    return "\n".join(lines[:end]).strip()


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
