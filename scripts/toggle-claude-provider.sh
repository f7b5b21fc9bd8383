#!/usr/bin/env bash
# Switch Claude Code between AI providers and record the choice as a provider-selection event.
#
#   scripts/toggle-claude-provider.sh PROVIDER | list | status      [--settings PATH] [--no-event]
#                                                                   [--quiet | --verbose]
#   PROVIDER: claude, zai, together, openrouter, gemini-pro, gemini-flash, gemini-2.5-flash
#
# A thin wrapper around `provider-events switch` (same arguments, same exit codes: 0 switched,
# 2 bad input such as a missing API key, 1 settings.json could not be written). The event is
# queued in background mode, so a Kafka outage never slows or fails a switch.
# Uses the checkout's src/ when run from a checkout; set PYTHON to choose the interpreter.
set -euo pipefail

script="${BASH_SOURCE[0]}"
if resolved="$(readlink -f -- "$script" 2>/dev/null)"; then
    script="$resolved"
fi
src="$(cd -- "$(dirname -- "$script")/.." && pwd)/src"
if [[ -d "$src/provider_events" ]]; then
    export PYTHONPATH="$src${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "${PYTHON:-python3}" -m provider_events.cli switch "$@"
