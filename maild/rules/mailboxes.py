"""Each mailbox's starting level, department and priority (maild.yaml), checked against the
rules. Apart from the assembly in app.py: `maild check` validates them without building it.
"""

from __future__ import annotations

from maild.errors import ConfigError
from maild.rules.engine import RuleSet
from maild.rules.schema import PRIORITIES, Actions
from maild.settings import Settings


def mailbox_defaults(settings: Settings, rules: RuleSet) -> dict[str, Actions]:
    """Each mailbox's starting level, department and priority, checked against the rules."""
    out = {}
    for i, m in enumerate(settings.mailboxes):
        if m.department and m.department not in rules.organisation.departments:
            raise ConfigError(f"unknown department '{m.department}'",
                              file=str(settings.config_path),
                              key=f"mailboxes.{i}.department")
        if m.priority and m.priority not in PRIORITIES:
            raise ConfigError(f"priority is one of {', '.join(PRIORITIES)}",
                              file=str(settings.config_path), key=f"mailboxes.{i}.priority")
        out[m.name] = Actions(level=m.level, department=m.department,
                              priority=m.priority)  # type: ignore[arg-type]
    return out
