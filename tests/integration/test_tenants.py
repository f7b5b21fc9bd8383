"""Tenants stay apart: `stats`, `recommend` and `report --tenant X` show only X's events.

Two tenants share a provider and model (with different counts, costs, quality and latency) and
each has a model of its own; the other tenant's own model is cheaper and better, so a
recommendation that looked across tenants would propose it. The same events are written to
PostgreSQL (through the consumer's batch writer, so the rollup triggers run) and to the
embedded local store, and every answer is checked on both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from provider_events import load_settings
from provider_events.events._envelope import build_provider_selection
from provider_events.events._validation import decode_envelope
from provider_events.store import BatchWriter, migrate, row_from_envelope
from provider_events.store._local import LocalEventStore
from provider_events.store._scratch import scratch_schema

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "provider_events.cli"]


@dataclass(frozen=True)
class Usage:
    tenant: str
    provider: str
    model: str
    count: int
    cost_per_token: float
    quality: float
    latency_ms: float
    reason: str


USAGE = (
    Usage("acme", "shared-cloud", "shared-large", 12, 0.00001, 0.90, 900, "acme picked large"),
    Usage("acme", "acme-only", "acme-small", 8, 0.000002, 0.80, 400, "acme wanted small"),
    Usage("globex", "shared-cloud", "shared-large", 30, 0.0005, 0.95, 1500, "globex big deal"),
    Usage("globex", "globex-only", "globex-cheap", 25, 0.0000001, 0.99, 100, "globex bargain"),
)
TENANTS = ("acme", "globex")
TOKENS = 1000


def own(tenant: str) -> list[Usage]:
    return [u for u in USAGE if u.tenant == tenant]


def foreign_words(tenant: str) -> set[str]:
    """Strings that only another tenant's events contain."""
    other = {t for t in TENANTS if t != tenant}
    words = set(other)
    for u in USAGE:
        if u.tenant in other:
            words |= {u.reason, u.provider, u.model} - {x for v in own(tenant) for x in (
                v.provider, v.model)}  # fmt: skip
    return words


def events() -> list:
    settings = load_settings(environ={}, dotenv=Path("/nonexistent/.env"))
    now = datetime.now(UTC).replace(microsecond=0)
    built = []
    for u in USAGE:
        for i in range(u.count):
            built.append(
                build_provider_selection(
                    settings=settings,
                    provider_name=u.provider,
                    model_name=u.model,
                    selection_reason=u.reason,
                    tenant_id=u.tenant,
                    correlation_id=f"{u.tenant}-{u.model}-{i}",
                    selected_at=now - timedelta(minutes=5 + 7 * i),
                    selection_criteria={
                        "cost_per_token": u.cost_per_token,
                        "quality_score": u.quality,
                        "latency_ms": u.latency_ms,
                        "input_tokens": TOKENS // 2,
                        "output_tokens": TOKENS // 2,
                    },
                )
            )
    return built


