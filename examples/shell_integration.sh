#!/bin/bash
# The integration guide's "2. Shell Script Integration" snippet, runnable from anywhere:
# the only addition is the `cd` to the checkout, since the guide calls scripts/... relatively.
# KAFKA_BOOTSTRAP_SERVERS and PROVIDER_EVENTS_TOPIC apply. Exits 0 even when the publish fails,
# as the guide intends (`|| true`); the event then waits in the local outbox for the relay.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

# After successfully switching provider:
PROVIDER_NAME="gemini-flash"
MODEL_NAME="gemini-1.5-flash-002"
SELECTION_REASON="User requested switch to Gemini Flash"

# Publish provider selection event (non-blocking, failure won't stop script)
python3 scripts/publish_provider_selection.py \
    --provider "$PROVIDER_NAME" \
    --model "$MODEL_NAME" \
    --reason "$SELECTION_REASON" \
    --criteria '{"cost_per_token": 0.000001, "latency_ms": 50}' \
    || true  # Don't fail script if event publish fails
