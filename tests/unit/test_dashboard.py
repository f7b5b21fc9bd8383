"""The Grafana dashboard, its provisioning and the compose wiring hold together (no services).

Whether every query returns data is proven against real Prometheus and PostgreSQL in
``tests/integration/test_monitoring.py``; this file checks the structure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "provider-events.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards"
COMPOSE = DEPLOY / "docker-compose.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"

#: Grafana's global variables and the SQL macros the dashboard may use.
BUILTIN_VARIABLES = {"__interval", "__interval_ms", "__rate_interval", "__range", "__range_s"}
SQL_MACROS = {"__timeFilter", "__timeGroupAlias", "__timeFrom", "__timeTo"}
# The series function's call as a panel makes it: the dashboard's range, its tenants, its step.
_SERIES = re.compile(
    r"FROM provider_events_criteria_series\(\s*[123],.*?\s*"
    r"\$__timeFrom\(\)::timestamptz,\s*\$__timeTo\(\)::timestamptz,\s*"
    r"ARRAY\[\$tenant\]::text\[\],\s*\$__interval_ms \* interval '1 millisecond',",
    re.S,
)
#: Every metric of the contract (src/provider_events/observability/_metrics.py) has a panel.
CONTRACT_METRICS = (
    "provider_selection_total",
    "provider_selection_duration_seconds",
    "provider_events_publish_failures_total",
    "provider_events_publish_spooled_total",
    "provider_events_outbox_pending_events",
    "provider_events_outbox_oldest_age_seconds",
    "provider_events_consumer_messages_total",
    "provider_events_consumer_rows_inserted_total",
    "provider_events_consumer_duplicates_total",
    "provider_events_consumer_dlq_total",
    "provider_events_consumer_batch_duration_seconds",
    "provider_events_consumer_lag_messages",
)
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)(?::\w+)?\]\]|\$(\w+)")


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(DATASOURCES.glob("*.yaml")):
        for ds in yaml.safe_load(path.read_text(encoding="utf-8")).get("datasources", []):
            out[ds["uid"]] = ds
    return out


def datasource_refs(node: Any) -> Iterator[dict[str, Any]]:
    """Every ``{"datasource": {...}}`` reference anywhere in the dashboard."""
    if isinstance(node, dict):
        ref = node.get("datasource")
        if isinstance(ref, dict):
            yield ref
        for value in node.values():
            yield from datasource_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from datasource_refs(value)


def query_texts(dashboard: dict[str, Any]) -> Iterator[str]:
    for _, target in targets(dashboard):
        for key in ("expr", "rawSql", "legendFormat"):
            if target.get(key):
                yield target[key]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        yield query["query"] if isinstance(query, dict) else query
        yield variable.get("definition", "")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_dashboard_has_uid_title_and_unique_panel_ids() -> None:
    """The dashboard has a stable uid and title, and no two panels share an id."""
    dashboard = load_dashboard()
    assert dashboard["uid"] == "provider-events"
    assert dashboard["title"]
    ids = [p["id"] for p in all_panels(dashboard)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    assert all(isinstance(i, int) and i > 0 for i in ids)


def test_panels_do_not_overlap_on_the_grid() -> None:
    """No two panels cover the same grid cell and none is wider than the 24-column grid."""
    taken: dict[tuple[int, int], str] = {}
    for panel in all_panels(load_dashboard()):
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = panel["title"]


def test_every_datasource_reference_exists_in_the_provisioning() -> None:
    """Each data source the dashboard names is provisioned with the same uid and type."""
    provisioned = provisioned_datasources()
    assert set(provisioned) == {"provider-events-prometheus", "provider-events-postgres"}
    refs = list(datasource_refs(load_dashboard()))
    assert refs
    for ref in refs:
        assert ref["uid"] in provisioned, ref
        assert ref["type"] == provisioned[ref["uid"]]["type"], ref


def test_every_query_panel_has_targets_on_its_own_datasource() -> None:
    """Every non-row panel has queries, each on the panel's data source, with unique refIds."""
    for panel in all_panels(load_dashboard()):
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            query = target.get("rawSql") or target.get("expr")
            assert query and query.strip(), panel["title"]
            key = "expr" if target["datasource"]["type"] == "prometheus" else "rawSql"
            assert key in target, panel["title"]


def test_no_undefined_variables() -> None:
    """Every $variable in a query is a template variable, a Grafana global or a known SQL macro."""
    dashboard = load_dashboard()
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"tenant", "provider"} <= defined
    for text in query_texts(dashboard):
        for match in _VARIABLE.finditer(text):
            name = next(g for g in match.groups() if g)
            known = defined | BUILTIN_VARIABLES | SQL_MACROS
            assert name in known, f"undefined ${name} in {text!r}"


def test_template_variables_are_tenant_from_sql_and_provider_from_promql() -> None:
    """The tenant variable queries PostgreSQL; the provider variable is a PromQL label_values()."""
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    tenant, provider = variables["tenant"], variables["provider"]
    assert tenant["datasource"]["uid"] == "provider-events-postgres"
    assert "provider_selection_rollup_hourly" in tenant["query"] and "tenant_id" in tenant["query"]
    assert "provider_outcomes_hourly" in tenant["query"]  # tenants with only measured usage too
    assert provider["datasource"]["uid"] == "provider-events-prometheus"
    assert provider["query"]["query"] == "label_values(provider_selection_total, provider)"
    for variable in (tenant, provider):
        assert variable["multi"] and variable["includeAll"]


