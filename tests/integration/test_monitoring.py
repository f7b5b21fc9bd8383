"""Metrics, dashboard and alerts against a real Prometheus, Kafka and PostgreSQL.

One module-scoped stack: a fresh topic and a throwaway schema; the real consumer
(``provider-events consume --metrics-port``); a long-lived publisher process that calls
``enable_publisher_metrics`` and also exports the caller-side ``llm_request_*`` metrics; a poison
message for the dead-letter path; and Debian's ``prometheus`` on 127.0.0.1 scraping both every
second with the shipped alert rules. Then every PromQL expression of the dashboard (template
variables substituted) must return a series through the HTTP API, and every SQL panel must
return rows from PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
import yaml

from tests.support import create_topic, installed, run_cli, terminate

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "provider-events.json"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
CONSUMER_JOB = "provider-events-consumer"
PUBLISHER_JOB = "provider-events-publisher"

#: What the publisher process publishes: (provider, model, tenant) x REPEAT, all delivered.
SELECTIONS = [
    ("anthropic", "claude-3-5-sonnet", "acme"),
    ("anthropic", "claude-3-haiku", "globex"),
    ("openai", "gpt-4o", "acme"),
    ("openai", "gpt-4o-mini", "initech"),
    ("gemini-flash", "gemini-1.5-flash-002", "globex"),
    ("mistral.ai", "mistral-large-2", "acme"),  # a regex metacharacter in a label value
]
REPEAT = 4
DELIVERED = len(SELECTIONS) * REPEAT
#: Published through an unreachable broker: they stay in the publisher's outbox.
SPOOLED = 2
#: Measured usage: Claude Code transcripts imported with `provider-events import claude-code`
#: per (tenant, provider): (model, usage (in, out, cache read, cache write 5m), requests).
#: claude-3-5-sonnet: $3 / $15 / $0.30 / $3.75 per million tokens, so one request costs
#: 0.003 + 0.003 + 0.00015 + 0.000375 = 0.006525 USD; glm-4.6 at Z.AI: 0.0006 + 0.00044.
OUTCOMES = {
    ("acme", "anthropic"): [
        ("claude-3-5-sonnet", (1000, 200, 500, 100), 2),
        ("claude-unpriced-internal", (10, 20, 0, 0), 1),  # no price anywhere: unpriced
    ],
    ("soylent", "zai"): [("glm-4.6", (1000, 200, 0, 0), 1)],  # a tenant with outcomes only
}
MEASURED_COST = {"claude-3-5-sonnet": 2 * 0.006525, "glm-4.6": 0.00104}
OUTCOME_COUNT = sum(n for models in OUTCOMES.values() for _, _, n in models)
#: Dashboard substitutions for Grafana's global variables.
RATE_INTERVAL = "30s"
RANGE = "1h"
INTERVAL_SECONDS = 60

T = TypeVar("T")


# -- the dashboard's queries ----------------------------------------------------------------
def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _targets(kind: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for panel in _dashboard()["panels"]:
        for target in panel.get("targets", []):
            if kind in target:
                out.append((f"{panel['title']} [{target['refId']}]", target))
    return out


PROMQL = _targets("expr")
SQL = _targets("rawSql")


def substitute_promql(expr: str, providers: str) -> str:
    """The expression as Grafana sends it, with ``$provider`` rendered as ``providers``."""
    out = (
        expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__range", RANGE)
        .replace("$provider", providers)
    )
    assert "$" not in out, f"unsubstituted variable in {out!r}"
    return out


def grafana_prometheus_regex_escape(value: str) -> str:
    """A multi-value item as Grafana renders it into a PromQL ``=~"..."`` string."""
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value)


def expand_sql(sql: str, tenants: list[str], start: datetime, end: datetime) -> str:
    """The SQL as Grafana's PostgreSQL data source runs it: macros expanded, $tenant quoted."""
    out = re.sub(
        r"\$__timeGroupAlias\((\w+),\s*\$__interval\)",
        rf'floor(extract(epoch from \1)/{INTERVAL_SECONDS})*{INTERVAL_SECONDS} AS "time"',
        sql,
    )
    out = re.sub(
        r"\$__timeFilter\((\w+)\)",
        rf"\1 BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'",
        out,
    )
    out = out.replace("$__timeFrom()", f"'{start.isoformat()}'")
    out = out.replace("$__timeTo()", f"'{end.isoformat()}'")
    out = out.replace("$__interval_ms", str(INTERVAL_SECONDS * 1000))
    quoted = ",".join("'" + t.replace("'", "''") + "'" for t in tenants)
    out = out.replace("$tenant", quoted)
    assert "$" not in out, f"unexpanded macro or variable in {out!r}"
    return out


