"""The reference implementation's public names work as its callers expect (thin shims over the
package's own policy and publisher), from ``agents.lib`` and from ``provider_events``."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import provider_events
from agents.lib import partition_key_policy as ref_policy
from agents.lib import provider_selection_publisher as ref_publisher
from provider_events import PartitionKeyError
from provider_events.events._catalog import EventFamily

EVENT_TYPE = "omninode.agent.provider.selected.v1"
ROOT = Path(__file__).resolve().parents[2]


def test_names_exist_in_both_places() -> None:
    """``get_partition_key_for_event``, ``validate_partition_key`` and
    ``PROVIDER_SELECTION_TOPIC`` import from the guide's paths and from the package."""
    assert ref_policy.get_partition_key_for_event is provider_events.get_partition_key_for_event
    assert ref_policy.validate_partition_key is provider_events.validate_partition_key
    assert ref_publisher.PROVIDER_SELECTION_TOPIC == EVENT_TYPE
    assert provider_events.PROVIDER_SELECTION_TOPIC == EVENT_TYPE
    assert ref_policy.DEFAULT_PARTITION_KEY_FIELD == "correlation_id"


def test_event_family_value_is_the_references() -> None:
    """The value is ``agent.provider``; the name stays the guide's ``AGENT_PROVIDER``."""
    assert EventFamily.AGENT_PROVIDER.value == "agent.provider"
    assert EventFamily.AGENT_PROVIDER.name == "AGENT_PROVIDER"
    assert ref_policy.get_event_family(EVENT_TYPE) is EventFamily.AGENT_PROVIDER
    policy = ref_policy.get_partition_policy(EventFamily.AGENT_PROVIDER)
    assert policy["partition_key"] == "correlation_id"


def test_schema_list_still_prints_the_guides_family_name() -> None:
    """``schema --list`` shows ``AGENT_PROVIDER`` (the guide's spelling), not the enum value."""
    done = subprocess.run(
        [sys.executable, "-m", "provider_events.cli", "schema", "--list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "\tAGENT_PROVIDER\t" in done.stdout and "agent.provider\t" not in done.stdout


@pytest.mark.parametrize(
    ("envelope", "key"),
    [
        ({"correlation_id": "abc-123", "payload": {}}, "abc-123"),
        ({"payload": {"correlation_id": "def-456"}}, "def-456"),
        (SimpleNamespace(correlation_id=None, payload=SimpleNamespace(correlation_id="g")), "g"),
        ({"correlation_id": "", "payload": {"correlation_id": "  "}}, None),
        ({}, None),
    ],
)
def test_get_partition_key_for_event(envelope: object, key: str | None) -> None:
    """The key from the envelope, else its payload; ``None`` when neither has one."""
    assert ref_policy.get_partition_key_for_event(EVENT_TYPE, envelope) == key


def test_unknown_event_types_return_none_or_false_instead_of_raising() -> None:
    """As in the reference: ``None`` / ``False``; the package's own ``get_partition_key``
    still raises a typed error with the reason."""
    envelope = {"event_type": "unknown.event.v1", "correlation_id": "abc"}
    assert ref_policy.get_event_family("unknown.event.v1") is None
    assert ref_policy.get_partition_key_for_event("unknown.event.v1", envelope) is None
    assert ref_policy.validate_partition_key("unknown.event.v1", "abc") is False
    with pytest.raises(PartitionKeyError, match="no partition-key policy"):
        ref_policy.get_partition_key(envelope)


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("abc-123-def-456", True),
        (None, False),
        ("", False),
        ("   ", False),
        ("x" * 129, False),
        ("a\nb", False),
        (42, False),
    ],
)
def test_validate_partition_key(key: object, valid: bool) -> None:
    """``True`` only for a key this package would publish."""
    assert ref_policy.validate_partition_key(EVENT_TYPE, key) is valid  # type: ignore[arg-type]


def test_causation_id_is_the_sixth_positional_argument(tmp_path: Path) -> None:
    """``publish_provider_selection(_sync)`` take ``causation_id`` positionally, 6th, as the
    reference does; it reaches the envelope."""
    for fn in (
        ref_publisher.publish_provider_selection,
        ref_publisher.publish_provider_selection_sync,
    ):
        params = list(inspect.signature(fn).parameters)
        assert params[:6] == [
            "provider_name",
            "model_name",
            "correlation_id",
            "selection_reason",
            "selection_criteria",
            "causation_id",
        ]
    script = (
        "from agents.lib.provider_selection_publisher import publish_provider_selection_sync as p\n"
        "print(p('zai', 'glm-4.6', 'corr-1', 'why', {}, 'cause-1'))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}",
        "PROVIDER_EVENTS_SINK": "local",
        "PROVIDER_EVENTS_STATE_DIR": str(tmp_path / "state"),
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"  # the local sink stores it
    from provider_events.settings import load_settings
    from provider_events.store._local import LocalEventStore

    store = LocalEventStore.for_settings(load_settings(env, dotenv=tmp_path / "none"))
    try:
        [raw] = store.envelopes()
    finally:
        store.close()
    envelope = json.loads(raw)
    assert (envelope["correlation_id"], envelope["causation_id"]) == ("corr-1", "cause-1")
