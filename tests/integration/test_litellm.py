"""The LiteLLM callback with the real library, a local mock LLM API, the real broker and
PostgreSQL: every routed call (sync, async, streaming, fallback, failure) becomes a selection
whose criteria say what was requested, what served it, the fallbacks tried, tokens and cost.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

litellm = pytest.importorskip("litellm")  # the [litellm] extra; installed by make install

from provider_events import Publisher  # noqa: E402
from provider_events.integrations.litellm import ProviderEventsLogger  # noqa: E402
from provider_events.publish._outbox import Outbox  # noqa: E402
from tests.mock_llm import ANTHROPIC_USAGE, OPENAI_USAGE, MockServer, mock_llm_server  # noqa: E402
from tests.support import cli_env, migrated_schema, publisher_settings, read_topic, run_cli  # noqa: E402

MESSAGES = [{"role": "user", "content": "hi"}]
SELECTED = "omninode.agent.provider.selected.v1"
COMPLETED = "omninode.agent.provider.completed.v1"


settings_for = publisher_settings


@pytest.fixture
def mock() -> Iterator[MockServer]:
    with mock_llm_server() as server:
        yield server


def _only_callback(logger: ProviderEventsLogger | None) -> None:
    """LiteLLM copies ``litellm.callbacks`` into its own lists on first use: reset them all."""
    litellm.logging_callback_manager._reset_all_callbacks()
    if logger is not None:
        litellm.callbacks = [logger]


@pytest.fixture
def logger_for() -> Iterator[Any]:
    """Installs a ProviderEventsLogger as LiteLLM's only callback; removed afterwards."""
    made: list[ProviderEventsLogger] = []

    def install(publisher: Publisher, **options: Any) -> ProviderEventsLogger:
        logger = ProviderEventsLogger(publisher, **options)
        made.append(logger)
        _only_callback(logger)
        return logger

    yield install
    _only_callback(None)
    for logger in made:
        logger.close(timeout=5)


def _criteria(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v["payload"]["selection_criteria"] for v in values]


def _run_calls(base: str, correlation: str) -> None:
    """Sync, streaming, async and routed calls through LiteLLM against the mock."""
    litellm.completion(model="openai/gpt-4o-mini", api_base=f"{base}/v1", api_key="k",
                       messages=MESSAGES)  # fmt: skip
    stream = litellm.completion(model="openai/gpt-4o-mini", api_base=f"{base}/v1", api_key="k",
                                messages=MESSAGES, stream=True,
                                stream_options={"include_usage": True})  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello"

    async def async_calls() -> None:
        await litellm.acompletion(model="anthropic/claude-3-5-haiku-20241022", api_base=base,
                                  api_key="k", messages=MESSAGES)  # fmt: skip
        chunks = await litellm.acompletion(model="anthropic/claude-3-5-haiku-20241022",
                                           api_base=base, api_key="k", messages=MESSAGES,
                                           stream=True)  # fmt: skip
        async for _ in chunks:
            pass
        await asyncio.sleep(0.5)  # LiteLLM logs async calls in tasks on this loop

    asyncio.run(async_calls())
    router = litellm.Router(
        model_list=[
            {"model_name": "primary", "litellm_params": {
                "model": "openai/gpt-4o", "api_base": f"{base}/fail/v1", "api_key": "k"}},
            {"model_name": "backup", "litellm_params": {
                "model": "openai/gpt-4o-mini", "api_base": f"{base}/v1", "api_key": "k"}},
        ],
        fallbacks=[{"primary": ["backup"]}],
        num_retries=0,
    )  # fmt: skip
    answer = router.completion(model="primary", messages=MESSAGES,
                               metadata={"provider_events_correlation_id": correlation})  # fmt: skip
    assert answer.choices[0].message.content == "Hello"
    with pytest.raises(litellm.exceptions.InternalServerError):
        litellm.completion(model="openai/gpt-4o", api_base=f"{base}/fail/v1", api_key="k",
                           messages=MESSAGES, num_retries=0)  # fmt: skip