@pytest.fixture(scope="module")
def stores(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The same two-tenant events in a scratch PostgreSQL schema and in a local store."""
    built = events()
    state = tmp_path_factory.mktemp("tenants") / "state"
    LocalEventStore(state / "events.sqlite3").add(built)
    encode = msgspec.json.Encoder().encode
    with scratch_schema(database_url, prefix="tenants") as scratch:
        migrate(scratch.dsn)
        writer = BatchWriter(scratch.dsn)
        try:
            rows = []
            for event in built:
                envelope = decode_envelope(event.value)
                criteria = encode(envelope.payload.selection_criteria)
                rows.append(row_from_envelope(envelope, None, None, criteria))
            assert writer.write(rows).inserted == len(built)
        finally:
            writer.close()
        yield {"postgresql": scratch.dsn, "local": str(state)}


def cli(stores: dict, store: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PROVIDER_EVENTS_", "KAFKA_")) and k != "DATABASE_URL"
    }
    env.update(PYTHONPATH=str(ROOT / "src"), PROVIDER_EVENTS_STATE_DIR=stores["local"])
    env["DATABASE_URL"] = stores["postgresql"]
    proc = subprocess.run(
        [*CLI, *args, "--store", store],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, (args, proc.stderr)
    return proc


def assert_only(tenant: str, text: str, where: str) -> None:
    shown = sorted(w for w in foreign_words(tenant) if w in text)
    assert not shown, f"{where} for {tenant} shows another tenant's {shown}"


@pytest.mark.parametrize("store", ["postgresql", "local"])
@pytest.mark.parametrize("tenant", TENANTS)
def test_stats_counts_only_the_tenants_events(stores: dict, store: str, tenant: str) -> None:
    """`stats --tenant` totals, groups, reasons and costs are those of the tenant alone."""
    doc = json.loads(cli(stores, store, "stats", "--tenant", tenant, "--json").stdout)
    mine = own(tenant)
    assert doc["window"]["tenant"] == tenant
    assert doc["total_selections"] == sum(u.count for u in mine)
    by_model = {
        (g["provider_name"], g["model_name"]): g["selections"]
        for g in json.loads(
            cli(stores, store, "stats", "--tenant", tenant, "--json", "--group-by", "model").stdout
        )["groups"]
    }
    assert by_model == {(u.provider, u.model): u.count for u in mine}
    expected_cost = sum(u.count * u.cost_per_token * TOKENS for u in mine)
    assert doc["total_cost_usd"] == pytest.approx(expected_cost, rel=1e-6)
    tenants = json.loads(
        cli(stores, store, "stats", "--tenant", tenant, "--json", "--group-by", "tenant").stdout
    )["groups"]
    assert [g["tenant_id"] for g in tenants] == [tenant]
    assert_only(tenant, json.dumps(doc), "stats --json")
    for section in ("groups", "reasons", "criteria", "trends", "cost"):
        csv = cli(stores, store, "stats", "--tenant", tenant, "--csv", "--section", section)
        assert_only(tenant, csv.stdout, f"stats --csv --section {section}")
    assert_only(tenant, cli(stores, store, "stats", "--tenant", tenant).stdout, "stats")


@pytest.mark.parametrize("store", ["postgresql", "local"])
@pytest.mark.parametrize("tenant", TENANTS)
def test_recommend_and_report_use_only_the_tenants_events(
    stores: dict, store: str, tenant: str, tmp_path: Path
) -> None:
    """`recommend` never proposes or cites another tenant's model; the HTML report holds no
    other tenant's names, reasons or counts."""
    for args in (("--json",), ()):
        out = cli(stores, store, "recommend", "--tenant", tenant, "--min-samples", "5", *args)
        assert_only(tenant, out.stdout, f"recommend {' '.join(args)}")
    html = tmp_path / f"{tenant}.html"
    cli(stores, store, "report", "--tenant", tenant, "--min-samples", "5", "--html", str(html))
    text = html.read_text()
    assert_only(tenant, text, "report")
    for u in own(tenant):
        assert u.model in text and u.reason in text


def test_every_tenant_together_without_a_filter(stores: dict) -> None:
    """Without --tenant both tenants count and acme's models are told to move to globex's
    cheaper one (so the per-tenant checks above can fail); a tenant with no events gets an
    empty answer, not someone else's."""
    for store in ("postgresql", "local"):
        everything = json.loads(cli(stores, store, "stats", "--json").stdout)
        assert everything["total_selections"] == sum(u.count for u in USAGE)
        advice = cli(stores, store, "recommend", "--min-samples", "5", "--json").stdout
        assert "globex-cheap" in advice and "acme-small" in advice
        nobody = json.loads(cli(stores, store, "stats", "--tenant", "initech", "--json").stdout)
        assert nobody["total_selections"] == 0 and nobody["groups"] == []