# -- helpers --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], T | None], timeout: float, *, every: float = 0.25) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (OSError, ValueError, psycopg.Error) as exc:
            last_error = exc
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:g}s waiting for {what} (last error: {last_error!r})")


def http_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))


def http_text(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode("utf-8")


PUBLISHER_SCRIPT = r"""
import json, os, signal, sys, time

from prometheus_client import Counter, Histogram

from provider_events import Publisher, load_settings
from provider_events.observability import _metrics
from provider_events.observability._publisher_metrics import enable_publisher_metrics

port, spec = int(sys.argv[1]), json.loads(sys.argv[2])
settings = load_settings().with_overrides(relay_autostart=False)
bound = enable_publisher_metrics(port=port, addr="127.0.0.1", settings=settings)

# The caller's own request metrics (what the correlation panels need), on the same registry.
duration = Histogram("llm_request_duration_seconds", "LLM request time", ["provider"],
                     registry=_metrics.REGISTRY)
errors = Counter("llm_request_errors_total", "Failed LLM requests", ["provider"],
                 registry=_metrics.REGISTRY)

# No outbox for this one: an attempt that fails while the shared broker is briefly away (other
# suites restart it) is retried with the same event, so exactly one row per selection lands.
publisher = Publisher(settings, outbox=False)
event_ids, statuses = [], []
for i in range(spec["repeat"]):
    for n, (provider, model, tenant) in enumerate(spec["selections"]):
        event = publisher.build(
            provider_name=provider, model_name=model, correlation_id=None, tenant_id=tenant,
            selection_reason="monitoring test",
            selection_criteria={"cost_per_token": 0.000001 * (n + 1), "latency_ms": 100 + 10 * n,
                                "quality_score": 0.7 + 0.05 * n, "input_tokens": 1000 + i,
                                "output_tokens": 200 + i},
        )
        for attempt in range(60):
            result = publisher.send_many_sync([event])[0]
            statuses.append(result.status.value)
            if result.delivered:
                break
            time.sleep(1)
        event_ids.append(event.event_id)
        duration.labels(provider=provider).observe(0.2 + 0.1 * n)
        if (i + n) % 3 == 0:
            errors.labels(provider=provider).inc()

# Kafka unreachable for this publisher: its events are spooled to the same outbox.
down = Publisher(settings.with_overrides(kafka_bootstrap_servers=spec["down_bootstrap"],
                                         delivery_timeout=1.0))
for _ in range(spec["spooled"]):
    r = down.publish_sync(provider_name="openai", model_name="gpt-4o", correlation_id=None,
                          tenant_id="acme", selection_reason="monitoring test (broker down)")
    statuses.append(r.status.value)
# Invalid input: rejected, counted as reason="invalid".
r = down.publish_sync(provider_name="", model_name="x", correlation_id=None,
                      selection_reason="")
statuses.append(r.status.value)

print(json.dumps({"port": bound, "event_ids": event_ids, "statuses": statuses}), flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(3600)
"""


@dataclass
class Stack:
    prometheus_url: str
    dsn: str
    topic: str
    consumer_port: int
    publisher_port: int
    published: dict[str, Any]
    started: datetime
    logs: Path
    procs: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)

    def check_alive(self) -> None:
        """Fail at once, with its log, when a child we started has exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                log = self.logs / f"{name}.log"
                tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                pytest.fail(f"{name} exited with {proc.returncode}:\n{tail}")

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        doc = http_json(url)
        assert doc["status"] == "success", doc
        return list(doc["data"]["result"])

    def label_values(self, label: str, metric: str) -> list[str]:
        query = urllib.parse.urlencode({"match[]": metric})
        doc = http_json(f"{self.prometheus_url}/api/v1/label/{label}/values?{query}")
        return sorted(doc["data"])


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    """Debian's Prometheus server (``dev/install-prometheus.sh``)."""
    return installed("prometheus", "run dev/install-prometheus.sh")


