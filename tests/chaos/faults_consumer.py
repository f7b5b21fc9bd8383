"""Ingest faults: the consumer SIGKILLed again and again while PostgreSQL restarts (scenario 3)."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

from tests.chaos import kit
from tests.chaos.harness import Services, check_exact, finish_drivers, start_drivers
from tests.support import migrated_schema


# -- 3. consumer SIGKILLs and PostgreSQL restarts ---------------------------------------------------
def consumer_kills_and_pg_restarts(
    services: Services,
    postgres: kit.PostgresControl,
    *,
    events: int,
    kills: int = 10,
    pg_restarts: tuple[str, ...] = ("pg-stop", "pg-kill"),
    publishers: int = 2,
    duration: float = 30.0,
    batch_size: int = 500,
    seed: int = 8,
) -> dict[str, Any]:
    """Events flow in for ``duration`` seconds while the consumer is SIGKILLed ``kills`` times
    (restarted each time) and PostgreSQL is restarted once per entry of ``pg_restarts``
    (``pg-stop``: a clean stop, ``pg-kill``: a crash): the table ends with exactly the
    published set."""
    work = services.workdir
    topic = services.new_topic(6)
    env = services.publisher_env(topic)
    rng = random.Random(seed)
    faults = ["kill"] * kills
    for i, kind in enumerate(pg_restarts):  # spread the restarts among the kills
        faults.insert((i + 1) * kills // (len(pg_restarts) + 1) + i, kind)
    with migrated_schema(services.database_url, "chaos_consumer") as schema:
        consumer = services.consumer(
            schema.dsn,
            topic,
            # static membership: a restarted consumer takes its partitions back at once
            extra=(
                "--instance-id",
                f"i-{uuid.uuid4().hex[:8]}",
                "--batch-size",
                str(batch_size),
                "--verbose",  # a JSON line per batch: rows re-read after a kill show as duplicates
            ),
        )
        began = time.monotonic()
        procs = start_drivers(
            env, work, publishers, events // publishers, chunk=200, duration=duration, cids=300
        )
        consumer.start()
        resumes, pg_outages, done = [], [], []
        try:
            for i, fault in enumerate(faults):
                threshold = events * (i + 1) // (len(faults) + 2)
                consumer.wait_rows(
                    threshold, f"{threshold} rows before fault {i + 1} ({fault})", 240, 0.002
                )
                before = kit.table_count(schema.dsn)
                at = time.monotonic()
                if fault == "kill":
                    # every other kill lands right after a batch's rows committed, most likely
                    # before its offsets did (the batch is re-read); the rest anywhere in a batch
                    time.sleep(0.0 if i % 2 == 0 else rng.uniform(0, 0.05))
                    consumer.kill()
                    consumer.start()
                else:
                    (postgres.stop if fault == "pg-stop" else postgres.kill)()
                    time.sleep(1.5)  # the consumer keeps reading, fails to write, backs off
                    consumer.assert_alive()
                    postgres.start()
                    pg_outages.append(time.monotonic() - at)
                # time until the consumer stores new rows again
                waited = consumer.wait_rows(
                    before + 1, f"rows to grow after fault {i + 1} ({fault})", 240, 0.02
                )
                resumes.append((fault, round(time.monotonic() - at, 2), round(waited, 2)))
                done.append(fault)
            run = finish_drivers(procs, timeout=duration + 300)
            last_fault_at = time.monotonic()
            consumer.wait_rows(
                len(set(run.accepted)), "the consumer to store every published event", 300, 0.1
            )
            caught_up = time.monotonic()
            totals = consumer.stop()
            exact = check_exact(schema.dsn, run.accepted)
        finally:
            consumer.close()
            for proc, _ in procs:
                if proc.poll() is None:
                    proc.kill()
    assert not run.errors, run.errors[:3]
    events_log = consumer.all_events()
    kinds = [e.get("event") for e in events_log]
    return {
        "events": len(run.accepted),
        "consumer_kills": done.count("kill"),
        "pg_restarts": len(done) - done.count("kill"),
        "pg_restart_kinds": [f for f in done if f != "kill"],
        "consumer_runs": consumer.runs,
        **exact,
        "db_unavailable_reports": kinds.count("db_unavailable"),
        "db_recovered_reports": kinds.count("db_recovered"),
        "reread_rows_skipped": sum(
            e.get("duplicates", 0) for e in events_log if e.get("event") == "batch"
        ),
        "final_run_duplicates_skipped": totals["duplicates"],
        "max_resume_after_kill_s": max((r[1] for r in resumes if r[0] == "kill"), default=None),
        "max_resume_after_pg_restart_s": max(
            (r[1] for r in resumes if r[0] != "kill"), default=None
        ),
        "max_pg_outage_s": round(max(pg_outages), 2) if pg_outages else None,
        "catch_up_after_publishing_s": round(caught_up - last_fault_at, 2),
        "total_s": round(caught_up - began, 1),
    }
