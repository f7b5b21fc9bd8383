"""Measured usage: what each selection actually cost, from the agents' own records.

Owns reading Claude Code transcripts (incrementally, de-duplicated by ``message.id`` and
``requestId``) into ``omninode.agent.provider.completed.v1`` outcomes, pricing them offline
(``genai-prices`` plus a user overrides file), the ``usage`` answers on both stores, daily
budgets, and the function the Claude Code hook calls at ``Stop`` / ``SubagentStop``.

May import: ``events``, ``publish``, ``store``, ``errors``, ``settings`` and the standard
library; ``genai_prices`` (heavy: pydantic) only inside :mod:`._prices`, loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "ImportSummary",
    "PriceTable",
    "Priced",
    "import_transcripts",
    "publish_turn_outcomes",
    "usage_answer",
]

_WHERE = {
    "ImportSummary": "_transcripts",
    "import_transcripts": "_transcripts",
    "publish_turn_outcomes": "_transcripts",
    "PriceTable": "_prices",
    "Priced": "_prices",
    "usage_answer": "_answers",
}

if TYPE_CHECKING:
    from provider_events.usage._answers import usage_answer
    from provider_events.usage._prices import Priced, PriceTable
    from provider_events.usage._transcripts import (
        ImportSummary,
        import_transcripts,
        publish_turn_outcomes,
    )


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'provider_events.usage' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
