#!/usr/bin/env python3
"""Publish an ``omninode.agent.provider.selected.v1`` event (the integration guide's CLI).

    python3 scripts/publish_provider_selection.py --provider P --model M --reason R \
        [--criteria JSON] [--correlation-id ID] [--causation-id ID] [--background] [--quiet|--verbose]

Exit 0 delivered, 1 not delivered (spooled to the outbox, delivered later), 2 bad input.
Same as ``provider-events publish``.
"""

import sys
from pathlib import Path

_src = Path(__file__).resolve().parent.parent / "src"
if _src.is_dir():
    sys.path.insert(0, str(_src))

from provider_events.cli._publish import script_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(script_main())
