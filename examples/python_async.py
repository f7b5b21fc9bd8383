#!/usr/bin/env python3
"""The integration guide's async snippet ("1. Python Code Integration"), runnable as is.

Added to the guide's code only what running it needs: the import path of a checkout, a
``correlation_id`` and ``asyncio.run``. Exit 0 when the broker acknowledged the event, 1 when it
was not delivered yet (then it waits in the local outbox and the relay delivers it later).

    python3 examples/python_async.py        # KAFKA_BOOTSTRAP_SERVERS, PROVIDER_EVENTS_TOPIC apply
"""

import asyncio
import sys
import uuid
from pathlib import Path

_root = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(_root), str(_root / "src")]

from agents.lib.provider_selection_publisher import publish_provider_selection  # noqa: E402


async def main() -> bool:
    correlation_id = str(uuid.uuid4())

    # Async context
    return await publish_provider_selection(
        provider_name="gemini-flash",
        model_name="gemini-1.5-flash-002",
        correlation_id=correlation_id,
        selection_reason="Cost-effective for high-volume pattern matching",
        selection_criteria={"cost_per_token": 0.000001, "latency_ms": 50, "quality_score": 0.85},
    )


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main()) else 1)
