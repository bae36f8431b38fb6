"""The words mail software writes that more than one part of maild must recognise, each list
kept once: the prefixes of replies and forwards in a subject, and the names that mailer
daemons send under.

The lists are written as regular-expression alternatives (`REPLY_WORDS`...) and as the
patterns built from them; each user anchors and applies them as its rule needs
(`pipeline.thread` strips the prefixes from a subject, `mailsafety.bounce` does not take a
reply for a bounce, `mailsafety.autoreply` does not take one for an auto-reply).
"""

from __future__ import annotations

import re
from typing import Final

# Reply and forward prefixes real clients put in front of a subject: English, German
# (AW, WG, Antw), French (TR), Nordic (SV, VS), Dutch (Doorst), Polish (Odp), Italian (R,
# RIF, I), Portuguese (RES, ENC), Spanish (RV), Turkish (YNT), GroupWise ("Antw: [EXT]
# Re:"), and counters such as "Re[2]:", "Re^3:" or "Re(2):".
REPLY_WORDS: Final = r"re|aw|wg|fw|fwd|tr|sv|vs|antw|antwort|odp|rif|r|i|doorst|ynt|enc|res|rv"
REPLY_PREFIX: Final = rf"(?:{REPLY_WORDS})\s*(?:\[\d+\]|\^\d+|\(\d+\))?\s*:"
"""One reply or forward prefix, its colon included; not anchored."""
# Tags that mail gateways put in front of the subject of mail from outside.
EXTERNAL_TAG: Final = r"\[ext\]|\[extern\]|\[external\]"

REPLY_PREFIX_RE: Final = re.compile(REPLY_PREFIX, re.IGNORECASE)
"""`match` says whether a subject (stripped of what comes before) starts with one."""

# The local parts and display names mailer daemons send bounces under. Certain: nobody else
# writes as these.
DAEMON_LOCAL_WORDS: Final = r"mailer[-_.]?daemon|mail[-_.]?daemon|mdaemon|mailerdaemon"
POSTMASTER_LOCAL_WORDS: Final = r"post[-_.]?master"
DAEMON_NAME_WORDS: Final = (
    r"mail\s+delivery\s+(?:sub)?system|mail\s+delivery\s+service|mailer[-_ ]daemon"
    r"|mail\s+administrator|delivery\s+status\s+notification"
)
# Likely, but a person could write as these too (an IT department's "mailadmin", a
# "System Administrator"): enough for a bounce only together with a bounce's words.
DELIVERY_LOCAL_WORDS: Final = (
    r"mail[-_.]?delivery[-_.]?(?:sub)?system|mailadmin|mail[-_.]?admin|smtp[-_.]?gateway"
)
DELIVERY_NAME_WORDS: Final = (
    r"system\s+administrator|postmaster|delivery\s+status|mail\s+system|automated\s+response"
    r"|ndr\s+administrator"
)

# One reply or forward prefix, or a gateway's tag for mail from outside, and the space after.
_SUBJECT_PREFIX: Final = re.compile(rf"^\s*(?:{REPLY_PREFIX}|{EXTERNAL_TAG})\s*", re.IGNORECASE)


def normalise_subject(subject: str) -> str:
    """The subject without reply/forward prefixes and external-sender tags."""
    previous = None
    text = subject.strip()
    while previous != text:
        previous = text
        text = _SUBJECT_PREFIX.sub("", text, count=1).strip()
    return text