@pytest.fixture(scope="module")
def promtool_bin() -> str:
    """promtool, from the same package."""
    return installed("promtool", "run dev/install-prometheus.sh")


def _prometheus_config(consumer: int, publisher: int, own: int) -> dict[str, Any]:
    """The shipped prometheus.yml with local targets, 1 s intervals and absolute rule paths."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS_DIR / f) for f in config["rule_files"]]
    targets = {CONSUMER_JOB: consumer, PUBLISHER_JOB: publisher, "prometheus": own}
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == set(targets), jobs
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{targets[job['job_name']]}"]}]
    return config


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str,
    database_url: str,
    prometheus_bin: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """Consumer, publisher, poison message and Prometheus, all running and scraped."""
    from confluent_kafka import Producer

    from provider_events.store import migrate
    from provider_events.store._scratch import scratch_schema

    tmp = tmp_path_factory.mktemp("monitoring")
    topic = create_topic(kafka_bootstrap, f"test.monitoring.{uuid.uuid4().hex[:12]}")
    create_topic(kafka_bootstrap, f"{topic}.dlq")
    consumer_port, publisher_port, prometheus_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PROVIDER_EVENTS_TOPIC": topic,
        "PROVIDER_EVENTS_STATE_DIR": str(tmp / "state"),
        "PROVIDER_EVENTS_DELIVERY_TIMEOUT": "10",
        "PYTHONPATH": str(ROOT / "src"),
    }
    env.pop("PROVIDER_EVENTS_OUTBOX", None)
    procs: dict[str, subprocess.Popen[Any]] = {}
    logs = {name: (tmp / f"{name}.log").open("w") for name in ("consumer", "prometheus")}
    started = datetime.now(UTC)
    with scratch_schema(database_url, "monitoring") as schema:
        migrate(schema.dsn)
        try:
            procs["consumer"] = subprocess.Popen(
                [
                    sys.executable, "-m", "provider_events.cli", "consume",
                    "--topic", topic,
                    "--group-id", f"monitoring-{uuid.uuid4().hex[:8]}",
                    "--metrics-port", str(consumer_port),
                    "--metrics-addr", "127.0.0.1",
                    "--batch-timeout", "0.5",
                ],
                env={**env, "DATABASE_URL": schema.dsn},
                stdout=logs["consumer"],
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            spec = {
                "selections": SELECTIONS,
                "repeat": REPEAT,
                "spooled": SPOOLED,
                "down_bootstrap": f"127.0.0.1:{free_port()}",
            }
            procs["publisher"] = subprocess.Popen(
                [sys.executable, "-c", PUBLISHER_SCRIPT, str(publisher_port), json.dumps(spec)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=(tmp / "publisher.log").open("w"),
                text=True,
            )
            assert procs["publisher"].stdout is not None
            line = procs["publisher"].stdout.readline()
            assert line, f"publisher exited: {(tmp / 'publisher.log').read_text()}"
            published = json.loads(line)

            _import_outcomes(tmp, env, started)

            # A poison message: the consumer dead-letters it and keeps going.
            producer = Producer({"bootstrap.servers": kafka_bootstrap})
            producer.produce(topic, b"\xff\xfe not json", key=b"poison")
            assert producer.flush(30) == 0

            config = tmp / "prometheus.yml"
            config.write_text(
                yaml.safe_dump(_prometheus_config(consumer_port, publisher_port, prometheus_port))
            )
            procs["prometheus"] = subprocess.Popen(
                [
                    prometheus_bin,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                stdout=logs["prometheus"],
                stderr=subprocess.STDOUT,
            )
            url = f"http://127.0.0.1:{prometheus_port}"
            wait_for("Prometheus ready", lambda: http_text(f"{url}/-/ready"), 30)
            yield Stack(
                url,
                schema.dsn,
                topic,
                consumer_port,
                publisher_port,
                published,
                started,
                tmp,
                procs,
            )
        finally:
            for name in ("prometheus", "publisher", "consumer"):
                terminate(procs.get(name))
            for handle in logs.values():
                handle.close()


def _cli_json(args: list[str], env: dict[str, str]) -> Any:
    """``provider-events ARGS --json`` in a child process: its JSON output (exit 0 asserted)."""
    done = run_cli(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _import_outcomes(tmp: Path, env: dict[str, str], started: datetime) -> None:
    """Write OUTCOMES as Claude Code transcripts (each response on two lines, one per content
    block, as Claude Code writes them) and publish them with `provider-events import`."""
    from tests.transcripts import assistant_line, usage, user_line, write_lines

    stamp = (started + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    for (tenant, provider), models in OUTCOMES.items():
        projects = tmp / f"claude-{tenant}" / "projects"
        session = f"monitoring-{tenant}"
        cwd = f"/work/{tenant}"
        lines = [user_line(session, cwd, stamp)]
        for model, (inp, out, read, w5m), requests in models:
            for r in range(requests):
                line = assistant_line(
                    session, cwd, stamp, f"msg-{model}-{r}", f"req-{model}-{r}", model,
                    usage(inp, out, read, w5m),
                )  # fmt: skip
                lines += [line, line]  # one line per content block, the same usage
        write_lines(projects / cwd.replace("/", "-") / f"{session}.jsonl", lines)
        summary = _cli_json(
            ["import", "claude-code", "--projects-dir", str(projects), "--provider", provider],
            {
                **env,
                "PROVIDER_EVENTS_TENANT_ID": tenant,
                "PROVIDER_EVENTS_STATE_DIR": str(tmp / f"import-{tenant}"),
                "HOME": str(tmp / f"home-{tenant}"),
            },
        )
        assert summary["published"] == sum(n for _, _, n in models), summary
        assert summary["duplicates"] == summary["published"], summary  # the block repeats


@pytest.fixture(scope="module")
def settled(stack: Stack) -> Stack:
    """The consumer stored every delivered event and Prometheus has scraped it all since."""

    def stored() -> bool:
        stack.check_alive()
        with psycopg.connect(stack.dsn, connect_timeout=5) as conn:
            row = conn.execute("SELECT count(*) FROM provider_selection_events").fetchone()
        return row is not None and row[0] >= DELIVERED

    assert stack.published["statuses"].count("delivered") == DELIVERED, stack.published
    wait_for("the consumer to store every delivered event", stored, 90)

    def outcomes_stored() -> bool:
        stack.check_alive()
        with psycopg.connect(stack.dsn, connect_timeout=5) as conn:
            row = conn.execute("SELECT count(*) FROM provider_outcomes").fetchone()
        return row is not None and row[0] >= OUTCOME_COUNT

    wait_for("the consumer to store every imported outcome", outcomes_stored, 90)

    def merged() -> bool:  # the rollups trail the rows by the writer's merge interval (~2 s)
        stack.check_alive()
        with psycopg.connect(stack.dsn, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(selections), 0) FROM provider_selection_rollup_hourly"
            ).fetchone()
        return row is not None and row[0] >= DELIVERED

    wait_for("the consumer to merge its staged rollups", merged, 60)

    def scraped() -> bool:
        stack.check_alive()
        dlq = stack.query(f'sum(provider_events_consumer_dlq_total{{job="{CONSUMER_JOB}"}})')
        rows = stack.query(
            f'sum(provider_events_consumer_rows_inserted_total{{job="{CONSUMER_JOB}"}})'
        )
        ups = stack.query("min(up)")
        return bool(
            dlq
            and float(dlq[0]["value"][1]) >= 1
            and rows
            and float(rows[0]["value"][1]) >= DELIVERED
            and ups
            and float(ups[0]["value"][1]) == 1
        )

    wait_for("Prometheus to scrape the consumer's final counts", scraped, 60)
    time.sleep(2.5)  # a few more scrapes, so rate() over the window has samples after the jump
    return stack


# -- PromQL ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("title", "target"), PROMQL, ids=[t for t, _ in PROMQL])
def test_every_promql_expression_returns_a_series(
    settled: Stack, title: str, target: dict[str, Any]
) -> None:
    """The expression returns at least one series, with $provider as "All" and as a list."""
    providers = settled.label_values("provider", "provider_selection_total")
    listed = "(" + "|".join(grafana_prometheus_regex_escape(p) for p in providers) + ")"
    for rendered in (".*", listed):
        expr = substitute_promql(target["expr"], rendered)
        result = wait_for(f"a series from {expr}", lambda e=expr: settled.query(e), 20)
        assert result, (title, expr)


def test_provider_variable_lists_every_published_provider(settled: Stack) -> None:
    """label_values(provider_selection_total, provider) gives exactly the providers we used."""
    variable = next(v for v in _dashboard()["templating"]["list"] if v["name"] == "provider")
    metric, label = re.fullmatch(
        r"label_values\((\w+),\s*(\w+)\)", variable["query"]["query"]
    ).groups()  # type: ignore[union-attr]
    assert settled.label_values(label, metric) == sorted({p for p, _, _ in SELECTIONS})


def test_selections_are_counted_at_ingest_per_provider_and_model(settled: Stack) -> None:
    """The consumer's provider_selection_total matches the delivered events per provider, model."""
    result = settled.query(
        f'sum by (provider, model) (provider_selection_total{{job="{CONSUMER_JOB}"}})'
    )
    counted = {
        (s["metric"]["provider"], s["metric"]["model"]): float(s["value"][1]) for s in result
    }
    assert counted == {(p, m): float(REPEAT) for p, m, _ in SELECTIONS}


