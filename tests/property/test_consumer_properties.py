"""Property test of the consumer on the real broker and PostgreSQL over a generated message mix.

Hypothesis generates about 2,400 messages: valid envelopes (exotic Unicode, SQL-looking
strings, every optional field), mutated envelopes (flipped bytes, truncations, extra fields,
wrong types, NaN and Infinity tokens, deep nesting, bad UTF-8, escaped control characters),
raw noise, raw control characters, tombstones, unknown event types, re-sent duplicates and
messages up to the broker's size limit. They go to a fresh topic (a few through kcat), then
``provider-events consume --until-idle`` runs once into a throwaway schema. Every message
ends exactly where ``decode_envelope`` says: a valid event is one row equal to its envelope
(and to the builder's input), an invalid one is in ``<topic>.dlq`` with its reason header;
nothing is lost and the consumer exits 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from _property_strategies import (
    MUST_REFUSE,
    NAME_CHARS,
    SQL,
    SQL_TEXT_FIELDS,
    assert_envelope_matches,
    examples,
    mutated,
    offline_settings,
    valid_fields,
)
from confluent_kafka import (
    KafkaError,
    Message,
    Producer,
)
from hypothesis import given
from hypothesis import strategies as st

from provider_events.errors import InvalidEventError
from provider_events.events._envelope import build_provider_selection
from provider_events.events._models import LIMITS
from provider_events.events._validation import decode_envelope
from provider_events.publish._producer import kafka_config
from provider_events.store import BatchWriter, Row, row_from_envelope
from provider_events.store._scratch import ScratchSchema
from tests.support import (
    cli_env,
    json_lines,
    migrated_schema,
    produce_waiting,
    read_topic,
    settings_for,
)

pytestmark = pytest.mark.integration

SETTINGS = offline_settings()
#: librdkafka refuses a produce() above its message.max.bytes (1,000,000 by default).
BROKER_LIMIT_VALUE = 990_000


Headers = list[tuple[str, str | bytes | None]]


def header_map(msg: Message) -> dict[str, bytes]:
    """A message's headers as a dict of bytes (the last value wins)."""
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {k: v if isinstance(v, bytes) else v.encode() for k, v in pairs if v is not None}


@dataclass
class Planned:
    """One message to produce, with what it was generated as."""

    kind: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    #: The builder's keyword arguments, for events built from generated fields.
    fields: dict[str, Any] | None = None
    via_kcat: bool = False


HEADERS = st.lists(
    st.tuples(st.text(NAME_CHARS, min_size=1, max_size=8), st.binary(max_size=12)), max_size=3
)
SQL_FIELDS = st.fixed_dictionaries(
    {
        **SQL_TEXT_FIELDS,
        "selection_criteria": st.dictionaries(st.sampled_from(SQL), st.sampled_from(SQL)),
    }
)


def _built(kind: str, fields: dict[str, Any]) -> Planned:
    event = build_provider_selection(settings=SETTINGS, **fields)
    return Planned(kind, event.key, event.value, list(event.headers), fields)


