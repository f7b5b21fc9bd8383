"""The guide's test suite: ``pytest agents/tests/test_provider_selection_publisher.py -v``.

Covers the six areas the guide lists. Publishing runs against the real broker and every event
is read back with kcat, an independent client: key, partition, envelope and headers.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import pytest

from agents.lib.event_validation import validate_event, validate_payload
from agents.lib.partition_key_policy import (
    EventFamily,
    PartitionKeyError,
    get_event_family,
    get_partition_key,
)
from agents.lib.provider_selection_publisher import (
    DeliveryStatus,
    Publisher,
    publish_provider_selection,
    publish_provider_selection_sync,
)
from provider_events import load_settings

EVENT_TYPE = "omninode.agent.provider.selected.v1"
SCHEMA_REF = "registry://omninode/agent/provider_selected/v1"


def _envelope(publisher: Publisher, **overrides) -> dict:
    fields = {
        "provider_name": "gemini-flash",
        "model_name": "gemini-1.5-flash-002",
        "correlation_id": "abc-123-def-456",
        "selection_reason": "Cost-effective for high-volume pattern matching",
        "selection_criteria": {"cost_per_token": 0.000001, "latency_ms": 50, "quality_score": 0.85},
    }
    fields.update(overrides)
    return json.loads(publisher.build(**fields).value)


def _minimal(**overrides) -> dict:
    """The fewest fields an event needs (provider p, model m, reason r, no criteria)."""
    fields = {
        "provider_name": "p",
        "model_name": "m",
        "correlation_id": "c",
        "selection_reason": "r",
        "selection_criteria": {},
    }
    fields.update(overrides)
    return fields


@pytest.fixture
def offline(state_dir, monkeypatch) -> Publisher:
    """A publisher needing no broker (only ``build`` is used)."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    return Publisher(load_settings())


# 1. Event envelope structure (OnexEnvelopeV1) ------------------------------------------------
class TestEnvelopeStructure:
    def test_has_exactly_the_guide_fields(self, offline):
        """The envelope carries the guide's fields, in its order, plus optional causation_id."""
        env = _envelope(offline)
        assert list(env) == [
            "event_type",
            "event_id",
            "timestamp",
            "correlation_id",
            "causation_id",
            "namespace",
            "source",
            "tenant_id",
            "schema_ref",
            "payload",
        ]
        assert env["event_type"] == EVENT_TYPE
        assert env["schema_ref"] == SCHEMA_REF
        assert (env["namespace"], env["source"], env["tenant_id"]) == (
            "omninode",
            "omniclaude",
            "default",
        )
        assert env["causation_id"] is None

    def test_event_id_is_uuid4_and_timestamp_rfc3339_utc(self, offline):
        """event_id is a fresh UUIDv4; timestamps are RFC 3339 in UTC with a Z suffix."""
        a, b = _envelope(offline), _envelope(offline)
        assert uuid.UUID(a["event_id"]).version == 4
        assert a["event_id"] != b["event_id"]
        for stamp in (a["timestamp"], a["payload"]["selected_at"]):
            assert stamp.endswith("Z")
            parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            assert (
                parsed.tzinfo is not None and abs((datetime.now(UTC) - parsed).total_seconds()) < 60
            )

    def test_payload_fields(self, offline):
        """The payload holds provider, model, correlation id, reason, criteria and selected_at."""
        payload = _envelope(offline)["payload"]
        assert payload == {
            "provider_name": "gemini-flash",
            "model_name": "gemini-1.5-flash-002",
            "correlation_id": "abc-123-def-456",
            "selection_reason": "Cost-effective for high-volume pattern matching",
            "selection_criteria": {
                "cost_per_token": 0.000001,
                "latency_ms": 50,
                "quality_score": 0.85,
            },
            "selected_at": payload["selected_at"],
        }

    def test_generated_correlation_id_is_uuid7(self, offline):
        """Without a correlation id, a UUIDv7 is generated and used in envelope and payload."""
        env = _envelope(offline, correlation_id=None)
        assert uuid.UUID(env["correlation_id"]).version == 7
        assert env["payload"]["correlation_id"] == env["correlation_id"]

    def test_overrides_per_call(self, offline):
        """tenant_id and causation_id can be given per call."""
        env = _envelope(offline, tenant_id="acme", causation_id="req-1")
        assert (env["tenant_id"], env["causation_id"]) == ("acme", "req-1")


