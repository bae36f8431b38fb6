"""Stage 4: where a ticket goes (level, department, priority, template).

The contract is the `Classifier` protocol; the YAML rule engine (maild.rules) implements it.
Without a rules file every ticket starts at the 1st level with normal priority and the
standard acknowledgement.
"""

from __future__ import annotations

from typing import Protocol

from maild.domain import Classification, Inbound


class Classifier(Protocol):
    def classify(self, inbound: Inbound) -> Classification: ...