def test_publisher_metrics_reach_prometheus(settled: Stack) -> None:
    """The long-lived publisher's counters, histogram and outbox gauges hold the right values."""

    def value(expr: str) -> float:
        result = settled.query(expr)
        assert len(result) == 1, (expr, result)
        return float(result[0]["value"][1])

    statuses = settled.published["statuses"]
    attempts = len(statuses) - statuses.count("rejected")  # every publish call with a valid event
    not_delivered = statuses.count("spooled") + statuses.count("failed")
    assert statuses.count("spooled") == SPOOLED and statuses.count("rejected") == 1
    job = f'job="{PUBLISHER_JOB}"'
    assert value(f"sum(provider_selection_total{{{job}}})") == attempts
    assert value(f"sum(provider_selection_duration_seconds_count{{{job}}})") == attempts
    assert value(f"sum(provider_events_publish_spooled_total{{{job}}})") == SPOOLED
    failures = "provider_events_publish_failures_total"
    assert value(f'sum({failures}{{{job}, reason="invalid"}})') == 1
    assert value(f'sum({failures}{{{job}, reason!="invalid"}})') == not_delivered
    assert value(f"provider_events_outbox_pending_events{{{job}}}") == SPOOLED
    assert value(f"provider_events_outbox_oldest_age_seconds{{{job}}}") > 0


