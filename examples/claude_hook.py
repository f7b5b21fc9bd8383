#!/usr/bin/env python3
"""The integration guide's "3. Claude Hooks Integration" snippet as a working hook.

``on_provider_selected`` is the guide's code. ``main`` is the least a hook needs around it:
read Claude Code's hook JSON from stdin, use ``session_id`` as the correlation id, take the
provider and model from the environment Claude Code gives the hook, print nothing (for
UserPromptSubmit stdout becomes part of the prompt) and always exit 0 (exit 2 blocks the prompt).

The guide's call is synchronous: with Kafka down it waits up to the delivery timeout before the
event is spooled. For daily use register ``provider-events hook install`` instead: same event,
background mode (never waits on Kafka), provider matched from settings.json, problems logged.

    echo '{"session_id": "abc", "hook_event_name": "UserPromptSubmit"}' | examples/claude_hook.py
"""

import json
import os
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

_root = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(_root), str(_root / "src")]

# In UserPromptSubmit or similar hook
from agents.lib.provider_selection_publisher import publish_provider_selection_sync  # noqa: E402


def on_provider_selected(provider_name: str, model_name: str, correlation_id: str):
    """Called when a provider/model is selected."""
    publish_provider_selection_sync(
        provider_name=provider_name,
        model_name=model_name,
        correlation_id=correlation_id,
        selection_reason="Hook-based provider selection",
        selection_criteria={},
    )


def main() -> int:
    try:
        hook = json.load(sys.stdin)
        base_url = os.environ.get("ANTHROPIC_BASE_URL", "")
        provider_name = (urlsplit(base_url).hostname or "custom") if base_url else "claude"
        model_name = (
            os.environ.get("ANTHROPIC_MODEL")
            or os.environ.get("ANTHROPIC_DEFAULT_SONNET_MODEL")
            or "claude-sonnet-4-5"
        )
        correlation_id = str(hook.get("session_id") or uuid.uuid4())
        on_provider_selected(provider_name, model_name, correlation_id)
    except Exception as exc:  # a hook must never break the prompt
        print(f"claude_hook.py: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