# 2. Partition key policy compliance ----------------------------------------------------------
class TestPartitionKeyPolicy:
    def test_family_and_key(self, offline):
        """AGENT_PROVIDER events key on correlation_id."""
        assert get_event_family(EVENT_TYPE) is EventFamily.AGENT_PROVIDER
        env = _envelope(offline, correlation_id="req-42")
        assert get_partition_key(env) == "req-42"
        assert offline.build(**_minimal(correlation_id="req-42")).key == b"req-42"

    def test_key_falls_back_to_payload(self):
        """A key missing from the envelope is taken from the payload."""
        assert (
            get_partition_key({"event_type": EVENT_TYPE, "payload": {"correlation_id": "p-1"}})
            == "p-1"
        )

    def test_missing_key_is_refused_not_sent_unkeyed(self, offline):
        """No usable correlation id: a clear PartitionKeyError, nothing is built."""
        with pytest.raises(PartitionKeyError, match="correlation_id"):
            get_partition_key({"event_type": EVENT_TYPE, "payload": {}})
        with pytest.raises(PartitionKeyError, match="must not be empty"):
            offline.build(**_minimal(correlation_id="  "))
        assert publish_provider_selection_sync("p", "m", "", "r") is False


# 3. Kafka publishing (success and error cases), on the real broker ----------------------------
@pytest.mark.integration
class TestKafkaPublishing:
    def test_async_publish_reaches_the_topic(self, kafka_env, topic, kcat):
        """The guide's async snippet returns True and kcat reads the event back intact."""
        cid = str(uuid.uuid4())

        async def main() -> bool:
            return await publish_provider_selection(
                provider_name="gemini-flash",
                model_name="gemini-1.5-flash-002",
                correlation_id=cid,
                selection_reason="Cost-effective for high-volume pattern matching",
                selection_criteria={
                    "cost_per_token": 0.000001,
                    "latency_ms": 50,
                    "quality_score": 0.85,
                },
            )

        assert asyncio.run(main()) is True
        (msg,) = kcat.consume(topic)
        assert msg.key == cid
        env = msg.envelope
        assert env["event_type"] == EVENT_TYPE and env["correlation_id"] == cid
        assert env["payload"]["provider_name"] == "gemini-flash"
        assert msg.headers["content-type"] == "application/json"
        assert msg.headers["event_type"] == EVENT_TYPE
        assert msg.headers["event_id"] == env["event_id"]
        assert msg.headers["schema_ref"] == SCHEMA_REF
        assert msg.headers["ce_id"] == env["event_id"]

    def test_result_reports_partition_and_offset(self, kafka_env, topic, kcat):
        """Publisher results carry the partition and offset the broker assigned."""
        result = Publisher().publish_sync(
            provider_name="claude",
            model_name="claude-3-5-sonnet-20241022",
            correlation_id="k-1",
            selection_reason="High quality",
            selection_criteria={},
        )
        assert result.status is DeliveryStatus.DELIVERED, result.error
        (msg,) = kcat.consume(topic)
        assert (msg.partition, msg.offset) == (result.partition, result.offset)

    def test_same_correlation_id_same_partition_in_order(self, kafka_env, topic, kcat):
        """Events with one correlation id land on one partition, in publishing order."""
        publisher = Publisher()
        cids = [f"req-{i}" for i in range(8)]
        for n in range(5):
            for cid in cids:
                assert publisher.publish_sync(
                    **_minimal(model_name=f"m{n}", correlation_id=cid)
                ).delivered
        by_key: dict[str, list] = {}
        for msg in kcat.consume(topic):
            by_key.setdefault(msg.key, []).append(msg)
        assert set(by_key) == set(cids)
        for cid, msgs in by_key.items():
            assert len({m.partition for m in msgs}) == 1, cid
            ordered = sorted(msgs, key=lambda m: m.offset)
            assert [m.envelope["payload"]["model_name"] for m in ordered] == [
                f"m{n}" for n in range(5)
            ]

    def test_murmur2_partitioning_matches_java_clients(self, kafka_env, topic, kcat):
        """A key lands where the Java/aiokafka default partitioner would put it."""
        from aiokafka.partitioner import DefaultPartitioner

        publisher = Publisher()
        parts = list(range(6))
        for i in range(12):
            key = f"corr-{i}"
            result = publisher.publish_sync(**_minimal(correlation_id=key))
            assert result.partition == DefaultPartitioner()(key.encode(), parts, parts)

    def test_error_case_unknown_broker_returns_false_within_bound(self, state_dir, monkeypatch):
        """A refused connection: False, within the delivery bound, no exception."""
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
        monkeypatch.setenv("PROVIDER_EVENTS_DELIVERY_TIMEOUT", "2")
        started = time.monotonic()
        result = Publisher().publish_sync(**_minimal())
        assert time.monotonic() - started < 2.5
        assert result.status is DeliveryStatus.SPOOLED and not result


