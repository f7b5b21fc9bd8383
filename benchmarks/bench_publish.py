"""Publish throughput: our async API vs a bare confluent-kafka producer vs aiokafka send_and_wait.

All three send the same events to fresh topics on the same broker in the same run. Ours builds
and validates every envelope (the bare producers get our pre-serialised bytes and headers for
free; the bare confluent-kafka one gets the headers as a dict, the form our producer hands to
confluent-kafka, which converts it faster than a list of tuples).
The aiokafka loop awaits each send like the guide's original code, so it is measured on a
bounded subset (it is latency-bound, ~1 round trip per event).
"""

from __future__ import annotations

import asyncio
import statistics
import time

from rich.console import Console

from ._harness import Comparison, Context
from ._kafka import bench_settings, delete_topics, fresh_topic

CHUNK = 10_000


def _selections(n: int) -> list[dict]:
    providers = ["claude", "gemini-flash", "gemini-pro", "zai", "together", "openrouter"]
    return [
        {
            "provider_name": providers[i % len(providers)],
            "model_name": f"model-{i % 17}",
            "correlation_id": f"req-{i % 1000}",
            "selection_reason": "benchmark",
            "selection_criteria": {
                "cost_per_token": 0.000001,
                "latency_ms": 50,
                "quality_score": 0.85,
            },
        }
        for i in range(n)
    ]


def _ours(ctx: Context, n: int) -> tuple[float, list]:
    from provider_events import Publisher

    topic = fresh_topic(ctx.bootstrap, "ours")
    publisher = Publisher(bench_settings(ctx.bootstrap, topic, delivery_timeout=60.0))
    selections = _selections(n)

    async def main() -> list:
        # warm up the connection and idempotent producer id outside the timing
        await publisher.publish(**selections[0])
        started = time.perf_counter()
        # Chunks are awaited together, as concurrent callers would: building one chunk
        # overlaps with the broker acknowledging the previous ones.
        chunks = await asyncio.gather(
            *(publisher.publish_many(selections[i : i + CHUNK]) for i in range(0, n, CHUNK))
        )
        return [time.perf_counter() - started, [r for chunk in chunks for r in chunk]]

    elapsed, results = asyncio.run(main())
    delivered = sum(r.delivered for r in results)
    assert delivered == n, f"only {delivered}/{n} delivered"
    events = [publisher.build(**s) for s in selections]  # same shape of bytes for the peers
    delete_topics(ctx.bootstrap, topic)
    return n / elapsed, events


def _bare_confluent(ctx: Context, events: list) -> float:
    from confluent_kafka import Producer

    topic = fresh_topic(ctx.bootstrap, "bare")
    producer = Producer(
        {
            "bootstrap.servers": ctx.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "compression.type": "none",  # the same as ours
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 500_000,
        }
    )
    acked = [0]

    def on_delivery(err, msg) -> None:
        if err is None:
            acked[0] += 1

    # Headers as a dict, as our producer hands them to confluent-kafka: it converts a dict in
    # about half the time of a list of (name, value) tuples (same headers, same order on the
    # wire). Made outside the timing, like the serialised bytes.
    messages = [(e.value, e.key, dict(e.headers)) for e in events]
    assert all(len(h) == len(e.headers) for (_, _, h), e in zip(messages, events, strict=True))
    producer.produce(
        topic, events[0].value, events[0].key, headers=messages[0][2], on_delivery=on_delivery
    )
    producer.flush(30)
    acked[0] = 0
    started = time.perf_counter()
    for value, key, headers in messages:
        while True:
            try:
                producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(120)
    elapsed = time.perf_counter() - started
    assert acked[0] == len(events)
    delete_topics(ctx.bootstrap, topic)
    return len(events) / elapsed


def _aiokafka_loop(ctx: Context, events: list) -> float:
    from aiokafka import AIOKafkaProducer

    topic = fresh_topic(ctx.bootstrap, "aiokafka")

    async def main() -> float:
        producer = AIOKafkaProducer(
            bootstrap_servers=ctx.bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            await producer.send_and_wait(
                topic, events[0].value, key=events[0].key, headers=events[0].headers
            )
            started = time.perf_counter()
            for e in events:
                await producer.send_and_wait(topic, e.value, key=e.key, headers=e.headers)
            return len(events) / (time.perf_counter() - started)
        finally:
            await producer.stop()

    rate = asyncio.run(main())
    delete_topics(ctx.bootstrap, topic)
    return rate


ROUNDS = 3


def run(ctx: Context, console: Console) -> list[Comparison]:
    n = ctx.n(100_000, minimum=1_000)
    console.print(f"publishing {n:,} events each way, {ROUNDS} alternating rounds (median) ...")
    ours_rates, bare_rates = [], []
    for _ in range(ROUNDS):
        rate, events = _ours(ctx, n)
        ours_rates.append(rate)
        bare_rates.append(_bare_confluent(ctx, events))
    ours, bare = statistics.median(ours_rates), statistics.median(bare_rates)
    subset = events[: min(n, ctx.n(5_000, minimum=500))]
    aio = _aiokafka_loop(ctx, subset)
    return [
        Comparison(
            "publish events/s vs bare confluent-kafka",
            ours,
            bare,
            "ev/s",
            "confluent-kafka Producer (pre-serialised)",
            target=0.5,
            notes={
                "events per round": n,
                "ours per round": [round(r) for r in ours_rates],
                "bare per round": [round(r) for r in bare_rates],
            },
        ),
        Comparison(
            "publish events/s vs aiokafka send_and_wait",
            ours,
            aio,
            "ev/s",
            "aiokafka send_and_wait loop",
            notes={"aiokafka events": len(subset)},
        ),
    ]
