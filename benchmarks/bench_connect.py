"""Ingest peer: Kafka Connect (standalone) + the Debezium JDBC sink against `consume`, and COPY.

N events (1,000,000 at scale 1) go to a fresh 6-partition topic in our envelope format. Our
consumer (`provider-events consume --until-idle`, one process) stores them in an empty table
(migration 0001: the table and its indexes). The same rows are then written, in the form the
connector needs, to a second topic, and a Kafka Connect worker in standalone mode
(`org.apache.kafka:connect-runtime` 4.3.1) runs `io.debezium:debezium-connector-jdbc`
3.5.0.Final with one task into an identical empty table. Last, the rows are loaded with COPY
FROM STDIN (CSV), the ceiling both are reported against.

The form the connector needs: the JDBC sink maps a record's *fields* to columns, so it needs a
Connect schema and a flat record. Our topic carries a nested JSON envelope (the guide's
format, validated by our consumer), which the sink cannot map. So the second topic holds one
JSON-with-schema record per event (`JsonConverter`, `schemas.enable=true`) whose fields are the
table's columns, with Debezium's semantic types where PostgreSQL needs a cast
(`io.debezium.data.Uuid` -> uuid, `io.debezium.data.Json` -> jsonb,
`io.debezium.time.ZonedTimestamp` -> timestamptz); the `InsertField` transform adds
`kafka_partition` and `kafka_offset`, as our consumer stores them. The connector so gets a
lighter job (no envelope to unwrap, no validation); `insert.mode=insert`, batches of 500 (the
sink's default; see BATCH).

Both rates count from process start (JVM or Python) to the last row stored. The jars come from
Maven Central through mvn (dev/connect/pom.xml and dev/connect/plugin/pom.xml), resolved once
into .dev/connect/ (like dev/services.sh does for the broker); Connect's REST listener binds an
ephemeral port on 127.0.0.1 (BENCH_CONNECT_PORT to choose one).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
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
from provider_events.store import TABLE, discover, migrate  # noqa: E402
from provider_events.store._scratch import scratch_schema  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONNECT_HOME = ROOT / ".dev" / "connect"
M2_REPO = ROOT / ".dev" / "m2"
RUNTIME_POM = ROOT / "dev" / "connect" / "pom.xml"
PLUGIN_POM = ROOT / "dev" / "connect" / "plugin" / "pom.xml"
LOG4J = ROOT / "dev" / "kafka" / "log4j2.properties"
MVN_DEP_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
#: The sink's batch.size (and the worker consumer's max.poll.records): Debezium's default.
#: Larger batches are no help here: the sink writes a table's buffer only once it holds
#: batch.size records (observed: 5,000 records under batch.size 10,000 stayed unwritten).
BATCH = int(os.environ.get("BENCH_CONNECT_BATCH_SIZE", "500"))
HEAP = os.environ.get("BENCH_CONNECT_HEAP", "-Xms256m -Xmx768m")

_STRING: dict[str, Any] = {"type": "string", "optional": False}
_FIELD_LIST: list[dict[str, Any]] = [
    {"field": "event_id", **_STRING, "name": "io.debezium.data.Uuid"},
    {"field": "correlation_id", **_STRING},
    {"field": "provider_name", **_STRING},
    {"field": "model_name", **_STRING},
    {"field": "selection_reason", "type": "string", "optional": True},
    {"field": "selection_criteria", **_STRING, "name": "io.debezium.data.Json"},
    {"field": "selected_at", **_STRING, "name": "io.debezium.time.ZonedTimestamp"},
    {"field": "tenant_id", **_STRING},
    {"field": "namespace", **_STRING},
    {"field": "source", **_STRING},
    {"field": "causation_id", "type": "string", "optional": True},
    {"field": "event_timestamp", **_STRING, "name": "io.debezium.time.ZonedTimestamp"},
]
#: The flat record's Connect schema: one field per column (kafka_* come from InsertField).
SCHEMA: dict[str, Any] = {
    "type": "struct",
    "name": "provider_events.provider_selection_row",
    "optional": False,
    "fields": _FIELD_LIST,
}
FIELDS = [f["field"] for f in _FIELD_LIST]


# -- jars ---------------------------------------------------------------------------------------
def resolve(pom: Path, dest: Path) -> Path:
    """Copy ``pom``'s runtime dependencies into ``dest`` with mvn, once per pom content."""
    stamp = CONNECT_HOME / f"{dest.name}.stamp"  # not inside plugin.path
    want = hashlib.sha256(pom.read_bytes()).hexdigest()
    if dest.is_dir() and stamp.exists() and stamp.read_text().strip() == want:
        return dest
    if shutil.which("mvn") is None:
        raise RuntimeError("mvn not found (apt-get install maven, or run dev/services.sh up)")
    tmp = CONNECT_HOME / f"{dest.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    proc = subprocess.run(
        ["mvn", "-B", "-q", "-Dstyle.color=never", "-f", str(pom),
         f"-Dmaven.repo.local={M2_REPO}", f"{MVN_DEP_PLUGIN}:copy-dependencies",
         f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"mvn could not resolve {pom.relative_to(ROOT)}: {proc.stdout[-800:]}")
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(dest)
    stamp.write_text(want + "\n")
    return dest