# 4. Graceful degradation (when Kafka is unavailable) -----------------------------------------
@pytest.mark.integration
class TestGracefulDegradation:
    def test_stopped_broker_false_within_bound_and_event_kept(self, kafka_env, topic, kcat, broker):
        """Broker stopped: False within the bound, the event spooled; restarted: delivered."""
        from provider_events.publish._outbox import Outbox

        settings = load_settings()
        broker.stop()
        try:
            started = time.monotonic()
            ok = publish_provider_selection_sync(
                "claude", "claude-3-5-sonnet-20241022", "down-1", "broker down", {}
            )
            elapsed = time.monotonic() - started
            assert ok is False
            assert elapsed <= settings.delivery_timeout + 0.5
            assert Outbox(settings.resolved_outbox_path).pending() == 1
        finally:
            broker.start()
        outbox = Outbox(settings.resolved_outbox_path)
        deadline = time.monotonic() + 60
        while outbox.pending() and time.monotonic() < deadline:  # the detached relay delivers it
            time.sleep(0.2)
        assert outbox.pending() == 0
        (msg,) = [m for m in kcat.consume(topic) if m.key == "down-1"]
        assert msg.envelope["payload"]["selection_reason"] == "broker down"

    def test_black_hole_broker_returns_within_bound(self, state_dir, monkeypatch):
        """A listener that accepts and never answers: False within the bound, event spooled."""
        import socket

        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
        monkeypatch.setenv("PROVIDER_EVENTS_DELIVERY_TIMEOUT", "1.5")
        monkeypatch.setenv("PROVIDER_EVENTS_RELAY_AUTOSTART", "false")
        try:
            started = time.monotonic()
            result = Publisher().publish_sync(**_minimal())
            assert time.monotonic() - started < 1.5 + 0.5
            assert result.status is DeliveryStatus.SPOOLED
        finally:
            server.close()


