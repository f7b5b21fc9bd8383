"""A realistic synthetic week of provider selections, reproducible from a seed.

Used by ``provider-events demo``, the analytics tests and the benchmark. The guide's seven
providers with the models ``switch`` knows, list-price-like costs per token, log-normal
latencies, per-model quality scores, token counts, free-text reasons (some with characters that
need escaping), several tenants in different time zones (a working-hours rhythm, quieter
weekends), a latency incident on one provider and a rarely used model with too little data. Also
Claude Code transcripts for some of the week's sessions (:func:`synthetic_transcripts`), so
the demo shows measured usage beside the declared figures.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = [
    "MODELS",
    "TENANTS",
    "ModelSpec",
    "Selection",
    "synthetic_selections",
    "synthetic_transcripts",
]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """How one provider/model behaves in the synthetic data."""

    provider: str
    model: str
    #: Relative popularity within its provider.
    weight: float
    #: Blended USD per token (input and output at a typical 4:1 mix).
    cost_per_token: float
    latency_median_ms: float
    latency_sigma: float
    quality: float
    quality_sd: float
    reasons: tuple[str, ...]


_FALLBACK = "Fallback after rate limit (429) from the primary provider"
# fmt: off
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("claude", "claude-sonnet-4-5-20250929", 6.0, 0.0000060, 1150, 0.35, 0.95, 0.02,
              ("High quality for complex refactoring", "Long-context code review",
               "User requested switch to Claude")),
    ModelSpec("claude", "claude-haiku-4-5-20251001", 3.0, 0.0000018, 480, 0.30, 0.87, 0.03,
              ("Fast answers for small edits", "Cost-effective for high-volume pattern matching")),
    ModelSpec("claude", "claude-opus-4-1-20250805", 1.0, 0.0000300, 2300, 0.40, 0.97, 0.015,
              ("Hardest tasks: architecture and planning", "High quality")),
    ModelSpec("openrouter", "anthropic/claude-sonnet-4.5", 4.0, 0.0000066, 1300, 0.38, 0.95, 0.02,
              ("Single bill across vendors", _FALLBACK, "Budget rule: cost < $0.01/1k tokens & p95 < 2s")),
    ModelSpec("openrouter", "anthropic/claude-haiku-4.5", 1.5, 0.0000020, 520, 0.32, 0.87, 0.03,
              ("Single bill across vendors", _FALLBACK)),
    ModelSpec("gemini-pro", "gemini-1.5-pro-002", 3.0, 0.0000025, 950, 0.35, 0.90, 0.025,
              ("Large context window for repository-wide questions", "User requested switch to Gemini Pro")),
    ModelSpec("gemini-flash", "gemini-1.5-flash-002", 5.0, 0.0000010, 330, 0.30, 0.85, 0.03,
              ("Cost-effective for high-volume pattern matching", "User requested switch to Gemini Flash")),
    ModelSpec("gemini-2.5-flash", "gemini-2.5-flash", 5.0, 0.0000007, 380, 0.30, 0.88, 0.03,
              ("Cheap and good enough for test generation", "Cost-effective for high-volume pattern matching")),
    ModelSpec("zai", "glm-4.6", 3.0, 0.0000011, 720, 0.35, 0.87, 0.03,
              ("Strong coding model at a fraction of the price", "User requested switch to Z.ai")),
    ModelSpec("zai", "glm-4.5-air", 1.5, 0.0000004, 400, 0.30, 0.80, 0.035,
              ("Cheapest option for bulk summarisation",)),
    ModelSpec("together", "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8", 2.0, 0.0000020, 640, 0.35, 0.88, 0.03,
              ("Open-weights coder for <internal> repositories", "Data residency: no Anthropic/Google")),
    ModelSpec("together", "deepseek-ai/DeepSeek-V3.1", 2.0, 0.0000012, 980, 0.40, 0.90, 0.025,
              ("Open-weights model with good reasoning", "Data residency: no Anthropic/Google")),
    ModelSpec("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo", 1.0, 0.00000088, 420, 0.30, 0.80, 0.035,
              ("Cheap classification and routing",)),
    ModelSpec("together", "moonshotai/Kimi-K2-Instruct", 0.012, 0.0000015, 900, 0.40, 0.89, 0.03,
              ("Experiment: trying a new model",)),
)

#: Models weighted below this are experiments: a handful of selections per window, never
#: enough for a recommendation (the demo shows "too little data" for them).
RARE_WEIGHT = 0.05

#: tenant -> (share of traffic, UTC offset in hours, preferred providers with weights)
TENANTS: dict[str, tuple[float, int, dict[str, float]]] = {
    "acme-us": (0.38, -5, {"claude": 5, "openrouter": 3, "gemini-2.5-flash": 2, "gemini-flash": 2, "gemini-pro": 1, "together": 1, "zai": 0.5}),
    "acme-eu": (0.27, 1, {"claude": 3, "gemini-pro": 2, "gemini-flash": 3, "gemini-2.5-flash": 2, "openrouter": 1, "zai": 1, "together": 1}),
    "globex": (0.22, 0, {"openrouter": 4, "claude": 2, "together": 2, "zai": 2, "gemini-2.5-flash": 1, "gemini-flash": 1, "gemini-pro": 1}),
    "initech": (0.13, 8, {"zai": 4, "together": 3, "gemini-flash": 2, "gemini-2.5-flash": 2, "claude": 1, "openrouter": 1, "gemini-pro": 0.5}),
}
# fmt: on


@dataclass(frozen=True, slots=True)
class Selection:
    """One synthetic selection: the keywords of ``Publisher.build`` plus ``selected_at``."""

    provider_name: str
    model_name: str
    correlation_id: str
    selection_reason: str
    selection_criteria: dict[str, Any]
    tenant_id: str
    selected_at: datetime

    def fields(self) -> dict[str, Any]:
        return {
            "provider_name": self.provider_name,
            "model_name": self.model_name,
            "correlation_id": self.correlation_id,
            "selection_reason": self.selection_reason,
            "selection_criteria": self.selection_criteria,
            "tenant_id": self.tenant_id,
            "selected_at": self.selected_at,
        }


def _activity(local_hour: float, weekday: int) -> float:
    """Relative activity at a local time: a working-day bump, a quiet night, calm weekends."""
    day = math.exp(-(((local_hour - 14.0) / 3.6) ** 2))
    evening = 0.25 * math.exp(-(((local_hour - 21.0) / 2.0) ** 2))
    level = 0.06 + day + evening
    return level * (0.35 if weekday >= 5 else 1.0)


def _uuid7(rng: random.Random, moment: datetime) -> str:
    ms = int(moment.timestamp() * 1000)
    rand = rng.getrandbits(74)
    value = (
        (ms & ((1 << 48) - 1)) << 80
        | 0x7 << 76
        | (rand >> 62) << 64
        | 0b10 << 62
        | (rand & ((1 << 62) - 1))
    )
    return str(uuid.UUID(int=value))


def _incident(spec: ModelSpec, offset_days: float) -> float:
    """zai's latency doubles for most of day 4 of the week (an incident worth seeing)."""
    return 1.9 if spec.provider == "zai" and 3.3 <= offset_days < 3.9 else 1.0