# -- the connector's topic ------------------------------------------------------------------------
def produce_rows(dsn: str, bootstrap: str, topic: str) -> int:
    """Every row of ``dsn``'s table, as a JSON-with-schema flat record keyed like ours."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "acks": "all",
                         "enable.idempotence": True, "message.timeout.ms": 120_000})  # fmt: skip
    schema = json.dumps(SCHEMA, separators=(",", ":"))
    cols = ", ".join(f"{c}::text" if c in ("event_id", "selection_criteria") else c for c in FIELDS)
    n = 0
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        cur = conn.cursor(name="rows")
        cur.itersize = 20_000
        cur.execute(f"SELECT {cols} FROM {TABLE} ORDER BY kafka_partition, kafka_offset")
        for row in cur:
            payload = dict(zip(FIELDS, row, strict=True))
            for ts in ("selected_at", "event_timestamp"):
                payload[ts] = payload[ts].isoformat().replace("+00:00", "Z")
            payload["event_id"] = str(payload["event_id"])
            value = f'{{"schema":{schema},"payload":{json.dumps(payload)}}}'.encode()
            while True:
                try:
                    producer.produce(topic, value, payload["correlation_id"].encode())
                    break
                except BufferError:
                    producer.poll(0.05)
            n += 1
    if producer.flush(120):
        raise RuntimeError("connector records not all acknowledged")
    return n


# -- the worker ------------------------------------------------------------------------------------
def _properties(values: dict[str, object]) -> str:
    return "".join(f"{k}={v}\n" for k, v in values.items())


def run_connect(
    schema_name: str, database_url: str, bootstrap: str, topic: str, n: int, work: Path
) -> dict[str, Any]:
    """Start a standalone worker with the JDBC sink; seconds until the table holds ``n`` rows."""
    libs = resolve(RUNTIME_POM, CONNECT_HOME / "libs")
    resolve(PLUGIN_POM, CONNECT_HOME / "plugins" / "debezium-jdbc")
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    url = (
        f"jdbc:postgresql://{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/"
        f"{info['dbname']}?currentSchema={schema_name}"
    )
    port = os.environ.get("BENCH_CONNECT_PORT", "0")
    worker = work / "worker.properties"
    connector = work / "jdbc-sink.properties"
    worker.write_text(_properties({
        "bootstrap.servers": bootstrap,
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "true",
        "offset.storage.file.filename": work / "connect.offsets",
        "offset.flush.interval.ms": 5000,
        "plugin.path": CONNECT_HOME / "plugins",
        "plugin.discovery": "only_scan",
        "listeners": f"http://127.0.0.1:{port}",
        "consumer.max.poll.records": BATCH,
        "consumer.auto.offset.reset": "earliest",
    }))  # fmt: skip
    connector.touch(mode=0o600)
    connector.write_text(_properties({
        "name": f"bench-jdbc-sink-{uuid.uuid4().hex[:8]}",
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max": 1,
        "topics": topic,
        "connection.url": url,
        "connection.username": info["user"],
        "connection.password": info.get("password", ""),
        "insert.mode": "insert",
        "primary.key.mode": "none",
        "schema.evolution": "none",
        "collection.name.format": TABLE,
        "batch.size": BATCH,
        "transforms": "where",
        "transforms.where.type": "org.apache.kafka.connect.transforms.InsertField$Value",
        "transforms.where.partition.field": "kafka_partition",
        "transforms.where.offset.field": "kafka_offset",
    }))  # fmt: skip
    log_dir = work / "logs"
    log_dir.mkdir()
    cmd = [
        "java", *HEAP.split(), "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={log_dir}", f"-Dlog4j2.configurationFile={LOG4J}",
        "-cp", f"{libs}/*", "org.apache.kafka.connect.cli.ConnectStandalone",
        str(worker), str(connector),
    ]  # fmt: skip
    with (log_dir / "connect.out").open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=work)
        try:
            count, first_row_at, log_offset = 0, None, 0
            deadline = time.monotonic() + float(os.environ.get("BENCH_CONNECT_TIMEOUT", "1800"))
            with psycopg.connect(database_url, autocommit=True) as conn:
                while count < n:
                    if proc.poll() is not None:
                        raise RuntimeError(f"Connect exited {proc.returncode}: {_tail(log_dir)}")
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"Connect stored {count} of {n} rows: {_tail(log_dir)}")
                    time.sleep(0.25)
                    failed, log_offset = _task_failed(log_dir, log_offset)
                    if failed:
                        raise RuntimeError(f"the connector's task failed: {_tail(log_dir)}")
                    row = conn.execute(f'SELECT count(*) FROM "{schema_name}".{TABLE}').fetchone()
                    count = int(row[0]) if row else 0
                    if count and first_row_at is None:
                        first_row_at = time.perf_counter()
            seconds = time.perf_counter() - started
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
    steady = seconds - ((first_row_at or started) - started)
    return {"seconds": seconds, "rate": n / seconds, "steady_rate": n / steady if steady else 0}


def _task_failed(log_dir: Path, offset: int) -> tuple[bool, int]:
    """Whether the worker logged, since ``offset``, that a task died; the new offset."""
    path = log_dir / "kafka-server.log"
    try:
        with path.open("rb") as f:
            f.seek(offset)
            new = f.read()
    except OSError:
        return False, offset
    return b"unrecoverable exception" in new, offset + len(new)


def _tail(log_dir: Path) -> str:
    text = ""
    for name in ("kafka-server.log", "connect.out"):
        path = log_dir / name
        if path.exists():
            lines = [ln for ln in path.read_text(errors="replace").splitlines() if "ERROR" in ln]
            text += " | ".join(lines[-3:])[-1500:]
    return text or "no ERROR lines logged"


def _same_rows(database_url: str, a: str, b: str) -> int:
    """Rows of table ``a`` whose event has every column equal in ``b`` (not the Kafka
    position: the connector read another topic, where the offsets differ)."""
    cols = " AND ".join(f"x.{c} IS NOT DISTINCT FROM y.{c}" for c in FIELDS if c != "event_id")
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            f'SELECT count(*) FROM "{a}".{TABLE} x JOIN "{b}".{TABLE} y USING (event_id) '
            f"WHERE {cols}"
        ).fetchone()
    return int(row[0]) if row else 0


def run(ctx: Context, console: Console) -> list[Comparison]:
    if not ctx.database_url:
        console.print("[red]DATABASE_URL is not set; skipping connect[/]")
        return []
    if shutil.which("java") is None:
        console.print("[red]java not found (dev/services.sh up installs it); skipping connect[/]")
        return []
    n = ctx.n(1_000_000, minimum=1000)
    console.print("resolving Kafka Connect and the Debezium JDBC sink (cached in .dev/connect) …")
    resolve(RUNTIME_POM, CONNECT_HOME / "libs")
    resolve(PLUGIN_POM, CONNECT_HOME / "plugins" / "debezium-jdbc")
    ours_topic = bench_ingest._topic(ctx.bootstrap)
    peer_topic = bench_ingest._topic(ctx.bootstrap)
    console.print(f"producing {n:,} events to {ours_topic} …")
    bench_ingest.produce(ctx.bootstrap, ours_topic, n)
    table_only = discover()[:1]
    with (
        tempfile.TemporaryDirectory() as tmp,
        scratch_schema(ctx.database_url, "bench_consume") as ours,
        scratch_schema(ctx.database_url, "bench_connect") as peer,
    ):
        migrate(ours.dsn, migrations=table_only)
        migrate(peer.dsn, migrations=table_only)
        console.print(f"consumer: {n:,} events, batches of {bench_ingest.BATCH_SIZE:,} …")
        mine = bench_ingest.consume(ours.dsn, ctx.bootstrap, ours_topic, n)
        console.print(f"  {mine['rate']:,.0f} rows/s in {mine['seconds']:.1f}s")
        console.print(f"writing the same rows as flat JSON-with-schema records to {peer_topic} …")
        if produce_rows(ours.dsn, ctx.bootstrap, peer_topic) != n:
            raise RuntimeError("the connector's topic does not hold every row")
        console.print(f"Kafka Connect + Debezium JDBC sink: {n:,} records, batches of {BATCH:,} …")
        theirs = run_connect(peer.name, ctx.database_url, ctx.bootstrap, peer_topic, n, Path(tmp))
        console.print(f"  {theirs['rate']:,.0f} rows/s in {theirs['seconds']:.1f}s")
        same = _same_rows(ctx.database_url, ours.name, peer.name)
        csv_path = Path(tmp) / "rows.csv"
        bench_ingest.export_csv(ours.dsn, csv_path)
        with scratch_schema(ctx.database_url, "bench_copy") as copy_schema:
            migrate(copy_schema.dsn, migrations=table_only)
            copy_rate = bench_ingest.copy_csv(copy_schema.dsn, csv_path, n)
            console.print(f"COPY FROM STDIN (csv): {copy_rate:,.0f} rows/s")
    from benchmarks._kafka import delete_topics

    delete_topics(ctx.bootstrap, ours_topic, peer_topic)
    if same != n:
        raise RuntimeError(f"the connector's table matches ours on {same} of {n} rows")
    notes = {
        "events": n,
        "consumer rows/s (spawn to last commit)": f"{mine['rate']:,.0f}",
        "connector rows/s (JVM start to last row)": f"{theirs['rate']:,.0f}",
        "connector rows/s from its first row": f"{theirs['steady_rate']:,.0f}",
        "consumer rows/s from its first message": f"{mine['steady_rate']:,.0f}",
        "COPY rows/s": f"{copy_rate:,.0f}",
        "consumer vs COPY": f"{mine['rate'] / copy_rate:.2f}x",
        "connector vs COPY": f"{theirs['rate'] / copy_rate:.2f}x",
        "rows identical in both tables": same,
    }
    return [
        Comparison(
            name=f"ingest {n:,} events vs Kafka Connect JDBC sink",
            ours=mine["rate"],
            peer=theirs["rate"],
            unit="rows/s",
            peer_name="Connect 4.3.1 + Debezium JDBC sink 3.5.0",
            target=1.0,
            notes=notes,
        ),
        Comparison(
            name=f"Kafka Connect JDBC sink {n:,} events vs COPY",
            ours=theirs["rate"],
            peer=copy_rate,
            unit="rows/s",
            peer_name="COPY from CSV",
            notes={"events": n},
        ),
    ]