def test_label_values_are_bounded(settled: Stack) -> None:
    """No series of ours carries an event id, and failure reasons come from the fixed set."""
    from provider_events.observability._publisher_metrics import FAILURE_REASONS

    doc = http_json(
        f"{settled.prometheus_url}/api/v1/series?"
        + urllib.parse.urlencode({"match[]": '{__name__=~"provider_.*|llm_request_.*"}'})
    )
    series = doc["data"]
    assert series
    ids = set(settled.published["event_ids"])
    uuid_like = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    for labels in series:
        for name, value in labels.items():
            assert value not in ids and not uuid_like.search(value), (name, value)
        if labels["__name__"].startswith("provider_events_publish_failures"):
            assert labels["reason"] in FAILURE_REASONS


# -- SQL ------------------------------------------------------------------------------------
def _tenants(stack: Stack, start: datetime, end: datetime) -> list[str]:
    variable = next(v for v in _dashboard()["templating"]["list"] if v["name"] == "tenant")
    with psycopg.connect(stack.dsn, connect_timeout=5) as conn:
        rows = conn.execute(expand_sql(variable["query"], [], start, end)).fetchall()
    return [r[0] for r in rows]


def test_tenant_variable_lists_every_published_tenant(settled: Stack) -> None:
    """The tenant variable's SQL returns the tenants the events were published for."""
    start, end = settled.started - timedelta(minutes=5), datetime.now(UTC) + timedelta(minutes=1)
    expected = {t for _, _, t in SELECTIONS} | {t for t, _ in OUTCOMES}
    assert _tenants(settled, start, end) == sorted(expected)


