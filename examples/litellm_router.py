#!/usr/bin/env python3
"""LiteLLM routes, provider-events records: a Router with a fallback, one selection per call.

    pip install '.[litellm]'                      # or: pip install 'provider-events[litellm]'
    python3 examples/litellm_router.py BASE_URL   # an OpenAI-compatible API (e.g. a local mock)

``BASE_URL/fail/v1`` is the primary deployment (it should fail, to show the fallback) and
``BASE_URL/v1`` the backup. Each call's selection names the requested model group, the model
that served it, the fallbacks tried, tokens, LiteLLM's cost and the measured latency; the
failed first attempt is recorded too. Events go where ``provider-events`` sends them
(KAFKA_BOOTSTRAP_SERVERS, or the embedded store with PROVIDER_EVENTS_SINK=local).
"""

import os
import sys
from pathlib import Path

_root = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(_root / "src")]
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: LiteLLM's own copy

import litellm  # noqa: E402

from provider_events.integrations.litellm import ProviderEventsLogger  # noqa: E402

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:4000"
recorder = ProviderEventsLogger()
litellm.callbacks = [recorder]

router = litellm.Router(
    model_list=[
        {"model_name": "chat", "litellm_params": {
            "model": "openai/gpt-4o", "api_base": f"{base}/fail/v1", "api_key": "k"}},
        {"model_name": "chat-backup", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": f"{base}/v1", "api_key": "k"}},
    ],
    fallbacks=[{"chat": ["chat-backup"]}],
    num_retries=0,
)  # fmt: skip
answer = router.completion(
    model="chat",
    messages=[{"role": "user", "content": "Say hello"}],
    metadata={"provider_events_correlation_id": "example-request-1"},  # optional: your own id
)
print(answer.choices[0].message.content)
recorder.flush(30)  # a script about to exit waits for its events (a server needs no flush)
print(
    f"recorded: {recorder.stats['published']} delivered, {recorder.stats['not_delivered']} in the outbox"
)
