"""The integration guide's aiokafka consumer example, verbatim, plus a small runnable wrapper.

Everything between the two "guide" markers is copied unchanged from the guide's "Consumer
Example" section (tests/unit/test_consumer_units.py checks it has not drifted). The wrapper
below it only makes it runnable and stoppable:

    python examples/guide_consumer.py                 # the guide's topic and broker, forever
    GUIDE_TOPIC=t GUIDE_BOOTSTRAP_SERVERS=host:port \
    GUIDE_MAX_MESSAGES=1 GUIDE_TIMEOUT=60 python examples/guide_consumer.py

GUIDE_TOPIC / GUIDE_BOOTSTRAP_SERVERS point the unchanged code at another topic or broker (as
the tests do); GUIDE_MAX_MESSAGES stops after that many events; GUIDE_TIMEOUT gives up (exit 1)
after that many seconds.
"""
# ruff: noqa: I001  (the guide's import order is kept as written)

# fmt: off
# ---- guide: begin (verbatim) ----------------------------------------------------------------
from aiokafka import AIOKafkaConsumer
import json

async def consume_provider_selection_events():
    """Consume and process provider selection events."""
    consumer = AIOKafkaConsumer(
        'omninode.agent.provider.selected.v1',
        bootstrap_servers='localhost:29092',
        value_deserializer=lambda m: json.loads(m.decode('utf-8'))
    )

    await consumer.start()
    try:
        async for message in consumer:
            event = message.value
            payload = event['payload']

            # Process event
            print(f"Provider selected: {payload['provider_name']}")
            print(f"Model: {payload['model_name']}")
            print(f"Reason: {payload['selection_reason']}")
            print(f"Criteria: {payload['selection_criteria']}")

            # Store in database, update analytics, etc.

    finally:
        await consumer.stop()
# ---- guide: end ------------------------------------------------------------------------------
# fmt: on

# ---- runnable wrapper (not part of the guide) -------------------------------------------------
import asyncio  # noqa: E402
import builtins  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

_GuideConsumer = AIOKafkaConsumer
_TOPIC = os.environ.get("GUIDE_TOPIC")
_BOOTSTRAP = os.environ.get("GUIDE_BOOTSTRAP_SERVERS")
_MAX_MESSAGES = int(os.environ.get("GUIDE_MAX_MESSAGES", "0"))
_TIMEOUT = float(os.environ.get("GUIDE_TIMEOUT", "0"))
_LINES_PER_MESSAGE = 4  # the guide prints four lines per event
_printed = 0


class _Enough(Exception):
    """Raised after GUIDE_MAX_MESSAGES events; the guide's finally block stops the consumer."""


def AIOKafkaConsumer(*topics: str, **kwargs: Any) -> Any:
    """The guide's constructor call, pointed at GUIDE_TOPIC / GUIDE_BOOTSTRAP_SERVERS if set."""
    if _TOPIC:
        topics = (_TOPIC,)
    if _BOOTSTRAP:
        kwargs["bootstrap_servers"] = _BOOTSTRAP
    return _GuideConsumer(*topics, **kwargs)


def print(*args: Any, **kwargs: Any) -> None:
    """The guide's print, flushed, counting events to stop after GUIDE_MAX_MESSAGES."""
    global _printed
    builtins.print(*args, **kwargs, flush=True)
    _printed += 1
    if _MAX_MESSAGES and _printed >= _MAX_MESSAGES * _LINES_PER_MESSAGE:
        raise _Enough


async def _main() -> int:
    try:
        await asyncio.wait_for(consume_provider_selection_events(), timeout=_TIMEOUT or None)
    except _Enough:
        return 0
    except TimeoutError:
        builtins.print(f"no more events within {_TIMEOUT:g}s", file=sys.stderr)
        return 1 if _printed < max(1, _MAX_MESSAGES) * _LINES_PER_MESSAGE else 0
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main()))
