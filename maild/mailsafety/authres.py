"""Sender verification from Authentication-Results (RFC 8601) of trusted servers.

Only headers whose authserv-id is configured as trusted count: the receiving MX must remove
any header with its own id that arrived from outside (RFC 8601 section 5). A sender is
verified when DMARC passed, or DKIM or SPF passed for a domain aligned with the From domain.
This is the mail equivalent of asking a caller for their phone password.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_RESULT = re.compile(r"\b(dmarc|dkim|spf)\s*=\s*([a-z]+)\b([^;]*)", re.IGNORECASE)
_PROP = re.compile(r"\b(header\.d|header\.from|smtp\.mailfrom|header\.i)\s*=\s*([^\s;]+)",
                   re.IGNORECASE)


def _aligned(domain: str, from_domain: str) -> bool:
    """Relaxed alignment (DMARC): the same domain, or one below the other."""
    domain = domain.lower().lstrip("@").rpartition("@")[2].strip(".")
    return bool(domain) and (from_domain == domain or from_domain.endswith("." + domain)
                             or domain.endswith("." + from_domain))


def sender_verified(values: Iterable[str], from_address: str,
                    trusted: Iterable[str]) -> bool:
    """True when a trusted server's results show the From domain is authentic."""
    trusted_ids = {t.lower() for t in trusted}
    from_domain = from_address.rpartition("@")[2].lower()
    if not trusted_ids or not from_domain:
        return False
    for value in values:
        authserv, _, results = value.partition(";")
        words = authserv.split()
        if not words or words[0].lower() not in trusted_ids:
            continue
        for method, result, props in _RESULT.findall(results):
            if result.lower() != "pass":
                continue
            method = method.lower()
            if method == "dmarc":
                return True
            for name, domain in _PROP.findall(props):
                name = name.lower()
                if method == "dkim" and name in ("header.d", "header.i") and _aligned(
                        domain, from_domain):
                    return True
                if method == "spf" and name == "smtp.mailfrom" and _aligned(
                        domain, from_domain):
                    return True
    return False