@st.composite
def planned_message(draw: Any) -> Planned:
    """One message of the mix (about half valid)."""
    kind = draw(
        st.sampled_from(
            ["valid"] * 8
            + ["sql"] * 2
            + ["mutated"] * 6
            + ["noise", "raw_control", "tombstone", "unknown_type", "huge"]
        )
    )
    key = draw(st.one_of(st.none(), st.binary(max_size=16)))
    headers = draw(HEADERS)
    if kind == "valid":
        return _built(kind, draw(valid_fields()))
    if kind == "sql":
        return _built(kind, draw(SQL_FIELDS))
    if kind == "mutated":
        how, raw = draw(mutated())
        return Planned(f"mutated:{how}", key, raw, headers)
    if kind == "noise":
        return Planned(kind, key, draw(st.binary(max_size=300)), headers)
    if kind == "tombstone":
        return Planned(kind, key, None, headers)
    event = json.loads(build_provider_selection(settings=SETTINGS, **draw(valid_fields())).value)
    if kind == "raw_control":  # JSON forbids unescaped control characters inside strings
        char = draw(st.sampled_from(["\x00", "\x01", "\x1f", "\n", "\t"]))
        event["payload"]["provider_name"] = "__TOKEN__"
        raw = json.dumps(event).replace("__TOKEN__", f"a{char}b").encode()
        return Planned(kind, key, raw, headers)
    if kind == "unknown_type":
        event["event_type"] = draw(
            st.sampled_from(["omninode.agent.provider.other.v1", "", SQL[0], "x" * 300])
        )
        return Planned(kind, key, json.dumps(event).encode(), headers)
    # huge: past the 64 KiB limit, up to what the broker takes; JSON noise or a padded envelope
    size = draw(st.sampled_from([LIMITS["message_bytes"] + 1, 200_000, BROKER_LIMIT_VALUE]))
    body = json.dumps(event).encode()
    return Planned(kind, key, body + b" " * (size - len(body)), headers)


def gather_messages() -> list[Planned]:
    """Draw the whole mix with hypothesis (deterministic), plus re-sent duplicates and edges."""
    drawn: list[Planned] = []

    @examples(60)
    @given(st.lists(planned_message(), min_size=35, max_size=45))
    def draw_batches(batch: list[Planned]) -> None:
        drawn.extend(batch)

    draw_batches()
    valid = [p for p in drawn if p.fields is not None]
    # The same event sent again later: still one row.
    drawn += [Planned("duplicate", p.key, p.value, p.headers, p.fields) for p in valid[::40]]
    # At the boundary: a valid envelope padded with JSON whitespace to exactly 64 KiB is stored.
    edge = _built(
        "at_size_limit", {"provider_name": "p", "model_name": "m", "selection_reason": ""}
    )
    assert edge.value is not None
    edge.value += b" " * (LIMITS["message_bytes"] - len(edge.value))
    drawn.append(edge)
    # A few through the guide's own client.
    for planned in valid[1:6]:
        planned.via_kcat = True
    return drawn


