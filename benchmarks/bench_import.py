"""Transcript import: `import claude-code` vs a plain json.loads loop and vs ccusage@18.

A generated Claude Code projects folder (the issue's 1,000,000 lines at --scale 1; realistic
shapes: user prompts, tool results of ~1 KiB, assistant responses written as 1-3 content-block
lines repeating the usage, sub-agent files replaying some requests) is read three ways:

* ours, parsing only: reading, de-duplication (SQLite state), pricing and building validated
  outcome payloads, with the publish step replaced by a no-op sink;
* ours, whole: the same plus publishing into the embedded store (the local sink);
* peers: ``json.loads`` of every line (target: ours >= 0.5x its throughput), and
  ``ccusage daily --json --offline`` (ccusage@18 from npm, in .dev/npm) on the same folder,
  whose token totals must equal ours.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from ._harness import Comparison, Context, env_with, peak_rss_mib

ROOT = Path(__file__).resolve().parent.parent
CCUSAGE = ROOT / ".dev" / "npm" / "node_modules" / ".bin" / "ccusage"
MODELS = ("claude-sonnet-4-20250514", "claude-opus-4-1-20250805", "claude-3-5-haiku-20241022")


def generate(root: Path, lines: int, seed: int = 1) -> int:
    """Write about ``lines`` transcript lines under ``root/projects``; returns the count."""
    rng = random.Random(seed)
    written = 0
    session_n = 0
    filler = "x" * 1000
    while written < lines:
        session_n += 1
        sid = f"{session_n:08d}-0000-4000-8000-000000000000"
        project = root / "projects" / f"-work-p{session_n % 20}"
        project.mkdir(parents=True, exist_ok=True)
        cwd = f"/work/p{session_n % 20}"
        out: list[str] = []
        replay: list[str] = []
        for turn in range(rng.randint(20, 80)):
            ts = (
                f"2025-10-{1 + session_n % 28:02d}T{turn % 24:02d}:{rng.randint(0, 59):02d}:00.000Z"
            )
            out.append(
                json.dumps(
                    {
                        "parentUuid": None,
                        "isSidechain": False,
                        "userType": "external",
                        "cwd": cwd,
                        "sessionId": sid,
                        "version": "2.0.14",
                        "type": "user",
                        "message": {
                            "role": "user",
                            "content": [
                                {"type": "tool_result", "tool_use_id": "t", "content": filler}
                            ],
                        },
                        "uuid": f"u{turn}",
                        "timestamp": ts,
                    }
                )
            )
            w1 = rng.choice((0, 0, 0, rng.randint(0, 5000)))
            w5 = rng.randint(0, 20000)
            usage = {
                "input_tokens": rng.randint(1, 50),
                "cache_creation_input_tokens": w5 + w1,
                "cache_read_input_tokens": rng.randint(0, 150000),
                "output_tokens": rng.randint(1, 4000),
                "cache_creation": {
                    "ephemeral_5m_input_tokens": w5,
                    "ephemeral_1h_input_tokens": w1,
                },
                "service_tier": "standard",
            }
            mid = f"msg_{session_n}_{turn}"
            model = MODELS[rng.randrange(3)]
            for block in range(rng.randint(1, 3)):
                line = json.dumps(
                    {
                        "parentUuid": f"u{turn}",
                        "isSidechain": False,
                        "userType": "external",
                        "cwd": cwd,
                        "sessionId": sid,
                        "version": "2.0.14",
                        "message": {
                            "id": mid,
                            "type": "message",
                            "role": "assistant",
                            "model": model,
                            "content": [{"type": "text", "text": "ok " * 30}]
                            if block == 0
                            else [
                                {
                                    "type": "tool_use",
                                    "id": f"t{block}",
                                    "name": "Bash",
                                    "input": {"command": "ls"},
                                }
                            ],
                            "stop_reason": "tool_use",
                            "stop_sequence": None,
                            "usage": usage,
                        },
                        "requestId": f"req_{session_n}_{turn}",
                        "type": "assistant",
                        "uuid": f"a{turn}{block}",
                        "timestamp": ts,
                    }
                )
                out.append(line)
                if block == 0 and rng.random() < 0.1:
                    replay.append(line.replace('"isSidechain":false', '"isSidechain":true'))
        (project / f"{sid}.jsonl").write_text("\n".join(out) + "\n")
        written += len(out)
        if replay:
            sub = project / sid / "subagents"
            sub.mkdir(parents=True)
            (sub / "agent-1.jsonl").write_text("\n".join(replay) + "\n")
            written += len(replay)
    return written


def _json_loop(files: list[Path]) -> int:
    n = 0
    for f in files:
        with f.open("rb") as handle:
            for line in handle:
                if line.strip():
                    json.loads(line)
                    n += 1
    return n


def run(ctx: Context, console: Console) -> list[Comparison]:
    from provider_events.settings import load_settings
    from provider_events.usage._transcripts import find_transcripts, import_transcripts

    if not CCUSAGE.exists():
        raise SystemExit(f"{CCUSAGE} not found: dev/install-ccusage.sh (make bench runs it)")
    target = ctx.n(1_000_000, 2000)
    tmp = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        started = time.perf_counter()
        lines = generate(tmp, target)
        files = find_transcripts([tmp / "projects"])
        size = sum(f.stat().st_size for f in files)
        console.print(
            f"generated {lines:,} lines in {len(files)} files ({size / 2**20:.0f} MiB) "
            f"in {time.perf_counter() - started:.1f}s"
        )

        def settings(name: str) -> Any:
            env = {"PROVIDER_EVENTS_SINK": "local", "PROVIDER_EVENTS_STATE_DIR": str(tmp / name)}
            return load_settings(environ=env, dotenv=Path("/nonexistent/.env"))

        from datetime import UTC, datetime

        from provider_events.usage._prices import PriceTable

        t0 = time.perf_counter()
        table = PriceTable()  # loading genai-prices (pydantic) is a one-off ~1 s: shown apart
        table.rates("claude", MODELS[0], datetime.now(UTC))
        t_table = time.perf_counter() - t0
        # The shared machine's load drifts: alternate the two, three times each, take medians.
        json_runs, parse_runs = [], []
        for run_n in range(3):
            t0 = time.perf_counter()
            _json_loop(files)
            json_runs.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            parsed = import_transcripts(
                settings(f"parse{run_n}"), [tmp / "projects"], sink=lambda p: None, prices=table
            )
            parse_runs.append(time.perf_counter() - t0)
        t_json, t_parse = statistics.median(json_runs), statistics.median(parse_runs)
        rss = peak_rss_mib()
        t0 = time.perf_counter()
        whole = import_transcripts(settings("whole"), [tmp / "projects"], prices=table)
        t_whole = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = import_transcripts(settings("whole"), [tmp / "projects"], prices=table)
        t_again = time.perf_counter() - t0
        assert again.published == 0 and whole.published == parsed.published
        rows = [
            Comparison(
                "import: lines/s (parse, dedup, price)",
                lines / t_parse,
                lines / t_json,
                "lines/s",
                "json.loads loop",
                target=0.5,
                notes={
                    "outcomes": parsed.published,
                    "duplicates": parsed.duplicates,
                    "peak_rss_mib": round(rss, 1),
                    "seconds": round(t_parse, 2),
                    "price_table_load_s": round(t_table, 2),
                    "mib": round(size / 2**20),
                },
            ),
            Comparison(
                "import: lines/s (+ local store)",
                lines / t_whole,
                lines / t_json,
                "lines/s",
                "json.loads loop",
                notes={"seconds": round(t_whole, 2), "rerun_seconds": round(t_again, 3)},
            ),
        ]
        env = env_with(CLAUDE_CONFIG_DIR=str(tmp), HOME=str(tmp), XDG_CONFIG_HOME=str(tmp / "xdg"))
        t0 = time.perf_counter()
        done = subprocess.run(
            [str(CCUSAGE), "daily", "--json", "--offline"],
            env=env,
            capture_output=True,
            timeout=600,
        )
        t_cc = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"ccusage failed: {done.stderr.decode(errors='replace')[-500:]}")
        doc = json.loads(done.stdout)["totals"]
        ours = (
            parsed.input_tokens,
            parsed.output_tokens,
            parsed.cache_read_tokens,
            parsed.cache_write_tokens,
        )
        theirs = (
            doc["inputTokens"],
            doc["outputTokens"],
            doc["cacheReadTokens"],
            doc["cacheCreationTokens"],
        )
        rows.append(
            Comparison(
                "import: lines/s vs ccusage daily",
                lines / t_parse,
                lines / t_cc,
                "lines/s",
                "ccusage@18 --offline",
                notes={
                    "tokens_agree": ours == theirs,
                    "ours_cost": round(parsed.cost_usd, 4),
                    "ccusage_cost": round(doc["totalCost"], 4),
                    "ccusage_seconds": round(t_cc, 2),
                },
            )
        )
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os.sync()
