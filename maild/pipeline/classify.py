"""Stage 4: where a ticket goes (level, department, priority, template).

The contract is the `Classifier` protocol; the YAML rule engine implements it. Without rules
every ticket starts at the 1st level with normal priority and the standard acknowledgement.
"""

from __future__ import annotations

from typing import Protocol

from maild.domain import Classification, Inbound


class Classifier(Protocol):
    def classify(self, inbound: Inbound) -> Classification: ...


class DefaultClassifier:
    """No rules configured: 1st level, no department, normal priority."""

    def classify(self, inbound: Inbound) -> Classification:
        return Classification()