@pytest.mark.parametrize(("title", "target"), SQL, ids=[t for t, _ in SQL])
def test_every_sql_panel_returns_rows(settled: Stack, title: str, target: dict[str, Any]) -> None:
    """The panel's SQL (macros expanded, $tenant = every tenant) runs and returns rows."""
    start, end = settled.started - timedelta(minutes=5), datetime.now(UTC) + timedelta(minutes=1)
    tenants = _tenants(settled, start, end)
    with psycopg.connect(settled.dsn, connect_timeout=5) as conn:
        for chosen in (tenants, tenants[:1]):
            rows = conn.execute(expand_sql(target["rawSql"], chosen, start, end)).fetchall()
            assert rows, (title, chosen)
            assert all(any(v is not None for v in row) for row in rows), title


def test_sql_panels_count_every_stored_event(settled: Stack) -> None:
    """The selection-frequency panel's buckets add up to the delivered events."""
    title, target = next((t, x) for t, x in SQL if t.startswith("Selection frequency"))
    start, end = settled.started - timedelta(minutes=5), datetime.now(UTC) + timedelta(minutes=1)
    tenants = _tenants(settled, start, end)
    with psycopg.connect(settled.dsn, connect_timeout=5) as conn:
        rows = conn.execute(expand_sql(target["rawSql"], tenants, start, end)).fetchall()
    assert sum(r[2] for r in rows) == DELIVERED, title


def _panel_sql(prefix: str) -> str:
    return next(x["rawSql"] for t, x in SQL if t.startswith(prefix))


def test_measured_panels_hold_the_imported_usage_beside_the_declared_cost(settled: Stack) -> None:
    """The measured-usage panels give the imported outcomes' tokens and cost exactly (content
    block duplicates counted once, unpriced never $0), beside the declared cost, per tenant."""
    start, end = settled.started - timedelta(minutes=5), datetime.now(UTC) + timedelta(minutes=1)
    tenants = _tenants(settled, start, end)
    table = _panel_sql("Measured vs declared cost")
    with psycopg.connect(settled.dsn, connect_timeout=5) as conn:
        cur = conn.execute(expand_sql(table, tenants, start, end))
        names = [c.name for c in cur.description or []]
        rows = {
            (r["provider"], r["model"]): r for r in (dict(zip(names, v, strict=True)) for v in cur)
        }
        spend = conn.execute(
            expand_sql(_panel_sql("Measured spend by provider"), tenants, start, end)
        ).fetchall()
        tokens = conn.execute(
            expand_sql(_panel_sql("Measured tokens by provider"), tenants, start, end)
        ).fetchall()
        acme_only = conn.execute(expand_sql(table, ["acme"], start, end)).fetchall()
    for (_, provider), models in OUTCOMES.items():
        for model, (inp, out, read, w5m), requests in models:
            row = rows[(provider, model)]
            assert (row["outcomes"], row["input_tokens"], row["output_tokens"]) == (
                requests, requests * inp, requests * out
            )  # fmt: skip
            assert (row["cache_read_tokens"], row["cache_write_tokens"]) == (
                requests * read, requests * w5m
            )  # fmt: skip
            if model in MEASURED_COST:
                assert row["unpriced"] == 0
                assert row["measured_cost_usd"] == pytest.approx(MEASURED_COST[model], abs=1e-12)
            else:
                assert row["unpriced"] == requests and row["measured_cost_usd"] is None
    # declared beside measured: the selections' own estimate, and the difference
    sonnet = rows[("anthropic", "claude-3-5-sonnet")]
    declared = sum(0.000001 * (1000 + i + 200 + i) for i in range(REPEAT))
    assert sonnet["selections"] == REPEAT
    assert sonnet["declared_cost_usd"] == pytest.approx(declared, rel=1e-9)
    assert sonnet["difference_usd"] == pytest.approx(MEASURED_COST["claude-3-5-sonnet"] - declared)
    # a selected model without outcomes: declared only
    assert rows[("openai", "gpt-4o")]["outcomes"] == 0
    assert rows[("openai", "gpt-4o")]["measured_cost_usd"] is None
    # the time series add up to the same figures
    by_provider: dict[str, float] = {}
    for _, provider, cost in spend:
        by_provider[provider] = by_provider.get(provider, 0.0) + cost
    assert by_provider == pytest.approx(
        {"anthropic": MEASURED_COST["claude-3-5-sonnet"], "zai": MEASURED_COST["glm-4.6"]}
    )
    assert sum(r[2] + r[3] + r[4] + r[5] for r in tokens) == sum(
        n * sum(u) for models in OUTCOMES.values() for _, u, n in models
    )
    # $tenant filters the measured rows too: soylent's outcomes are not acme's
    assert all(r[0] != "zai" for r in acme_only)