# 5. Payload schema validation ----------------------------------------------------------------
class TestPayloadValidation:
    @pytest.mark.parametrize(
        ("criteria", "message"),
        [
            ({"cost_per_token": -1}, "cost_per_token must be >= 0"),
            ({"latency_ms": -5}, "latency_ms must be >= 0"),
            ({"quality_score": 1.01}, r"quality_score must be in \[0, 1\]"),
            ({"quality_score": "high"}, "quality_score must be a number"),
            ({"x": float("nan")}, "finite"),
        ],
    )
    def test_bad_criteria_rejected_with_reason(self, offline, criteria, message):
        """Out-of-range or non-finite criteria are refused with a readable reason."""
        from provider_events import InvalidEventError

        with pytest.raises(InvalidEventError, match=message):
            offline.build(**_minimal(selection_criteria=criteria))

    def test_extra_criteria_keys_are_kept(self, offline):
        """Criteria keys beyond the known three are kept as given."""
        env = _envelope(
            offline, selection_criteria={"quality_score": 1, "region": "eu", "tiers": [1, 2]}
        )
        assert env["payload"]["selection_criteria"] == {
            "quality_score": 1,
            "region": "eu",
            "tiers": [1, 2],
        }

    def test_validate_event_and_payload(self, offline):
        """validate_event accepts built envelopes and names what is wrong in broken ones."""
        env = _envelope(offline)
        assert validate_event(env).is_valid
        broken = dict(env, payload=dict(env["payload"], provider_name=""))
        result = validate_event(broken)
        assert not result.is_valid and "provider_name" in result.errors[0]
        assert not validate_event(dict(env, event_type="nope")).is_valid
        assert validate_payload(EVENT_TYPE, env["payload"]).is_valid
        assert not validate_payload(EVENT_TYPE, {**env["payload"], "model_name": 3}).is_valid

    def test_guide_sample_from_schema_section_validates(self):
        """The guide's own JSON sample validates once its placeholders are real values."""
        sample = {
            "event_type": EVENT_TYPE,
            "event_id": str(uuid.uuid4()),
            "timestamp": "2025-11-13T14:30:00Z",
            "correlation_id": "correlation-id-here",
            "namespace": "omninode",
            "source": "omniclaude",
            "tenant_id": "default",
            "schema_ref": SCHEMA_REF,
            "payload": {
                "provider_name": "gemini-flash",
                "model_name": "gemini-1.5-flash-002",
                "correlation_id": "correlation-id-here",
                "selection_reason": "Cost-effective for high-volume pattern matching",
                "selection_criteria": {
                    "cost_per_token": 0.000001,
                    "latency_ms": 50,
                    "quality_score": 0.85,
                },
                "selected_at": "2025-11-13T14:30:00Z",
            },
        }
        assert validate_event(sample).is_valid


# 6. Synchronous wrapper functionality --------------------------------------------------------
@pytest.mark.integration
class TestSyncWrapper:
    def test_sync_publish_true_and_read_back(self, kafka_env, topic, kcat):
        """The guide's sync snippet returns True and the event is on the topic."""
        assert (
            publish_provider_selection_sync(
                provider_name="claude",
                model_name="claude-3-5-sonnet-20241022",
                correlation_id="sync-1",
                selection_reason="High quality",
                selection_criteria={},
            )
            is True
        )
        (msg,) = kcat.consume(topic)
        assert (
            msg.key == "sync-1"
            and msg.envelope["payload"]["model_name"] == "claude-3-5-sonnet-20241022"
        )

    def test_sync_inside_running_loop(self, kafka_env, topic, kcat):
        """The sync wrapper works when called from inside a running event loop."""

        async def main() -> bool:
            return publish_provider_selection_sync("claude", "m", "loop-1", "inside a loop")

        assert asyncio.run(main()) is True
        assert [m.key for m in kcat.consume(topic)] == ["loop-1"]

    def test_repeated_asyncio_run_share_one_producer(self, kafka_env, topic, kcat):
        """Repeated asyncio.run() calls keep working on the process's shared producer."""
        for i in range(3):
            assert asyncio.run(publish_provider_selection("p", "m", f"run-{i}", "again")) is True
        assert sorted(m.key for m in kcat.consume(topic)) == ["run-0", "run-1", "run-2"]

    def test_troubleshooting_one_liner(self, kafka_env, topic, kcat):
        """The guide's troubleshooting one-liner prints True against a running broker."""
        import subprocess
        import sys

        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "from agents.lib.provider_selection_publisher import publish_provider_selection_sync; print(publish_provider_selection_sync('test', 'test', 'abc-123', 'test'))",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=kafka_env,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "True"
        assert [m.key for m in kcat.consume(topic)] == ["abc-123"]