def test_sql_panels_filter_by_tenant_and_time_and_prometheus_ingest_panels_by_provider() -> None:
    """SQL panels honour $tenant and the time range; provider-labelled PromQL honours $provider."""
    for panel, target in targets(load_dashboard()):
        if "rawSql" in target:
            sql = target["rawSql"]
            # rollup panels: every hourly bucket that overlaps the dashboard's range
            rollup = "bucket_start > $__timeFrom()::timestamptz - interval '1 hour'" in sql
            # the measured-usage panels: provider_outcomes_hourly's buckets are named `hour`
            rollup = rollup or (
                "provider_outcomes_hourly" in sql
                and "hour > $__timeFrom()::timestamptz - interval '1 hour'" in sql
            )
            assert (rollup and "tenant_id IN ($tenant)" in sql) or _SERIES.search(sql), panel[
                "title"
            ]
            continue
        expr = target["expr"]
        # A ratio against provider_events_* (no provider label) is process-wide on both sides.
        if "provider_events_" in expr:
            continue
        for selector in re.findall(r"(?:provider_selection_|llm_request_)\w*(\{[^}]*\})?", expr):
            assert 'provider=~"$provider"' in selector, (panel["title"], expr)


def test_every_contract_metric_and_the_guide_panels_are_on_the_dashboard() -> None:
    """Each metric of the contract is queried, and the guide's panel kinds are present."""
    dashboard = load_dashboard()
    exprs = "\n".join(t["expr"] for _, t in targets(dashboard) if "expr" in t)
    for metric in CONTRACT_METRICS:
        assert metric in exprs, f"no panel queries {metric}"
    p99 = "histogram_quantile(0.99, sum by (le) (rate(provider_selection_duration_seconds_bucket"
    assert p99 in exprs
    assert "llm_request_duration_seconds_bucket" in exprs and "llm_request_errors_total" in exprs
    types = {p["type"] for p in all_panels(dashboard)}
    assert {"timeseries", "piechart", "table"} <= types
    sql = "\n".join(t["rawSql"] for _, t in targets(dashboard) if "rawSql" in t)
    # every SQL panel reads the rollups (maintained at ingest), none the raw table; latency
    # percentiles come from the hourly histograms through provider_events_criteria_series
    for column in ("cpt_sum", "q_sum", "cost_usd"):
        assert column in sql, column
    assert "provider_selection_events" not in sql
    # measured usage beside the declared figures: spend, tokens, and the difference per model
    assert "provider_outcomes_hourly" in sql and "provider_outcomes " not in sql
    for column in ("measured_cost_usd", "declared_cost_usd", "difference_usd", "cache_write"):
        assert column in sql, column
    assert _SERIES.search(sql) and "0.95)" in sql


def test_ingest_counters_are_selected_by_the_consumer_job_of_the_scrape_config() -> None:
    """provider_selection_total is read from the consumer's job, which prometheus.yml defines."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"provider-events-consumer", "provider-events-publisher"} <= jobs
    for panel, target in targets(load_dashboard()):
        for selector in re.findall(r"provider_selection_total\{([^}]*)\}", target.get("expr", "")):
            job = re.search(r'job="([^"]+)"', selector)
            assert job and job.group(1) in jobs, panel["title"]


def test_dashboard_provider_points_at_the_folder_compose_mounts() -> None:
    """Grafana loads the dashboard from the path where compose mounts deploy/grafana/dashboards."""
    providers = []
    for path in sorted(DASHBOARD_PROVIDERS.glob("*.yaml")):
        providers += yaml.safe_load(path.read_text(encoding="utf-8"))["providers"]
    assert len(providers) == 1 and providers[0]["type"] == "file"
    grafana = compose()["services"]["grafana"]
    binds = [v.rsplit(":", 1)[0] for v in grafana["volumes"] if v.startswith("./")]
    mounts = dict(b.split(":", 1) for b in binds)
    assert mounts["./grafana/dashboards"] == providers[0]["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{providers[0]['options']['path']}/{DASHBOARD.name}"


def test_datasource_provisioning_variables_are_set_in_compose() -> None:
    """Every ${VAR} in the data source provisioning is given to Grafana by compose."""
    env = compose()["services"]["grafana"]["environment"]
    used = set()
    for path in DATASOURCES.glob("*.yaml"):
        used |= set(re.findall(r"\$\{(\w+)\}", path.read_text(encoding="utf-8")))
    assert used
    assert used <= set(env), used - set(env)


PIPELINE = ["kafka", "postgres", "prometheus", "grafana", "consumer", "migrate"]


@pytest.mark.parametrize("service", PIPELINE)
def test_compose_has_the_whole_pipeline(service: str) -> None:
    """Compose runs Kafka (official image, KRaft), PostgreSQL, the consumer, Prometheus, Grafana."""
    services = compose()["services"]
    assert service in services
    if service == "kafka":
        assert services["kafka"]["image"].startswith("apache/kafka:")
        assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    if service == "consumer":
        consumer = services["consumer"]
        assert consumer["command"][0] == "consume"
        assert consumer["environment"]["PROVIDER_EVENTS_METRICS_PORT"] == "9464"
        assert consumer["environment"]["PROVIDER_EVENTS_METRICS_ADDR"] == "0.0.0.0"
        assert consumer["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert (DEPLOY / consumer["build"]["dockerfile"].removeprefix("deploy/")).is_file()


def test_compose_mounts_exist_and_prometheus_scrapes_the_consumer_port() -> None:
    """Every file compose mounts exists, and Prometheus scrapes the consumer's metrics port."""
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["provider-events-consumer"]["static_configs"][0]["targets"] == ["consumer:9464"]
    assert config["rule_files"] == ["alerts.yml"]