def test_measured_panel_agrees_with_the_usage_command(settled: Stack) -> None:
    """`provider-events usage --by model --json` and the dashboard's table give the same
    measured tokens and cost per provider and model over the same window."""
    start = settled.started - timedelta(minutes=5)
    end = datetime.now(UTC) + timedelta(hours=1)
    usage = _cli_json(
        [
            "usage",
            "--by",
            "model",
            "--store",
            "postgresql",
            "--since",
            start.isoformat(),
            "--until",
            end.isoformat(),
        ],
        {**os.environ, "DATABASE_URL": settled.dsn, "PYTHONPATH": str(ROOT / "src")},
    )
    # the CLI rounds the window to whole hours; the panel's window holds the same buckets
    since = datetime.fromisoformat(usage["window"]["since"].replace("Z", "+00:00"))
    until = datetime.fromisoformat(usage["window"]["until"].replace("Z", "+00:00"))
    tenants = _tenants(settled, since, until)
    with psycopg.connect(settled.dsn, connect_timeout=5) as conn:
        cur = conn.execute(
            expand_sql(_panel_sql("Measured vs declared cost"), tenants, since, until)
        )
        names = [c.name for c in cur.description or []]
        panel = [dict(zip(names, v, strict=True)) for v in cur]
    measured = {r["model"]: r for r in panel if r["outcomes"]}  # one provider per model here
    assert len(usage["rows"]) == len(measured) == sum(len(m) for m in OUTCOMES.values())
    for row in usage["rows"]:
        mine = measured[row["model"]]
        assert (row["outcomes"], row["unpriced"]) == (mine["outcomes"], mine["unpriced"])
        assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"]) == (
            mine["input_tokens"], mine["output_tokens"], mine["cache_read_tokens"]
        )  # fmt: skip
        if row["unpriced"] == row["outcomes"]:  # the command counts them; the panel shows no $
            assert mine["measured_cost_usd"] is None
        else:
            assert row["cost_usd"] == pytest.approx(mine["measured_cost_usd"], abs=1e-9)
    assert usage["totals"]["cost_usd"] == pytest.approx(sum(MEASURED_COST.values()), abs=1e-9)


# -- alerts and exposition ------------------------------------------------------------------
def test_alert_rules_load_and_the_dead_letter_alert_fires(settled: Stack) -> None:
    """The server loads every shipped rule healthy, and the poison message fires the DLQ alert."""
    groups = http_json(f"{settled.prometheus_url}/api/v1/rules")["data"]["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    shipped = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8"))
    assert set(rules) == {r["alert"] for g in shipped["groups"] for r in g["rules"]}

    def firing() -> list[dict[str, Any]]:
        alerts = http_json(f"{settled.prometheus_url}/api/v1/alerts")["data"]["alerts"]
        return [
            a
            for a in alerts
            if a["labels"]["alertname"] == "ProviderEventsDeadLetters" and a["state"] == "firing"
        ]

    alerts = wait_for("ProviderEventsDeadLetters to fire", firing, 30)
    assert alerts[0]["labels"]["job"] == CONSUMER_JOB
    assert all(r["health"] == "ok" for r in rules.values()), rules


