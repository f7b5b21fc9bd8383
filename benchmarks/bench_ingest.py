"""Ingest: Kafka topic -> PostgreSQL with `provider-events consume`, against COPY from a CSV.

N events (1,000,000 at scale 1) are produced to a fresh 6-partition topic first. The consumer
runs as its own process (`python -m provider_events.cli consume --until-idle`) into an empty,
freshly migrated table; its rate counts from process start to the last committed batch, so
interpreter start-up, group join, decoding and validation, the writes and the offset commits
are all inside. Then the same rows, exported to a CSV file, are loaded with COPY FROM STDIN
(what `psql \\copy` does) into an identical empty table, in one transaction.

Two comparisons: the table with its indexes alone (migration 0001: the consumer's own cost),
and the full schema (every migration, including the rollup triggers of 0002, which do their
work once per statement: one big COPY statement and the consumer's per-batch COPYs differ).

More through the consumer's batch writer (no Kafka, bounded: ~2 minutes at scale 1): the
adversarial histogram case (22,000 events with distinct, wildly spread latency and cost values
in one hour for one provider, then 20,000 ordinary events for that provider and hour against
20,000 for a clean provider: target <= 1.5x the clean time), and the write rate with the
rollups maintained against the bare table (migration 0001 only), on the same rows: 30,000
ordinary rows at 5,000 and 20,000-row batches, and 200,000 rows of bench_analytics' realistic
stream at the default 5,000 (target >= 0.7x). The rollups' time includes their final merge.

BENCH_INGEST_PARTITIONED=1 adds a third run into a monthly range-partitioned variant of the
table (unique (event_id, selected_at)), to measure what partitioning costs at ingest.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console

# This checkout's package, also for the consumer child (as conftest.py does for the tests):
# an editable install elsewhere must not decide which code is measured.
SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from benchmarks._harness import Comparison, Context  # noqa: E402
from provider_events.events._envelope import build_provider_selection  # noqa: E402
from provider_events.events._ids import format_timestamp, uuid7  # noqa: E402
from provider_events.settings import load_settings  # noqa: E402
from provider_events.store import (  # noqa: E402
    COLUMNS,
    TABLE,
    BatchWriter,
    Migration,
    Row,
    discover,
    migrate,
)
from provider_events.store._scratch import scratch_schema  # noqa: E402

PARTITIONS = 6
BATCH_SIZE = int(os.environ.get("BENCH_INGEST_BATCH_SIZE", "20000"))
_SELECTIONS = [
    (
        "gemini-flash",
        "gemini-1.5-flash-002",
        {"cost_per_token": 1e-6, "latency_ms": 50, "quality_score": 0.85},
    ),
    ("claude", "claude-3-5-sonnet-20241022", {"quality_score": 0.95, "cost_per_token": 0.003}),
    ("openai", "gpt-4", {"cost_per_token": 0.00003, "latency_ms": 900}),
    (
        "together",
        "llama-3.1-70b",
        {"cost_per_token": 9e-7, "latency_ms": 120, "quality_score": 0.8},
    ),
]


def _topic(bootstrap: str) -> str:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    name = f"bench.ingest.{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)])[
        name
    ].result(60)
    return name


def produce(bootstrap: str, topic: str, n: int) -> float:
    """Produce ``n`` valid, distinct events; returns seconds. Fast: templated envelopes.

    One real envelope per (provider, correlation id) is built and validated by
    ``build_provider_selection``; each event is that template with a fresh ``event_id`` and
    timestamps. ~1000 correlation ids (the guide's cardinality) spread over the partitions.
    """
    from confluent_kafka import Producer

    from provider_events.publish._producer import kafka_config

    settings = load_settings(kafka_bootstrap_servers=bootstrap, topic=topic)
    templates = []
    for i in range(1000):
        provider, model, criteria = _SELECTIONS[i % len(_SELECTIONS)]
        event = build_provider_selection(
            provider_name=provider,
            model_name=model,
            correlation_id=str(uuid7()),
            selection_reason="Cost-effective for high-volume pattern matching",
            selection_criteria=criteria,
            settings=settings,
        )
        document = json.loads(event.value)
        stamp = document["timestamp"]
        # "%s" slots: event_id, then the envelope's and the payload's timestamps.
        text = event.value.decode().replace(document["event_id"], "%(id)s").replace(stamp, "%(ts)s")
        templates.append((event.key, text))
    conf = kafka_config(settings)
    conf.update({"linger.ms": 50, "message.timeout.ms": 120_000, "request.timeout.ms": 30_000})
    producer = Producer(conf)
    started = time.perf_counter()
    base = datetime.now(UTC) - timedelta(days=20)
    failures: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    for i in range(n):
        key, text = templates[i % 1000]
        ts = format_timestamp(base + timedelta(milliseconds=i))
        value = (text % {"id": uuid.uuid4(), "ts": ts}).encode()
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise RuntimeError("benchmark events not all acknowledged")
    if failures:
        raise RuntimeError(f"{len(failures)} benchmark events failed: {failures[0]}")
    return time.perf_counter() - started


def consume(dsn: str, bootstrap: str, topic: str, n: int) -> dict[str, Any]:
    """Run the consumer as a child process until idle; its rate, CPU and peak RSS."""
    env = dict(
        os.environ,
        DATABASE_URL=dsn,
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        PROVIDER_EVENTS_TOPIC=topic,
        PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    )
    cmd = [
        sys.executable,
        "-m",
        "provider_events.cli",
        "consume",
        "--group-id",
        f"bench-{uuid.uuid4().hex[:8]}",
        "--batch-size",
        str(BATCH_SIZE),
        "--until-idle",
        "3",
        "--metrics-port",
        "off",
        "--json",
    ]
    with tempfile.TemporaryFile() as out:
        spawned = time.time()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.PIPE)
        # Peak RSS is the child's own VmHWM: ru_maxrss would include the forked copy of this
        # (large) process from before exec.
        peak_kib = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak_kib = max(peak_kib, _vm_hwm_kib(proc.pid))
            time.sleep(0.1)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        events = [json.loads(line) for line in out.read().decode().splitlines() if line.strip()]
    if proc.returncode != 0:
        raise RuntimeError(
            f"consumer exited {proc.returncode}: {proc.stderr.read().decode()[-500:]}"
        )
    stopped = next(e for e in events if e["event"] == "stopped")
    if stopped["inserted"] != n:
        raise RuntimeError(f"consumer inserted {stopped['inserted']} of {n}")
    # Up to the end of the last commit or of the final rollup merge, whichever is later: the
    # rate includes every cost of keeping the rollups.
    done = max(stopped["last_commit_at"], stopped.get("rollups_merged_at") or 0.0)
    seconds = done - spawned
    steady = done - stopped["first_message_at"]
    return {
        "seconds": seconds,
        "rate": n / seconds,
        "steady_rate": n / steady if steady > 0 else float("nan"),
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mib": peak_kib / 1024.0,
        "batches": stopped["batches"],
    }


def _vm_hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def export_csv(dsn: str, path: Path) -> None:
    cols = ", ".join(COLUMNS)
    query = f"COPY (SELECT {cols} FROM {TABLE} ORDER BY id) TO STDOUT (FORMAT csv)"
    with (
        psycopg.connect(dsn) as conn,
        conn.cursor() as cur,
        path.open("wb") as f,
        cur.copy(query) as copy,
    ):
        for block in copy:
            f.write(block)


def copy_csv(dsn: str, path: Path, n: int) -> float:
    """COPY the CSV into the (empty, migrated) table in one transaction; rows per second."""
    cols = ", ".join(COLUMNS)
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        query = f"COPY {TABLE} ({cols}) FROM STDIN (FORMAT csv)"
        with conn.cursor() as cur, path.open("rb") as f, cur.copy(query) as copy:
            while block := f.read(1 << 20):
                copy.write(block)
        conn.commit()
        seconds = time.perf_counter() - started
        count = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
    if count is None or count[0] != n:
        raise RuntimeError(f"COPY loaded {count} rows, expected {n}")
    return n / seconds


#: Migration 0001 as a monthly range-partitioned table; later migrations (rollup triggers) apply
#: on top unchanged, so both variants carry the same ingest-time work.
PARTITIONED_0001 = """
CREATE TABLE provider_selection_events (
    id bigint GENERATED ALWAYS AS IDENTITY,
    event_id uuid NOT NULL,
    correlation_id text NOT NULL,
    provider_name varchar(100) NOT NULL,
    model_name varchar(200) NOT NULL,
    selection_reason text,
    selection_criteria jsonb NOT NULL DEFAULT '{}'::jsonb,
    selected_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    tenant_id text NOT NULL DEFAULT 'default',
    namespace text NOT NULL,
    source text NOT NULL,
    causation_id text,
    event_timestamp timestamptz NOT NULL,
    kafka_partition integer,
    kafka_offset bigint,
    PRIMARY KEY (id, selected_at),
    CONSTRAINT provider_selection_events_event_id_key UNIQUE (event_id, selected_at)
) PARTITION BY RANGE (selected_at);
CREATE INDEX idx_provider_selection_events_correlation_id
    ON provider_selection_events (correlation_id);
CREATE INDEX idx_provider_selection_events_provider_name
    ON provider_selection_events (provider_name);
CREATE INDEX idx_provider_selection_events_selected_at
    ON provider_selection_events (selected_at DESC);
CREATE INDEX idx_provider_selection_events_tenant_selected_at
    ON provider_selection_events (tenant_id, selected_at);
"""


def _partitioned_migrations() -> list[Migration]:
    first, *rest = discover()
    return [Migration(first.version, first.name, PARTITIONED_0001), *rest]


def _partition_months(conn: psycopg.Connection[Any]) -> None:
    now = datetime.now(UTC)
    month = datetime(now.year, now.month, 1, tzinfo=UTC)
    starts = [month]
    for _ in range(2):  # the previous two months (events are dated up to 20 days back)
        prev = starts[0] - timedelta(days=1)
        starts.insert(0, datetime(prev.year, prev.month, 1, tzinfo=UTC))
    nxt = month + timedelta(days=32)
    starts.append(datetime(nxt.year, nxt.month, 1, tzinfo=UTC))
    for start, end in itertools.pairwise(starts):
        conn.execute(
            f"CREATE TABLE provider_selection_events_{start:%Y_%m} PARTITION OF {TABLE} "
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )
    conn.execute(f"CREATE TABLE provider_selection_events_default PARTITION OF {TABLE} DEFAULT")


#: (label, migrations): the table and its indexes alone measure the consumer's own overhead;
#: the full schema adds the ingest-time work later migrations attach (rollup triggers).
def _rows(n: int, provider: str, hour: datetime, criteria: Any) -> list[Row]:
    """``n`` table rows for ``provider`` within ``hour``; ``criteria(i)`` gives each one's."""
    out: list[Row] = []
    for i in range(n):
        at = hour + timedelta(microseconds=i * 97 % 3_599_000_000)
        out.append(
            (
                uuid.uuid4(),
                f"req-{i}",
                provider,
                "model-x",
                "bench",
                json.dumps(criteria(i)).encode(),
                at,
                "tenant-a",
                "omninode",
                "bench",
                None,
                at,
                None,
                None,
            )
        )
    return out


def _ordinary(i: int) -> dict[str, Any]:
    return {"cost_per_token": (1e-6, 3e-6, 1.5e-5)[i % 3], "latency_ms": 40 + i % 400}


def _write(dsn: str, rows: list[Row], batch: int) -> float:
    """Seconds to write ``rows`` and merge their staged rollup deltas (``close``)."""
    writer = BatchWriter(dsn)
    try:
        started = time.perf_counter()
        for k in range(0, len(rows), batch):
            writer.write(rows[k : k + batch])
        writer.close()  # the final merge of the rollups is part of the cost
        return time.perf_counter() - started
    finally:
        writer.close()


def adversarial_histograms(ctx: Context, console: Console) -> Comparison:
    """After 22,000 distinct, widely spread values for one provider and hour, 20,000 ordinary
    events for it against 20,000 for a clean provider (same hour, same schema, batches of
    5,000; alternating order, medians of 3 rounds)."""
    assert ctx.database_url
    n_adv, n = 22_000, 20_000  # the sizes at any --scale (about a minute)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    rng = random.Random(15)

    def spread(i: int) -> dict[str, Any]:  # every value distinct, from 1e-100 to 1e100
        return {
            "cost_per_token": 10.0 ** rng.uniform(-100, 100),
            "latency_ms": 10.0 ** rng.uniform(-100, 100),
            "quality_score": rng.random(),
        }

    times: dict[str, list[float]] = {"victim": [], "clean": []}
    with scratch_schema(ctx.database_url, "bench_adv") as schema:
        migrate(schema.dsn)
        _write(schema.dsn, _rows(n_adv, "victim", hour, spread), 5000)
        with psycopg.connect(schema.dsn) as conn:
            bins = conn.execute(
                "SELECT max(cardinality(bins)) FROM provider_selection_hist_hourly_provider"
            ).fetchone()
        for r in range(3):
            order = ("victim", "clean") if r % 2 == 0 else ("clean", "victim")
            for who in order:
                rows = _rows(n, who, hour + timedelta(hours=r % 2), _ordinary)
                times[who].append(_write(schema.dsn, rows, 5000))
    victim, clean = statistics.median(times["victim"]), statistics.median(times["clean"])
    console.print(f"  adversarial: victim {victim:.2f}s, clean {clean:.2f}s, {bins[0]} bins/row")
    return Comparison(
        name=f"ingest {n:,} ordinary events after {n_adv:,} adversarial values",
        ours=victim,
        peer=clean,
        unit="s",
        peer_name="same events, clean provider",
        better="lower",
        target=1.5,
        notes={
            "largest histogram row (bins)": bins[0] if bins else None,
            "victim seconds": ", ".join(f"{x:.2f}" for x in times["victim"]),
            "clean seconds": ", ".join(f"{x:.2f}" for x in times["clean"]),
        },
    )


def rollups_vs_bare(ctx: Context, console: Console) -> list[Comparison]:
    """The batch writer's rate with every migration (rollups kept) against the bare table,
    same rows, batches of 5,000 and 20,000, alternating order, medians of 3 rounds."""
    assert ctx.database_url
    n = 30_000  # at any --scale: bounded, and smaller batches would measure nothing
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=30)
    out: list[Comparison] = []
    for batch in (5000, 20000):
        rates: dict[str, list[float]] = {"bare": [], "rollups": []}
        for r in range(3):
            for kind in ("bare", "rollups") if r % 2 == 0 else ("rollups", "bare"):
                providers = ("claude", "openai", "gemini-flash", "together")
                rows = [
                    row
                    for k, p in enumerate(providers)
                    for row in _rows(n // 4, p, hour + timedelta(hours=k * 7), _ordinary)
                ]
                with scratch_schema(ctx.database_url, f"bench_{kind}") as schema:
                    migrate(schema.dsn, migrations=discover()[:1] if kind == "bare" else None)
                    rates[kind].append(len(rows) / _write(schema.dsn, rows, batch))
        ours, peer = statistics.median(rates["rollups"]), statistics.median(rates["bare"])
        console.print(f"  batches of {batch:,}: rollups {ours:,.0f}/s, bare {peer:,.0f}/s")
        out.append(
            Comparison(
                name=f"batch writer, {n:,} rows in batches of {batch:,}, rollups maintained",
                ours=ours,
                peer=peer,
                unit="rows/s",
                peer_name="bare table (0001 only)",
                target=0.7,
                notes={k: ", ".join(f"{x:,.0f}" for x in v) for k, v in rates.items()},
            )
        )
    return out


def rollups_vs_bare_realistic(ctx: Context, console: Console) -> Comparison:
    """The same comparison on bench_analytics' synthetic stream (14 models, 4 tenants, reasons,
    measured latencies and token counts, so nearly every criteria text is distinct; time-ordered
    at 10M events a week), 200,000 rows in the default 5,000-row batches: every batch touches
    ~40 hourly keys and ~2,000 histogram bins. Medians of 3 alternating rounds; the rollups'
    time includes their final merge."""
    from benchmarks.bench_analytics import _rows as stream_rows

    assert ctx.database_url
    n, batch = 200_000, 5000
    rows: list[Row] = stream_rows(n, datetime.now(UTC), 10_000_000)  # type: ignore[assignment]
    rates: dict[str, list[float]] = {"bare": [], "rollups": []}
    for r in range(3):
        for kind in ("bare", "rollups") if r % 2 == 0 else ("rollups", "bare"):
            with scratch_schema(ctx.database_url, f"bench_{kind}") as schema:
                migrate(schema.dsn, migrations=discover()[:1] if kind == "bare" else None)
                rates[kind].append(len(rows) / _write(schema.dsn, rows, batch))
    ours, peer = statistics.median(rates["rollups"]), statistics.median(rates["bare"])
    console.print(
        f"  realistic stream, batches of {batch:,}: rollups {ours:,.0f}/s, bare {peer:,.0f}/s"
    )
    return Comparison(
        name=f"batch writer, {n:,} rows of the synthetic stream in batches of {batch:,}, rollups",
        ours=ours,
        peer=peer,
        unit="rows/s",
        peer_name="bare table (0001 only)",
        target=0.7,
        notes={k: ", ".join(f"{x:,.0f}" for x in v) for k, v in rates.items()},
    )


def _variants() -> list[tuple[str, list[Migration] | None]]:
    return [("table + indexes", discover()[:1]), ("full schema", None)]


def run(ctx: Context, console: Console) -> list[Comparison]:
    if not ctx.database_url:
        console.print("[red]DATABASE_URL is not set; skipping ingest[/]")
        return []
    if os.environ.get("BENCH_INGEST_WRITER_ONLY") == "1":
        return [
            adversarial_histograms(ctx, console),
            *rollups_vs_bare(ctx, console),
            rollups_vs_bare_realistic(ctx, console),
        ]
    n = ctx.n(1_000_000, minimum=1000)
    topic = _topic(ctx.bootstrap)
    console.print(f"producing {n:,} events to {topic} …")
    produced = produce(ctx.bootstrap, topic, n)
    console.print(f"  produced in {produced:.1f}s ({n / produced:,.0f}/s)")
    rows: list[Comparison] = []
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "rows.csv"
        for label, migrations in _variants():
            with scratch_schema(ctx.database_url, "bench_ingest") as ours:
                migrate(ours.dsn, migrations=migrations)
                console.print(f"[{label}] consumer: {n:,} events, batches of {BATCH_SIZE:,} …")
                result = consume(ours.dsn, ctx.bootstrap, topic, n)
                console.print(f"  {result['rate']:,.0f} rows/s in {result['seconds']:.1f}s")
                if not csv_path.exists():
                    export_csv(ours.dsn, csv_path)
            with scratch_schema(ctx.database_url, "bench_copy") as peer:
                migrate(peer.dsn, migrations=migrations)
                console.print(f"[{label}] COPY FROM STDIN (csv) into an identical empty table …")
                copy_rate = copy_csv(peer.dsn, csv_path, n)
                console.print(f"  {copy_rate:,.0f} rows/s")
            rows.append(
                Comparison(
                    name=f"ingest {n:,} events, {label}",
                    ours=result["rate"],
                    peer=copy_rate,
                    unit="rows/s",
                    peer_name="COPY from CSV",
                    target=0.5,
                    notes={
                        "consumer CPU seconds": (
                            f"{result['cpu']:.1f} ({result['cpu'] / n * 1e6:.1f} µs/event)"
                        ),
                        "consumer peak RSS": f"{result['rss_mib']:.0f} MiB",
                        "consumer wall seconds (spawn to last commit)": f"{result['seconds']:.1f}",
                        "consumer rows/s from first message to last commit": (
                            f"{result['steady_rate']:,.0f}"
                        ),
                        "batches": result["batches"],
                        "CSV size": f"{csv_path.stat().st_size / 2**20:.0f} MiB",
                    },
                )
            )
        if os.environ.get("BENCH_INGEST_PARTITIONED") == "1":
            rows.append(_partitioned(ctx, console, topic, n))
    rows.append(adversarial_histograms(ctx, console))
    rows.extend(rollups_vs_bare(ctx, console))
    rows.append(rollups_vs_bare_realistic(ctx, console))
    return rows


def _partitioned(ctx: Context, console: Console, topic: str, n: int) -> Comparison:
    """Plain vs monthly-partitioned table, same topic, alternating runs; medians compared.

    The box is shared, so single runs swing widely; BENCH_INGEST_ROUNDS (default 3) pairs
    are run in alternating order and the medians compared.
    """
    assert ctx.database_url
    rounds = int(os.environ.get("BENCH_INGEST_ROUNDS", "3"))
    rates: dict[str, list[float]] = {"plain": [], "partitioned": []}
    for r in range(rounds):
        for kind in ("plain", "partitioned") if r % 2 == 0 else ("partitioned", "plain"):
            with scratch_schema(ctx.database_url, f"bench_{kind}") as schema:
                if kind == "partitioned":
                    migrate(schema.dsn, migrations=_partitioned_migrations())
                    with psycopg.connect(schema.dsn, autocommit=True) as conn:
                        _partition_months(conn)
                else:
                    migrate(schema.dsn)
                result = consume(schema.dsn, ctx.bootstrap, topic, n)
            rates[kind].append(result["rate"])
            console.print(f"  round {r + 1} {kind}: {result['rate']:,.0f} rows/s")
    return Comparison(
        name="ingest, partitioned table",
        ours=statistics.median(rates["partitioned"]),
        peer=statistics.median(rates["plain"]),
        unit="rows/s",
        peer_name="same consumer, plain table",
        target=0.9,
        notes={
            "rounds": rounds,
            "partitioned rows/s": ", ".join(f"{x:,.0f}" for x in rates["partitioned"]),
            "plain rows/s": ", ".join(f"{x:,.0f}" for x in rates["plain"]),
        },
    )
