"""A publishing process for the fault tests: the product's ``Publisher``, paced, every result kept.

Run as ``python publisher_driver.py --count N --out FILE [...]`` with the product's environment
(``KAFKA_BOOTSTRAP_SERVERS``, ``PROVIDER_EVENTS_TOPIC``, ``PROVIDER_EVENTS_STATE_DIR``...).
It publishes ``count`` events in chunks of ``--chunk`` (one ``send_many_sync`` call each),
spread over ``--duration`` seconds, cycling through ``--cids`` correlation ids, and writes one
JSON line per chunk to ``--out``: event ids, statuses, when the call started (wall clock), its
seconds and the first error.
Each event carries ``{"seq": n, "t": wall_time}`` in its criteria: ``seq`` counts per
correlation id, so the tests can check order per key on the topic.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--chunk", type=int, default=250)
    parser.add_argument("--duration", type=float, default=0.0)
    parser.add_argument("--cids", type=int, default=100)
    parser.add_argument("--cid-prefix", default="c")
    parser.add_argument("--seq-start", type=int, default=0, help="first seq of each id")
    parser.add_argument("--delivery", choices=["sync", "background"], default="sync")
    args = parser.parse_args()

    from provider_events import Publisher

    publisher = Publisher()
    seqs: dict[str, int] = {}
    started = time.monotonic()
    chunks = max(1, -(-args.count // args.chunk))
    interval = args.duration / chunks
    sent = 0
    with open(args.out, "a", buffering=1) as out:
        for n in range(chunks):
            due = started + n * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            events = []
            for i in range(sent, min(args.count, sent + args.chunk)):
                cid = f"{args.cid_prefix}-{i % args.cids}"
                seq = seqs[cid] = seqs.get(cid, args.seq_start - 1) + 1
                events.append(
                    publisher.build(
                        provider_name=("claude", "gemini-flash", "openai")[i % 3],
                        model_name="chaos-model",
                        correlation_id=cid,
                        selection_reason="chaos",
                        selection_criteria={"seq": seq, "t": time.time()},
                    )
                )
            sent += len(events)
            at, t0 = time.time(), time.monotonic()
            results = publisher.send_many_sync(events, args.delivery)
            seconds = time.monotonic() - t0
            errors = [r.error for r in results if r.status.value == "failed"]
            # why the first event was not delivered: behind a backlog (no network wait at all),
            # the bound, the broker reported down...
            why = next((r.error for r in results if r.status.value != "delivered"), None)
            out.write(
                json.dumps(
                    {
                        "ids": [r.event_id for r in results],
                        "st": [r.status.value for r in results],
                        "s": round(seconds, 4),
                        "at": round(at, 3),
                        "error": errors[0] if errors else None,
                        "why": why[:80] if why else None,
                    }
                )
                + "\n"
            )
    publisher.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