@pytest.mark.parametrize("who", ["consumer", "publisher"])
def test_exposition_passes_promtool_check_metrics(
    settled: Stack, promtool_bin: str, who: str
) -> None:
    """`promtool check metrics` finds no naming or type problems in our exporters' output."""
    port = settled.consumer_port if who == "consumer" else settled.publisher_port
    body = http_text(f"http://127.0.0.1:{port}/metrics")
    assert "provider_" in body
    proc = subprocess.run(
        [promtool_bin, "check", "metrics"],
        input=body,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if line.startswith(("provider_", "llm_request_"))
    ]
    assert not problems, problems


# -- failure reasons and label bounds (no Prometheus needed) ---------------------------------
def test_failure_reasons_of_real_publish_results(tmp_path: Path) -> None:
    """Real spooled, outbox-full and rejected results map to their fixed failure reasons."""
    from provider_events import DeliveryStatus, Publisher, load_settings
    from provider_events.observability._publisher_metrics import failure_reason

    settings = load_settings().with_overrides(
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",  # nothing listens there
        delivery_timeout=1.0,
        relay_autostart=False,
        state_dir=tmp_path,
        outbox_max_events=1,
    )
    publisher = Publisher(settings)
    fields: dict[str, Any] = {
        "provider_name": "openai",
        "model_name": "gpt-4o",
        "correlation_id": None,
        "selection_reason": "reasons test",
    }
    try:
        spooled = publisher.publish_sync(**fields)
        refused = publisher.publish_sync(**fields)
        rejected = publisher.publish_sync(**{**fields, "provider_name": ""})
    finally:
        publisher.close()
    assert spooled.status is DeliveryStatus.SPOOLED
    assert failure_reason(spooled) in ("broker_unavailable", "timeout")
    assert refused.status is DeliveryStatus.FAILED
    assert failure_reason(refused) == "outbox_full"
    assert rejected.status is DeliveryStatus.REJECTED
    assert failure_reason(rejected) == "invalid"


@pytest.mark.parametrize(
    ("status", "error", "reason"),
    [
        ("delivered", None, None),
        ("stored", None, None),
        ("queued", "queued for background delivery", None),
        ("spooled", "not acknowledged within the delivery timeout", "timeout"),
        ("spooled", "not acknowledged within 5s", "timeout"),
        ("spooled", "_MSG_TIMED_OUT: Local: Message timed out", "timeout"),
        ("spooled", "all brokers are down (recently reported by the client)", "broker_unavailable"),
        ("spooled", "_ALL_BROKERS_DOWN: 1/1 brokers are down", "broker_unavailable"),
        ("spooled", "local producer queue is full", "queue_full"),
        ("spooled", "queued behind earlier spooled events with the same key", "backlog"),
        ("spooled", "KafkaException: KafkaError{code=TOPIC_AUTHORIZATION_FAILED}", "kafka_error"),
        (
            "failed",
            "x; and not spooled: outbox /s/outbox.sqlite3 is full (9 events, 1 bytes",
            "outbox_full",
        ),
        (
            "failed",
            "x; and not spooled: outbox /s/o: disk full or not writable (e)",
            "outbox_error",
        ),
        ("failed", "outbox /full/o.sqlite3: database is locked", "outbox_error"),
        ("failed", "_ALL_BROKERS_DOWN: 1/1 brokers are down", "broker_unavailable"),
        ("failed", None, "other"),
        ("rejected", "Expected `str` of length >= 1", "invalid"),
    ],
)
def test_failure_reason_is_one_of_a_fixed_set(
    status: str, error: str | None, reason: str | None
) -> None:
    """Every publish outcome maps to a bounded reason (or none when it is not a failure)."""
    from provider_events import DeliveryStatus, PublishResult
    from provider_events.observability._publisher_metrics import FAILURE_REASONS, failure_reason

    got = failure_reason(PublishResult(DeliveryStatus(status), error=error))
    assert got == reason
    assert got is None or got in FAILURE_REASONS


def test_provider_and_model_labels_are_capped() -> None:
    """Past the cap, new label values are reported as "other"; known ones keep their name."""
    from provider_events.observability._metrics import OTHER
    from provider_events.observability._metrics import LabelCap as _LabelCap

    cap = _LabelCap(2)
    assert [cap(v) for v in ("a", "b", "c", "a", "d", "b")] == ["a", "b", OTHER, "a", OTHER, "b"]
