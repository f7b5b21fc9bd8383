"""Migration files: naming, ordering, checksums, and what 0001 declares (no database needed)."""

from __future__ import annotations

import re

import pytest

from provider_events.store import Migration, MigrationError, discover
from provider_events.store._migrate import _lock_key


def test_packaged_migrations_are_ordered_and_start_with_the_events_table() -> None:
    """The package ships 0001_provider_selection_events first, versions strictly increasing."""
    migrations = discover()
    assert migrations[0].label == "0001_provider_selection_events"
    versions = [m.version for m in migrations]
    assert versions == sorted(set(versions))


def test_discover_sorts_and_rejects_bad_names_and_repeats() -> None:
    """Files sort by version; a misnamed file or a repeated version is an error."""
    found = discover([("0002_b.sql", "SELECT 2"), ("0001_a.sql", "SELECT 1")])
    assert [m.label for m in found] == ["0001_a", "0002_b"]
    for files in (
        [("1_a.sql", "")],
        [("0001_A.sql", "")],
        [("0001_a.sql", ""), ("0001_b.sql", "")],
    ):
        with pytest.raises(MigrationError):
            discover(files)


def test_checksum_follows_the_content() -> None:
    """The recorded checksum changes with the SQL, so an edited applied migration is detected."""
    assert Migration(1, "a", "SELECT 1").checksum == Migration(1, "a", "SELECT 1").checksum
    assert Migration(1, "a", "SELECT 1").checksum != Migration(1, "a", "SELECT 2").checksum


def test_lock_key_is_per_schema_and_a_signed_bigint() -> None:
    """Each schema migrates under its own advisory lock key (a PostgreSQL bigint)."""
    keys = {_lock_key(s) for s in ("public", "tenant_a", "tenant_b")}
    assert len(keys) == 3
    assert all(-(2**63) <= k < 2**63 for k in keys)


def test_0001_is_postgresql_not_the_guides_mysql() -> None:
    """0001 has the guide's columns with fitting types, CREATE INDEX statements, no inline INDEX."""
    sql = discover()[0].sql
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    assert "id                 bigint       GENERATED ALWAYS AS IDENTITY PRIMARY KEY" in body
    assert re.search(r"\bevent_id\s+uuid\s+NOT NULL", body)
    assert "UNIQUE (event_id)" in body
    assert re.search(r"\bcorrelation_id\s+text\s+NOT NULL", body)
    for column in (
        "selection_criteria jsonb",
        "selected_at        timestamptz",
        "created_at         timestamptz",
    ):
        assert column in body, column
    for column in (
        "tenant_id",
        "namespace",
        "source",
        "causation_id",
        "event_timestamp",
        "kafka_partition",
        "kafka_offset",
    ):
        assert re.search(rf"^\s+{column}\s", body, re.M), column
    assert "SERIAL" not in body.upper()
    assert not re.search(r"^\s*INDEX\s", body, re.M | re.I)
    indexes = re.findall(r"CREATE INDEX \w+\s+ON provider_selection_events \(([^)]*)\)", body)
    assert indexes == [
        "correlation_id",
        "provider_name",
        "selected_at DESC",
        "tenant_id, selected_at",
    ]
