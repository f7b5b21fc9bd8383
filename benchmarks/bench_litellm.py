"""LiteLLM callback: the latency it adds to the caller (2,000 calls against a local mock API).

The same calls run with and without :class:`ProviderEventsLogger` installed, alternating in
blocks within one run, against a mock OpenAI-compatible server in its own process (so it does
not share our interpreter's lock). The callback publishes to the real broker. Target: the
caller's added latency <= 1 ms at the median (the ratio column is with / without).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from ._harness import Comparison, Context, percentile

ROOT = Path(__file__).resolve().parents[1]


def run(ctx: Context, console: Console) -> list[Comparison]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm
    except ImportError:
        console.print("litellm is not installed (pip install '.[litellm]'): skipped")
        return []
    from provider_events import Publisher, load_settings
    from provider_events.integrations.litellm import ProviderEventsLogger
    from tests.support import create_topic

    calls = ctx.n(2000, minimum=200)
    block = 50
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.mock_llm"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        base = server.stdout.readline().strip()
        topic = create_topic(ctx.bootstrap, f"bench.litellm.{int(time.time())}")
        state = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-litellm-{os.getpid()}"
        settings = load_settings(
            environ={
                "KAFKA_BOOTSTRAP_SERVERS": ctx.bootstrap,
                "PROVIDER_EVENTS_TOPIC": topic,
                "PROVIDER_EVENTS_STATE_DIR": str(state),
            },
            dotenv=state / "none.env",
        )
        logger = ProviderEventsLogger(Publisher(settings))
        messages = [{"role": "user", "content": "hi"}]

        def call() -> float:
            started = time.perf_counter()
            litellm.completion(
                model="openai/gpt-4o-mini", api_base=f"{base}/v1", api_key="k", messages=messages
            )
            return time.perf_counter() - started

        for _ in range(20):  # warm up both paths (imports, connection pool, producer)
            call()
        with_cb: list[float] = []
        without: list[float] = []
        rounds = max(1, calls // (2 * block))
        for i in range(rounds):
            for installed in (i % 2 == 0, i % 2 == 1):
                litellm.logging_callback_manager._reset_all_callbacks()
                if installed:
                    litellm.callbacks = [logger]
                samples = [call() for _ in range(block)]
                (with_cb if installed else without).extend(samples)
        litellm.logging_callback_manager._reset_all_callbacks()
        flushed = logger.flush(60)
        logger.close()
        body = _callback_body_us(litellm, base, messages)
        ours, peer = percentile(with_cb, 0.5) * 1000, percentile(without, 0.5) * 1000
        added = ours - peer
        return [
            Comparison(
                name=f"litellm.completion p50, {len(with_cb) + len(without)} calls",
                ours=ours,
                peer=peer,
                unit="ms",
                peer_name="same calls without the callback",
                better="lower",
                notes={
                    "added latency p50": f"{added:.3f} ms (target <= 1 ms: "
                    f"{'met' if added <= 1.0 else 'NOT met'})",
                    "p95 with / without": f"{percentile(with_cb, 0.95) * 1000:.2f} / "
                    f"{percentile(without, 0.95) * 1000:.2f} ms",
                    "callback body (copy + enqueue) p50": f"{body:.1f} us",
                    "events published": f"{logger.stats['published']} (flushed: {flushed})",
                },
            )
        ]
    finally:
        server.terminate()
        server.wait(10)


def _callback_body_us(litellm: object, base: str, messages: list[dict[str, str]]) -> float:
    """Median time of the callback's own work on the caller's side, for one real call's data."""
    from litellm.integrations.custom_logger import CustomLogger

    from provider_events.integrations.litellm import record_from_litellm

    captured: list[tuple[dict[str, object], object]] = []

    class Capture(CustomLogger):  # type: ignore[misc]
        def log_success_event(self, kwargs, response_obj, start_time, end_time):  # type: ignore[no-untyped-def]
            captured.append((kwargs, response_obj))

    lib = litellm  # the module, typed loosely here
    lib.logging_callback_manager._reset_all_callbacks()  # type: ignore[attr-defined]
    lib.callbacks = [Capture()]  # type: ignore[attr-defined]
    lib.completion(
        model="openai/gpt-4o-mini", api_base=f"{base}/v1", api_key="k", messages=messages
    )  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while not captured and time.monotonic() < deadline:
        time.sleep(0.01)
    lib.logging_callback_manager._reset_all_callbacks()  # type: ignore[attr-defined]
    if not captured:
        return float("nan")
    kwargs, response = captured[0]
    samples = []
    for _ in range(5000):
        started = time.perf_counter()
        record_from_litellm(kwargs, response, None, None, failed=False)
        samples.append(time.perf_counter() - started)
    return percentile(samples, 0.5) * 1e6