def test_every_call_is_a_selection_on_the_broker_and_a_row_in_postgres(
    kafka_bootstrap: str, topic: str, database_url: str, mock: MockServer, logger_for: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Sync, streaming, async, a fallback and a failure: one event each, exactly as routed."""
    settings = settings_for(kafka_bootstrap, topic, tmp_path / "state")
    logger = logger_for(Publisher(settings))
    correlation = f"req-{uuid.uuid4().hex[:8]}"
    _run_calls(mock.base_url, correlation)
    assert logger.flush(30)
    assert logger.stats["errors"] == 0 and logger.stats["rejected"] == 0

    everything = [json.loads(m.value()) for m in read_topic(kafka_bootstrap, topic)]
    values = [v for v in everything if v["event_type"] == SELECTED]
    outcomes = [v["payload"] for v in everything if v["event_type"] == COMPLETED]
    assert len(values) == 7 == len(outcomes), _criteria(values)
    assert logger.stats["published"] == 14
    # Each call's outcome is keyed like its selection and says what it measured.
    assert Counter(v["correlation_id"] for v in values) == Counter(
        o["correlation_id"] for o in outcomes
    )
    assert sorted(o["status"] for o in outcomes) == ["error"] * 2 + ["ok"] * 5
    for o in outcomes:
        assert o["agent"] == "litellm"
        if o["status"] == "ok" and o["provider_name"] == "openai":
            assert o["cost_source"] == "reported" and o["cost_usd"] > 0
            assert o["input_tokens"] > 0 and o["latency_ms"] >= 0
        elif o["status"] == "ok":  # LiteLLM prices this one at $0 here: unpriced, never free
            assert o["cost_source"] == "unpriced" and o["cost_usd"] is None
            assert o["input_tokens"] > 0
        else:
            assert o["cost_source"] == "unpriced" and o["cost_usd"] is None
            assert o["error"] == "InternalServerError"
    claude_outcomes = [o for o in outcomes if o["provider_name"] == "anthropic"]
    assert [o["cache_read_tokens"] for o in claude_outcomes] == [
        ANTHROPIC_USAGE["cache_read_input_tokens"]] * 2  # fmt: skip
    by_status: dict[str, list[dict[str, Any]]] = {}
    for value in values:
        payload = value["payload"]
        assert payload["selection_criteria"]["source"] == "litellm"
        assert value["source"] == "litellm"
        by_status.setdefault(payload["selection_criteria"]["status"], []).append(payload)
    assert len(by_status["success"]) == 5 and len(by_status["error"]) == 2

    openai_ok = [p for p in by_status["success"] if p["provider_name"] == "openai"]
    assert {p["model_name"] for p in openai_ok} == {"gpt-4o-mini"}
    for p in openai_ok:
        c = p["selection_criteria"]
        assert (c["input_tokens"], c["output_tokens"]) == (
            OPENAI_USAGE["prompt_tokens"], OPENAI_USAGE["completion_tokens"])  # fmt: skip
        assert c["latency_basis"] == "measured" and c["latency_ms"] >= 0
        assert c["cost_usd"] > 0 and c["cost_source"] == "litellm"
    streamed = [p for p in by_status["success"] if p["selection_criteria"]["stream"]]
    assert len(streamed) == 2 and all("ttft_ms" in p["selection_criteria"] for p in streamed)
    claude = [p for p in by_status["success"] if p["provider_name"] == "anthropic"]
    assert len(claude) == 2
    for p in claude:
        assert p["model_name"] == "claude-3-5-haiku-20241022"
        assert p["selection_criteria"]["output_tokens"] == ANTHROPIC_USAGE["output_tokens"]

    # The routed request: its failed first deployment and the fallback that served it share
    # the caller's correlation id (the partition key), so they land in order on one partition.
    routed = [v for v in values if v["correlation_id"] == correlation]
    assert len(routed) == 2
    failed, served = sorted(routed, key=lambda v: v["payload"]["selection_criteria"]["status"])
    fc, sc = failed["payload"]["selection_criteria"], served["payload"]["selection_criteria"]
    assert fc["status"] == "error" and fc["error_class"] == "InternalServerError"
    assert fc["requested_model"] == "primary" and failed["payload"]["model_name"] == "gpt-4o"
    assert sc["requested_model"] == "primary" and sc["model_group"] == "backup"
    assert served["payload"]["model_name"] == "gpt-4o-mini"
    assert sc["fallbacks_attempted"] == 1 and sc["fallback_from"] == ["primary"]
    assert "fell back to gpt-4o-mini" in served["payload"]["selection_reason"]

    # ... and the consumer lands every one of them in PostgreSQL.
    with migrated_schema(database_url, "test_litellm") as schema:
        result = run_cli(
            "consume", "--group-id", f"g-{uuid.uuid4().hex}", "--until-idle", "2",
            "--metrics-port", "off", "--json",
            env=cli_env(schema.dsn, kafka_bootstrap, topic), cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        import psycopg

        with psycopg.connect(schema.dsn) as conn:
            rows = conn.execute(
                "SELECT provider_name, model_name, selection_criteria"
                " FROM provider_selection_events WHERE source = 'litellm'"
            ).fetchall()
            stored_outcomes = conn.execute(
                "SELECT status, cost_source, requested_model, model_name FROM provider_outcomes"
            ).fetchall()
            routing = _routing(
                result_env(schema.dsn, kafka_bootstrap, topic), tmp_path, "postgresql"
            )
    assert routing == EXPECTED_ROUTING
    assert len(stored_outcomes) == 7
    assert ("ok", "reported", "primary", "gpt-4o-mini") in stored_outcomes
    assert len(rows) == 7
    assert sorted((r[0], r[1]) for r in rows) == sorted(
        (v["payload"]["provider_name"], v["payload"]["model_name"]) for v in values
    )
    assert sum(r[2]["fallbacks_attempted"] for r in rows) == 1


#: per provider, for the calls of _run_calls: the router's two (its failed primary, the
#: fallback that served) differ from the model group asked for; one fallback; two failures
EXPECTED_ROUTING = {
    "anthropic": {"calls": 2, "served_differs": 0, "fallbacks": 0, "errors": 0},
    "openai": {"calls": 5, "served_differs": 2, "fallbacks": 1, "errors": 2},
}


def result_env(dsn: str, bootstrap: str, topic: str) -> dict[str, str]:
    return cli_env(dsn, bootstrap, topic)


def _routing(env: dict[str, str], cwd: Path, store: str) -> dict[str, dict[str, int]]:
    """``stats --json``'s routing section, per provider (the counts)."""
    done = run_cli("stats", "--since", "2h", "--store", store, "--json", env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr
    providers = json.loads(done.stdout)["routing"]["providers"]
    keys = ("calls", "served_differs", "fallbacks", "errors")
    return {p["provider_name"]: {k: p[k] for k in keys} for p in providers}


def test_routing_answers_are_the_same_on_the_embedded_store(
    mock: MockServer, logger_for: Any, tmp_path: Path
) -> None:
    """With no Kafka (the embedded store) the same calls give the same routing answers."""
    state = tmp_path / "state"
    settings = settings_for("127.0.0.1:1", "litellm.test", state, PROVIDER_EVENTS_SINK="local")
    logger = logger_for(Publisher(settings))
    _run_calls(mock.base_url, f"req-{uuid.uuid4().hex[:8]}")
    assert logger.flush(30) and logger.stats["published"] == 14, logger.stats
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(PROVIDER_EVENTS_STATE_DIR=str(state), HOME=str(tmp_path))
    assert _routing(env, tmp_path, "local") == EXPECTED_ROUTING
    report = tmp_path / "r.html"
    done = run_cli("report", "--since", "2h", "--store", "local", "--html", str(report), env=env,
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    html = report.read_text()
    assert "Routing (LiteLLM)" in html and "20% by a fallback" in html


def test_a_dead_broker_never_blocks_or_fails_the_caller(
    mock: MockServer, logger_for: Any, tmp_path: Path
) -> None:
    """With Kafka unreachable every call still answers; every event waits in the outbox."""
    state = tmp_path / "state"
    settings = settings_for("127.0.0.1:1", "litellm.test", state,
                            PROVIDER_EVENTS_DELIVERY_TIMEOUT="1")  # fmt: skip
    logger = logger_for(Publisher(settings))
    for _ in range(5):
        answer = litellm.completion(model="openai/gpt-4o-mini", api_base=f"{mock.base_url}/v1",
                                    api_key="k", messages=MESSAGES)  # fmt: skip
        assert answer.choices[0].message.content == "Hello"
    assert logger.flush(30)
    assert logger.stats["not_delivered"] == 10 and logger.stats["errors"] == 0, logger.stats
    assert Outbox(settings.resolved_outbox_path).pending() == 10  # 5 selections, 5 outcomes


def test_a_full_queue_spools_instead_of_dropping(
    mock: MockServer, logger_for: Any, tmp_path: Path
) -> None:
    """Past ``max_queue`` the callback commits the call to the outbox itself: none is lost."""
    state = tmp_path / "state"
    settings = settings_for("127.0.0.1:1", "litellm.test", state,
                            PROVIDER_EVENTS_DELIVERY_TIMEOUT="1")  # fmt: skip
    logger = logger_for(Publisher(settings), max_queue=1)
    for _ in range(4):
        litellm.completion(model="openai/gpt-4o-mini", api_base=f"{mock.base_url}/v1",
                           api_key="k", messages=MESSAGES)  # fmt: skip
    assert logger.flush(30)
    assert logger.stats["calls"] == 4 and logger.stats["queue_full"] >= 1, logger.stats
    assert Outbox(settings.resolved_outbox_path).pending() == 8


def test_importing_provider_events_never_imports_litellm() -> None:
    """The package, its CLI and the publisher stay free of litellm (and its import time)."""
    code = (
        "import sys, provider_events, provider_events.cli, provider_events.integrations;"
        "from provider_events import Publisher;"
        "assert 'litellm' not in sys.modules, 'litellm imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_example_runs_and_records_its_fallback(
    kafka_env: dict[str, str], topic: str, kafka_bootstrap: str, mock: MockServer, tmp_path: Path
) -> None:
    """``examples/litellm_router.py`` as documented: the fallback and its failed attempt land."""
    env = dict(kafka_env, HOME=str(tmp_path))
    example = Path(__file__).resolve().parents[2] / "examples" / "litellm_router.py"
    result = subprocess.run(
        [sys.executable, str(example), mock.base_url], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "Hello"
    assert "recorded: 4 delivered, 0 in the outbox" in result.stdout  # 2 selections, 2 outcomes
    values = [json.loads(m.value()) for m in read_topic(kafka_bootstrap, topic)]
    values = [v for v in values if v["event_type"] == SELECTED]
    assert {v["correlation_id"] for v in values} == {"example-request-1"}
    assert sorted(v["payload"]["selection_criteria"]["status"] for v in values) == [
        "error", "success"]  # fmt: skip