def produce_all(bootstrap: str, topic: str, planned: list[Planned], kcat: Any) -> None:
    conf = kafka_config(settings_for(bootstrap, topic))
    conf |= {"message.timeout.ms": 60_000, "request.timeout.ms": 30_000}
    producer = Producer(conf)
    failed: list[str] = []

    def report(index: int, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            failed.append(f"{planned[index].kind}: {err}")

    for index, item in enumerate(planned):
        if item.via_kcat:
            assert item.key is not None and item.value is not None
            kcat.produce(topic, item.key.decode(), item.value)
            continue
        produce_waiting(
            producer,
            topic,
            item.value,
            item.key,
            headers=item.headers,
            on_delivery=partial(report, index),
        )
    assert producer.flush(120) == 0
    assert not failed, failed[:5]


def read_all(bootstrap: str, topic: str) -> list[Message]:
    """Every message of ``topic``, start to end (messages up to the broker's size limit)."""
    return read_topic(bootstrap, topic, timeout=120, config={"fetch.max.bytes": 8 * 1024 * 1024})


def expectation(value: bytes | None) -> tuple[str, Any]:
    """("row", envelope) or ("dlq", reason) for one message value, as the consumer must decide."""
    if value is None:
        return "dlq", "bad_json"  # a tombstone
    try:
        return "row", decode_envelope(value)
    except InvalidEventError as exc:
        return "dlq", exc.reason


@pytest.fixture
def pg(database_url: str) -> Iterator[ScratchSchema]:
    """A throwaway, migrated schema on the shared server."""
    with migrated_schema(database_url, "test_property") as schema:
        yield schema


def test_consumer_stores_every_valid_message_and_dead_letters_the_rest(
    kafka_bootstrap: str, topic: str, pg: ScratchSchema, kcat: Any, tmp_path: Path
) -> None:
    """~2,400 generated messages, valid and hostile: each valid one is one equal row, each
    invalid one is in the DLQ with its reason, nothing is lost, and the consumer exits 0."""
    planned = gather_messages()
    assert len(planned) >= 2000
    produce_all(kafka_bootstrap, topic, planned, kcat)

    # What is on the topic is exactly what was planned (nothing lost on the way in).
    on_topic = read_all(kafka_bootstrap, topic)
    assert Counter(m.value() for m in on_topic) == Counter(p.value for p in planned)

    group = f"property-{uuid.uuid4().hex}"
    env = cli_env(pg.dsn, kafka_bootstrap, topic)
    consume = ["consume", "--topic", topic, "--group-id", group, "--until-idle", "4"]
    flags = ["--metrics-port", "off", "--json", "--batch-size", "500", "--batch-timeout", "0.5"]
    proc = subprocess.run(
        [sys.executable, "-m", "provider_events.cli", *consume, *flags],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[:3000]
    assert "Traceback" not in proc.stdout + proc.stderr
    stopped = json_lines(proc.stdout)[-1]
    assert stopped["event"] == "stopped"

    # The expected fate of every message on the topic.
    accepted: dict[uuid.UUID, Any] = {}
    homes: dict[uuid.UUID, set[tuple[int, int]]] = {}
    refused: dict[tuple[int, int], tuple[str, Message]] = {}
    for msg in on_topic:
        where = (msg.partition(), msg.offset())
        verdict, detail = expectation(msg.value())
        if verdict == "row":
            accepted[detail.event_id] = detail
            homes.setdefault(detail.event_id, set()).add(where)  # type: ignore[arg-type]
        else:
            refused[where] = (detail, msg)  # type: ignore[index]
    valid_messages = len(on_topic) - len(refused)
    assert stopped["messages"] == len(on_topic)
    assert stopped["inserted"] == len(accepted)
    assert stopped["duplicates"] == valid_messages - len(accepted)
    assert stopped["dead_lettered"] == len(refused)

    # Independent of decode_envelope: what was built is accepted, what must be refused is.
    for item in planned:
        verdict, _ = expectation(item.value)
        if item.fields is not None:
            assert verdict == "row", item.kind
        if item.kind in ("tombstone", "unknown_type", "huge", "raw_control") or (
            item.kind.startswith("mutated:") and item.kind.split(":")[1] in MUST_REFUSE
        ):
            assert verdict == "dlq", item.kind

    # Every valid event is one row whose columns equal its envelope (and the builder's input).
    with psycopg.connect(pg.dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        rows = cur.execute("SELECT * FROM provider_selection_events").fetchall()
        assert len(rows) == len(accepted)
        criteria_differ = cur.execute(
            "SELECT x.id FROM unnest(%s::uuid[], %s::text[]) AS x(id, c)"
            " LEFT JOIN provider_selection_events e ON e.event_id = x.id"
            " WHERE e.selection_criteria IS DISTINCT FROM x.c::jsonb",
            (
                list(accepted),
                [json.dumps(e.payload.selection_criteria) for e in accepted.values()],
            ),
        ).fetchall()
    assert criteria_differ == []
    for row in rows:
        envelope = accepted[row["event_id"]]
        payload = envelope.payload
        assert row["correlation_id"] == envelope.correlation_id
        assert row["provider_name"] == payload.provider_name
        assert row["model_name"] == payload.model_name
        assert row["selection_reason"] == payload.selection_reason
        assert row["selected_at"] == payload.selected_at
        assert row["event_timestamp"] == envelope.timestamp
        assert row["tenant_id"] == envelope.tenant_id
        assert row["namespace"] == envelope.namespace
        assert row["source"] == envelope.source
        assert row["causation_id"] == envelope.causation_id
        assert (row["kafka_partition"], row["kafka_offset"]) in homes[row["event_id"]]
    for item in planned:
        if item.fields is not None:
            assert item.value is not None
            envelope = decode_envelope(item.value)
            assert envelope.event_id in accepted
            assert_envelope_matches(envelope, item.fields, SETTINGS)

    # Every invalid message is in the DLQ with its reason, its bytes and where it came from.
    dead: dict[tuple[int, int], Message] = {}
    for msg in read_all(kafka_bootstrap, f"{topic}.dlq"):
        headers = header_map(msg)
        origin = (int(headers["dlq_original_partition"]), int(headers["dlq_original_offset"]))
        assert headers["dlq_original_topic"].decode() == topic
        assert origin in refused, f"a valid message was dead-lettered: {headers}"
        reason, original = refused[origin]
        assert headers["dlq_reason"].decode() == reason
        assert headers["dlq_error"]
        assert msg.value() == original.value() and msg.key() == original.key()
        dead[origin] = msg
    assert set(dead) == set(refused), "an invalid message is missing from the DLQ"
    kinds = Counter(item.kind.split(":")[0] for item in planned)
    reasons = Counter(reason for reason, _ in refused.values())
    print(f"\n{len(planned)} messages: {dict(kinds)}; DLQ reasons {dict(reasons)}")


# -- the batch writer: refused data never stops ingest ---------------------------------------
#: Criteria PostgreSQL's rollup triggers cannot fold (float8 overflow or underflow); the
#: models refuse them now, but rows from an older validator must still not stop ingest.
POISON_CRITERIA = [
    b'{"latency_ms": 1e200}',
    b'{"quality_score": 1e-200}',
    b'{"cost_per_token": 1e300, "total_tokens": 1e300}',
    b'{"input_tokens": 1' + b"0" * 400 + b"}",
]


@st.composite
def writer_batch(draw: Any) -> list[tuple[Row, bool]]:
    """Valid rows, some sent twice, and 0-2 rows PostgreSQL refuses: (row, refused)."""
    rows: list[tuple[Row, bool]] = []
    for offset, fields in enumerate(draw(st.lists(valid_fields(), min_size=1, max_size=12))):
        envelope = decode_envelope(build_provider_selection(settings=SETTINGS, **fields).value)
        criteria = msgspec.json.encode(envelope.payload.selection_criteria)
        rows.append((row_from_envelope(envelope, 0, offset, criteria), False))
    for _ in range(draw(st.integers(0, 2))):
        fields = draw(valid_fields())
        envelope = decode_envelope(build_provider_selection(settings=SETTINGS, **fields).value)
        poison = row_from_envelope(envelope, 0, 0, draw(st.sampled_from(POISON_CRITERIA)))
        rows.insert(draw(st.integers(0, len(rows))), (poison, True))
    for _ in range(draw(st.integers(0, 3))):  # the same event again, in the same batch
        rows.insert(draw(st.integers(0, len(rows))), rows[draw(st.integers(0, len(rows) - 1))])
    return rows


def test_batch_writer_reports_refused_rows_and_keeps_going(pg: ScratchSchema) -> None:
    """Batches mixing duplicates with rows PostgreSQL refuses never raise: refused rows are
    reported (for the DLQ), every other event is stored exactly once."""
    writer = BatchWriter(pg.dsn)
    stored: set[uuid.UUID] = set()

    @examples(40)
    @given(writer_batch())
    def write(batch: list[tuple[Row, bool]]) -> None:
        result = writer.write([row for row, _ in batch])
        refused = {index for index, (_, bad) in enumerate(batch) if bad}
        assert {index for index, _ in result.rejected} == refused
        good = [row[0] for row, bad in batch if not bad]
        new = set(good) - stored
        assert (result.inserted, result.duplicates) == (len(new), len(good) - len(new))
        stored.update(new)

    try:
        write()
    finally:
        writer.close()
    with psycopg.connect(pg.dsn) as conn:
        ids = [r[0] for r in conn.execute("SELECT event_id FROM provider_selection_events")]
    assert sorted(ids) == sorted(stored)
