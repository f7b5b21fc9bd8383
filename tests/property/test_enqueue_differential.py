"""The lean enqueue (standard library only) against the full msgspec builder and settings:
whatever the lean path accepts, the full path accepts with the same bytes (modulo the event id
and the clock); whatever the full path refuses, the lean path leaves to it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provider_events.errors import ConfigError, InvalidEventError
from provider_events.events import _envelope, _models
from provider_events.events._catalog import PROVIDER_SELECTED_V1
from provider_events.publish import _enqueue
from provider_events.publish._relay import destination_of
from provider_events.settings import ENV_VARS, load_settings

NO_DOTENV = Path("/nonexistent/.env")

text = st.one_of(
    st.text(max_size=8),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(["p", "gpt-4o", "a" * 100, "a" * 101, "m" * 200, "m" * 201, " ", "é\u2028"]),
    st.text(alphabet='ab\x00\x1f\x7f\n"\\ \ud800', max_size=6),
)
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.5, 1e-05, 1.5e-05, 3e-06, 0.0001, 1e16, 1e15, 123.25, -0.0, 5e-324]),
    st.sampled_from([1e-100, 1e-101, 1e100, 1.0, 2**64 - 1, 2**64, 2**63]),
    text,
)
criteria = st.one_of(
    st.none(),
    st.dictionaries(
        st.one_of(text, st.sampled_from(sorted(_enqueue.NUMERIC_RULES))), scalar, max_size=5
    ),
    st.dictionaries(st.text(max_size=3), st.lists(scalar, max_size=2), max_size=2),
)


def lean_for(env: dict[str, str]) -> dict[str, Any]:
    s = _enqueue.lean_settings(env, "/nonexistent")
    assert s is not None
    return s


def full_build(env: dict[str, str], fields: dict[str, Any]) -> _envelope.EventParts | None:
    try:
        return _envelope.provider_selection_parts(
            settings=load_settings(environ=env, dotenv=NO_DOTENV), **fields
        )
    except InvalidEventError:
        return None


def assert_same(env: dict[str, str], fields: dict[str, Any]) -> bool:
    """Build both ways; returns whether the lean path accepted."""
    full = full_build(env, fields)
    if full is None:
        lean = _enqueue.build(lean_for(env), **fields)
        assert lean is None, ("the lean path accepted what the builder refuses", fields)
        return False
    doc = msgspec.json.decode(full[4])
    moment = datetime.fromisoformat(doc["timestamp"].replace("Z", "+00:00"))
    now_ns = int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
    if fields.get("correlation_id") is None:
        fields = {**fields, "correlation_id": doc["correlation_id"]}
    lean = _enqueue.build(lean_for(env), **fields, now_ns=now_ns, event_id=full[0])
    if lean is None:
        return False
    _, key, value, headers = lean
    assert value == full[4], (value, full[4])
    assert key == full[3]
    assert headers == _envelope.header_list(full)
    assert (
        _envelope.wire_size(full)
        == len(key)
        + len(value)
        + sum(len(n) + len(v) for n, v in headers)
        + _enqueue.RECORD_OVERHEAD
    )
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    provider=text,
    model=text,
    reason=st.one_of(text, st.sampled_from(["x" * 4000, "x" * 4001])),
    cid=st.one_of(st.none(), text),
    causation=st.one_of(st.none(), text),
    tenant=st.one_of(st.none(), text),
    crit=criteria,
)
def test_lean_builder_matches_full_builder(provider, model, reason, cid, causation, tenant, crit):
    """Random fields: same accept/reject, same bytes and headers when the lean path accepts."""
    env = {"HOME": "/home/u", "PROVIDER_EVENTS_TOPIC": "t.x"}
    fields = {
        "provider_name": provider,
        "model_name": model,
        "selection_reason": reason,
        "correlation_id": cid,
        "causation_id": causation,
        "tenant_id": tenant,
        "selection_criteria": crit,
    }
    assert_same(env, fields)


def test_lean_path_takes_the_common_cases():
    """Plain hook-like events go through the lean path (it is not a path that always defers)."""
    env = {"HOME": "/home/u", "KAFKA_MESSAGE_MAX_BYTES": "2000"}
    plain = {"provider_name": "claude", "model_name": "claude-opus-4", "selection_reason": "r"}
    for crit in (
        None,
        {},
        {"tier": "fast", "n": 3, "ok": True, "x": None, "w": 0.25},
        {"cost_per_token": 3e-06, "quality_score": 0.9, "latency_ms": 120, "tiny": 1.5e-05},
    ):
        assert assert_same(env, {**plain, "selection_criteria": crit})
    assert assert_same(env, {**plain, "correlation_id": "sess-1"})
    # over message.max.bytes: both refuse
    assert not assert_same(env, {**plain, "selection_reason": "y" * 2000})


values = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "1",
            "0",
            "-1",
            "1_000",
            "true",
            "off",
            "maybe",
            "nan",
            "inf",
            "2000",
            "999",
            "301",
            "300",
            "0.5",
            "a:1",
            "h:0",
            "h:65536",
            "h:x",
            "a:1, b:2",
            ",",
            "PLAINTEXT",
            "ssl",
            "SASL_SSL",
            "local",
            "Kafka",
            "zstd",
            "bad topic",
            "t" * 250,
            "/abs/p",
            "rel/p",
            "/a//b",
            "~",
            "~/x",
            "~nouser/x",
            "/a/./b",
            "/a/b/",
            "\uff11\uff12",
        ]
    ),
    st.text(max_size=6),
)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.dictionaries(
        st.sampled_from(sorted(_enqueue.LEAN_VARS | {"HOME", "XDG_STATE_HOME"})), values, max_size=5
    )
)
def test_lean_settings_match_load_settings(env):
    """Random environments: when the lean parser answers, load_settings agrees on every value
    the enqueue uses; when load_settings refuses, the lean parser does not answer."""
    env = {"HOME": "/home/u", **env}
    lean = _enqueue.lean_settings(env, "/nonexistent")
    try:
        full = load_settings(environ=env, dotenv=NO_DOTENV)
    except (ConfigError, ValueError, RuntimeError):
        assert lean is None
        return
    if lean is None:
        return
    dest = destination_of(full)
    assert lean["servers"] == full.kafka_bootstrap_servers
    assert lean["protocol"] == full.kafka_security_protocol
    assert lean["topic"] == (full.topic or PROVIDER_SELECTED_V1.topic) == dest.topic
    assert (lean["namespace"], lean["source"], lean["tenant"]) == (
        full.namespace,
        full.source,
        full.tenant_id,
    )
    assert lean["outbox"] == str(full.resolved_outbox_path)
    assert (lean["max_events"], lean["max_bytes"]) == (
        full.outbox_max_events,
        full.outbox_max_bytes,
    )
    assert lean["autostart"] == full.relay_autostart
    assert lean["max_message"] == full.kafka_message_max_bytes
    assert full.sink == "kafka"


def test_lean_constants_follow_the_models():
    """The lean module's copies of limits, rules and names equal the originals."""
    limits = _models.LIMITS
    assert (
        limits["provider_name"],
        limits["model_name"],
        limits["correlation_id"],
    ) == (_enqueue.PROVIDER_MAX, _enqueue.MODEL_MAX, _enqueue.ID_MAX)
    assert (
        limits["selection_reason"],
        limits["envelope_text"],
    ) == (_enqueue.REASON_MAX, _enqueue.TEXT_MAX)
    assert _models._NUMERIC_RULES == _enqueue.NUMERIC_RULES
    assert _models.ANALYTICS_TINY == _enqueue.ANALYTICS_TINY
    assert PROVIDER_SELECTED_V1.event_type == _enqueue.EVENT_TYPE
    assert PROVIDER_SELECTED_V1.schema_ref == _enqueue.SCHEMA_REF
    assert PROVIDER_SELECTED_V1.topic == _enqueue.DEFAULT_TOPIC
    assert _enqueue.RECORD_OVERHEAD == _envelope.RECORD_OVERHEAD
    from provider_events.settings import CONSUMER_SETTINGS

    consumer = {ENV_VARS[n] for n in CONSUMER_SETTINGS} | {"DATABASE_URL"}
    assert set(ENV_VARS.values()) == (
        _enqueue.LEAN_VARS | _enqueue.FULL_PATH_VARS | _enqueue.IGNORED_VARS | consumer
    )


@pytest.mark.parametrize("dotenv", [True, False])
def test_dotenv_sends_to_the_full_path(tmp_path: Path, dotenv: bool) -> None:
    """A .env in the working directory: the lean path leaves settings to load_settings."""
    if dotenv:
        (tmp_path / ".env").write_text("PROVIDER_EVENTS_TOPIC=x\n")
    result = _enqueue.lean_settings({"HOME": "/h"}, str(tmp_path))
    assert (result is None) is dotenv
