#!/usr/bin/env python3
"""The integration guide's synchronous snippet ("Synchronous context (e.g., hooks, scripts)").

Added to the guide's code only what running it needs: the import path of a checkout and a
``correlation_id``. Exit 0 when the broker acknowledged the event, 1 when it was not delivered
yet (then it waits in the local outbox and the relay delivers it later).

    python3 examples/python_sync.py         # KAFKA_BOOTSTRAP_SERVERS, PROVIDER_EVENTS_TOPIC apply
"""

import sys
import uuid
from pathlib import Path

_root = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(_root), str(_root / "src")]

# Synchronous context (e.g., hooks, scripts)
from agents.lib.provider_selection_publisher import publish_provider_selection_sync  # noqa: E402

correlation_id = str(uuid.uuid4())

delivered = publish_provider_selection_sync(
    provider_name="claude",
    model_name="claude-3-5-sonnet-20241022",
    correlation_id=correlation_id,
    selection_reason="High quality",
    selection_criteria={},
)

sys.exit(0 if delivered else 1)
