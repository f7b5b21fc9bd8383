"""Consumer group scale-out: 1, 2 and 3 `consume` processes in one group on 6 partitions.

N events (1,000,000 at scale 1) go to a fresh 6-partition topic once; then, in the same run,
a group of 1, of 2 and of 3 `provider-events consume --until-idle` processes (a fresh group
each time) stores them in an empty table (migration 0001: the table and its indexes). A run's
rate counts from the processes' start until the table holds every event (polled every 0.1 s),
so start-up and the group's rebalances are inside. Each member's CPU seconds show where the time goes: on a
machine with fewer free cores than members, the members share the CPU rather than add to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from benchmarks import bench_ingest  # noqa: E402
from benchmarks._harness import Comparison, Context  # noqa: E402
from benchmarks._kafka import delete_topics  # noqa: E402
from provider_events.store import TABLE, discover, migrate  # noqa: E402
from provider_events.store._scratch import scratch_schema  # noqa: E402

SIZES = (1, 2, 3)


def consume_group(dsn: str, bootstrap: str, topic: str, n: int, members: int) -> dict[str, Any]:
    """``members`` consumer processes of one fresh group, until the table holds ``n`` rows
    (then SIGTERM); rate and CPU. Not ``--until-idle``: a member idle while the group
    rebalances would leave, and partitions handed to it afterwards would go unread."""
    env = dict(
        os.environ,
        DATABASE_URL=dsn,
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        PROVIDER_EVENTS_TOPIC=topic,
        PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    )
    group = f"bench-group-{uuid.uuid4().hex[:8]}"
    cmd = [
        sys.executable, "-m", "provider_events.cli", "consume", "--group-id", group,
        "--batch-size", str(bench_ingest.BATCH_SIZE), "--metrics-port", "off", "--json",
    ]  # fmt: skip
    with contextlib.ExitStack() as stack:
        outs = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(members)]
        started = time.perf_counter()
        procs = [
            subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.DEVNULL) for out in outs
        ]
        first_row_at = None
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                deadline = time.monotonic() + 900
                while True:
                    row = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
                    count = int(row[0]) if row else 0
                    if count and first_row_at is None:
                        first_row_at = time.perf_counter()
                    if count >= n:
                        break
                    dead = [p.returncode for p in procs if p.poll() is not None]
                    if dead or time.monotonic() > deadline:
                        raise RuntimeError(f"group of {members}: {count} of {n} rows, {dead}")
                    time.sleep(0.1)
            seconds = time.perf_counter() - started
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
        cpu = []
        for proc in procs:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu.append(usage.ru_utime + usage.ru_stime)
        inserted = []
        for out in outs:
            out.seek(0)
            lines = [json.loads(x) for x in out.read().decode().splitlines() if x.startswith("{")]
            stop: dict[str, Any] = next((e for e in lines if e.get("event") == "stopped"), {})
            inserted.append(int(stop.get("inserted", -1)))
    steady = seconds - ((first_row_at or started) - started)
    return {
        "seconds": seconds,
        "rate": n / seconds,
        "steady_rate": n / steady if steady > 0 else float("nan"),
        "cpu": cpu,
        "per_member": inserted,
    }


def run(ctx: Context, console: Console) -> list[Comparison]:
    if not ctx.database_url:
        console.print("[red]DATABASE_URL is not set; skipping group[/]")
        return []
    n = ctx.n(1_000_000, minimum=1000)
    topic = bench_ingest._topic(ctx.bootstrap)
    console.print(f"producing {n:,} events to {topic} (6 partitions) …")
    bench_ingest.produce(ctx.bootstrap, topic, n)
    results: dict[int, dict[str, Any]] = {}
    for members in SIZES:
        with scratch_schema(ctx.database_url, "bench_group") as schema:
            migrate(schema.dsn, migrations=discover()[:1])
            console.print(f"group of {members}: {n:,} events …")
            results[members] = r = consume_group(schema.dsn, ctx.bootstrap, topic, n, members)
            console.print(
                f"  {r['rate']:,.0f} rows/s in {r['seconds']:.1f}s; rows per member "
                f"{r['per_member']}; CPU s per member {[round(c, 1) for c in r['cpu']]}"
            )
    delete_topics(ctx.bootstrap, topic)
    one = results[1]
    rows = []
    for members in SIZES[1:]:
        r = results[members]
        rows.append(
            Comparison(
                name=f"group of {members} on 6 partitions, {n:,} events",
                ours=r["rate"],
                peer=one["rate"],
                unit="rows/s",
                peer_name="a group of 1 (same run)",
                notes={
                    "cores on this machine": os.cpu_count(),
                    "rows/s from first message to last commit": f"{r['steady_rate']:,.0f}",
                    "group of 1 rows/s from first message": f"{one['steady_rate']:,.0f}",
                    "CPU seconds per member": [round(c, 1) for c in r["cpu"]],
                    "group of 1 CPU seconds": round(one["cpu"][0], 1),
                    "rows per member": r["per_member"],
                },
            )
        )
    return rows