def synthetic_selections(
    total: int,
    *,
    end: datetime,
    days: float = 7.0,
    seed: int = 7,
    tokens_share: float = 0.97,
) -> Iterator[Selection]:
    """About ``total`` selections in the ``days`` before ``end``, in time order, reproducibly.

    ``tokens_share`` of them carry token counts (the rest are, say, manual switches).
    """
    rng = random.Random(seed)
    start = end - timedelta(days=days)
    hour0 = start.replace(minute=0, second=0, microsecond=0)
    hours = []
    h = hour0
    while h < end:
        weights = {}
        for tenant, (share, tz, _) in TENANTS.items():
            local = h + timedelta(hours=tz)
            weights[tenant] = share * _activity(local.hour + 0.5, local.weekday())
        lo, hi = max(h, start), min(h + timedelta(hours=1), end)
        fraction = (hi - lo) / timedelta(hours=1)
        hours.append((lo, hi, weights, fraction))
        h += timedelta(hours=1)
    scale = total / sum(sum(w.values()) * f for _, _, w, f in hours)
    by_provider: dict[str, list[ModelSpec]] = {}
    for spec in MODELS:
        if spec.weight >= RARE_WEIGHT:
            by_provider.setdefault(spec.provider, []).append(spec)
    # The experiment (a rarely used model) gets a few selections spread over the window, from
    # its own random stream: drawn like the others it had none in about a third of the weeks
    # of 3,000 events, and the demo could not show "too little data".
    rare = [spec for spec in MODELS if spec.weight < RARE_WEIGHT]
    trials = min(20, max(3, round(total * 0.0005))) if rare else 0
    trial_hours = {len(hours) * (2 * i + 1) // (2 * trials) for i in range(trials)}
    trial_rng = random.Random(seed + 1)
    for index, (lo, hi, weights, fraction) in enumerate(hours):
        for tenant, weight in weights.items():
            expected = weight * fraction * scale
            n = max(0, round(expected + rng.gauss(0.0, math.sqrt(expected)))) if expected else 0
            prefs = TENANTS[tenant][2]
            provider_names = list(prefs)
            stamps = sorted(lo + (hi - lo) * rng.random() for _ in range(n))
            for moment in stamps:
                provider = rng.choices(provider_names, weights=[prefs[p] for p in provider_names])[
                    0
                ]
                specs = by_provider[provider]
                spec = rng.choices(specs, weights=[s.weight for s in specs])[0]
                yield _one(
                    rng, spec, tenant, moment, (moment - start) / timedelta(days=1), tokens_share
                )
        if index in trial_hours:
            spec = rare[index % len(rare)]
            tenant = max(weights, key=lambda t: (weights[t], t))
            moment = lo + (hi - lo) * trial_rng.random()
            yield _one(
                trial_rng, spec, tenant, moment, (moment - start) / timedelta(days=1), tokens_share
            )


def _one(
    rng: random.Random,
    spec: ModelSpec,
    tenant: str,
    moment: datetime,
    offset_days: float,
    tokens_share: float,
) -> Selection:
    latency = (
        spec.latency_median_ms
        * _incident(spec, offset_days)
        * math.exp(rng.gauss(0.0, spec.latency_sigma))
    )
    quality = min(1.0, max(0.0, rng.gauss(spec.quality, spec.quality_sd)))
    criteria: dict[str, Any] = {
        "cost_per_token": spec.cost_per_token,
        "latency_ms": round(latency),
        "quality_score": round(quality, 3),
    }
    if rng.random() < tokens_share:
        input_tokens = round(2400 * math.exp(rng.gauss(0.0, 0.8)))
        criteria["input_tokens"] = input_tokens
        criteria["output_tokens"] = round(input_tokens * 0.22 * math.exp(rng.gauss(0.0, 0.4)))
    reason = spec.reasons[min(len(spec.reasons) - 1, int(rng.random() ** 1.6 * len(spec.reasons)))]
    return Selection(
        provider_name=spec.provider,
        model_name=spec.model,
        correlation_id=_uuid7(rng, moment),
        selection_reason=reason,
        selection_criteria=criteria,
        tenant_id=tenant,
        selected_at=moment.astimezone(UTC),
    )


def synthetic_transcripts(
    selections: Sequence[Selection], root: Path, *, sessions: int = 300, seed: int = 7
) -> dict[str, str]:
    """Claude Code transcripts for up to ``sessions`` of the selections' sessions, in Claude
    Code's line format (each response written as 1-3 content-block lines, some sub-agent
    replays), under ``root/projects``; returns ``{session id: provider}``.

    The served model is the selection's; token counts are typical of coding sessions (small
    uncached input, large cache reads, some cache writes of 5 minutes and 1 hour).
    """
    import json

    rng = random.Random(seed)
    chosen = selections[:: max(1, len(selections) // sessions)][:sessions]
    providers: dict[str, str] = {}
    for n, s in enumerate(chosen):
        sid = s.correlation_id
        providers[sid] = s.provider_name
        folder = root / "projects" / f"-work-{s.tenant_id}"
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for turn in range(rng.randint(1, 4)):
            at = s.selected_at + timedelta(seconds=20 * turn + rng.randint(1, 15))
            w1 = rng.choice((0, 0, rng.randint(0, 8000)))
            usage = {
                "input_tokens": rng.randint(3, 400),
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": rng.randint(5_000, 90_000),
                "output_tokens": rng.randint(50, 3_000),
                "cache_creation": {
                    "ephemeral_5m_input_tokens": rng.randint(0, 12_000),
                    "ephemeral_1h_input_tokens": w1,
                },
            }
            cc = usage["cache_creation"]
            usage["cache_creation_input_tokens"] = (
                cc["ephemeral_5m_input_tokens"] + cc["ephemeral_1h_input_tokens"]  # type: ignore[index]
            )
            for block in range(rng.randint(1, 3)):
                lines.append(
                    {
                        "parentUuid": None,
                        "isSidechain": False,
                        "userType": "external",
                        "cwd": f"/work/{s.tenant_id}",
                        "sessionId": sid,
                        "version": "2.0.14",
                        "type": "assistant",
                        "message": {
                            "id": f"msg_demo_{n}_{turn}",
                            "type": "message",
                            "role": "assistant",
                            "model": s.model_name,
                            "content": [{"type": "text" if block == 0 else "tool_use"}],
                            "stop_reason": "end_turn" if block == 0 else "tool_use",
                            "usage": usage,
                        },
                        "requestId": f"req_demo_{n}_{turn}",
                        "uuid": f"demo-{n}-{turn}-{block}",
                        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                    }
                )
        with (folder / f"{sid}.jsonl").open("w", encoding="utf-8") as out:
            for line in lines:
                out.write(json.dumps(line) + "\n")
    return providers
