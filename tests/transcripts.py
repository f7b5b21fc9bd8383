"""Claude Code transcript fixtures, written in Claude Code's own line format.

The shapes follow real transcripts (and ccusage's ``usageDataSchema``): one JSON object per
line; an API response is ``type: "assistant"`` with ``message.{id, model, usage, stop_reason}``,
``requestId``, ``timestamp``, ``sessionId``, ``cwd``, ``isSidechain``; Claude Code writes one
such line per content block, repeating the usage; sub-agent files live in
``<session>/subagents/agent-<id>.jsonl`` and may repeat a request of the parent file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def user_line(session: str, cwd: str, ts: str, text: str = "hello") -> dict[str, Any]:
    return {
        "parentUuid": None,
        "isSidechain": False,
        "userType": "external",
        "cwd": cwd,
        "sessionId": session,
        "version": "2.0.14",
        "gitBranch": "main",
        "type": "user",
        "message": {"role": "user", "content": text},
        "uuid": f"u-{ts}",
        "timestamp": ts,
    }


def assistant_line(
    session: str,
    cwd: str,
    ts: str,
    msg_id: str,
    req_id: str,
    model: str,
    usage: dict[str, Any],
    *,
    block: dict[str, Any] | None = None,
    sidechain: bool = False,
    stop_reason: str | None = "end_turn",
    cost_usd: float | None = None,
    agent_id: str | None = None,
) -> dict[str, Any]:
    line: dict[str, Any] = {
        "parentUuid": f"u-{ts}",
        "isSidechain": sidechain,
        "userType": "external",
        "cwd": cwd,
        "sessionId": session,
        "version": "2.0.14",
        "gitBranch": "main",
        "message": {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [block or {"type": "text", "text": "Done."}],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        },
        "requestId": req_id,
        "type": "assistant",
        "uuid": f"a-{msg_id}-{ts}",
        "timestamp": ts,
    }
    if agent_id:
        line["agentId"] = agent_id
    if cost_usd is not None:
        line["costUSD"] = cost_usd
    return line


def usage(
    inp: int, out: int, read: int = 0, w5m: int = 0, w1h: int = 0, *, breakdown: bool = True
) -> dict[str, Any]:
    u: dict[str, Any] = {
        "input_tokens": inp,
        "cache_creation_input_tokens": w5m + w1h,
        "cache_read_input_tokens": read,
        "output_tokens": out,
        "service_tier": "standard",
    }
    if breakdown:
        u["cache_creation"] = {
            "ephemeral_5m_input_tokens": w5m,
            "ephemeral_1h_input_tokens": w1h,
        }
    return u


def synthetic_line(session: str, cwd: str, ts: str) -> dict[str, Any]:
    """What Claude Code writes for a message it made up itself (no API call)."""
    return assistant_line(
        session, cwd, ts, "synthetic-1", "", "<synthetic>", usage(0, 0), stop_reason="stop_sequence"
    )


def api_error_line(session: str, cwd: str, ts: str) -> dict[str, Any]:
    line = assistant_line(
        session,
        cwd,
        ts,
        "err-1",
        "req-err",
        "<synthetic>",
        usage(0, 0),
        stop_reason="stop_sequence",
    )
    line["isApiErrorMessage"] = True
    line["message"]["content"] = [{"type": "text", "text": "API Error: 529 Overloaded"}]
    return line


def write_lines(path: Path, lines: list[dict[str, Any]], tail: bytes = b"") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        for line in lines:
            f.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        f.write(tail)


@dataclass(frozen=True)
class Expected:
    outcomes: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float


SONNET = "claude-sonnet-4-20250514"
GLM = "glm-4.6"


def standard_folder(root: Path) -> Expected:
    """A projects folder with every case; returns the hand-computed figures.

    Session s1 (project /work/app, Sonnet 4: $3 in, $15 out, $0.30 cache read, $3.75 5-minute
    write, $6 1-hour write per million tokens):
      m1/r1: 100 in, 200 out, 1000 read, 2000 5m-write -> written as 2 lines (text + tool_use)
             = 100*3 + 200*15 + 1000*0.3 + 2000*3.75 = 300 + 3000 + 300 + 7500 = 11100 / 1e6
      m2/r2: 10 in, 50 out, 5000 read, 0, 1000 1h-write
             = 30 + 750 + 1500 + 6000 = 8280 / 1e6
      a synthetic line, an API-error line, a user line, a half-written last line.
    Sub-agent file s1/subagents/agent-a1.jsonl (sidechain):
      m2/r2 again (a replay of the parent's request: not counted again)
      m3/r3: 1000 in, 100 out, no breakdown, 400 cache creation (5m) = 3000 + 1500 + 1500 = 6000
    Session s2 (project /work/lib): m4/r4 with costUSD 0.5 reported (kept as reported):
      7 in, 3 out.
    Session s3: GLM-4.6 (provider unknown to the price of the user: priced by genai-prices)
      is checked separately; here a model nobody prices: m5/r5 "mystery-model-1" 11 in, 13 out
      -> unpriced (cost None, never 0).
    """
    p1 = root / "-work-app"
    s1 = p1 / "s1.jsonl"
    ts = "2025-10-01T10:00:00.000Z"
    u1 = usage(100, 200, 1000, 2000, 0)
    write_lines(
        s1,
        [
            user_line("s1", "/work/app", ts),
            assistant_line("s1", "/work/app", "2025-10-01T10:00:01.000Z", "m1", "r1", SONNET, u1),
            assistant_line(
                "s1",
                "/work/app",
                "2025-10-01T10:00:02.000Z",
                "m1",
                "r1",
                SONNET,
                u1,
                block={"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}},
                stop_reason="tool_use",
            ),
            assistant_line(
                "s1",
                "/work/app",
                "2025-10-01T11:30:00.000Z",
                "m2",
                "r2",
                SONNET,
                usage(10, 50, 5000, 0, 1000),
            ),
            synthetic_line("s1", "/work/app", "2025-10-01T11:31:00.000Z"),
            api_error_line("s1", "/work/app", "2025-10-01T11:32:00.000Z"),
        ],
        tail=b'{"parentUuid":"x","type":"assistant","message":{"id":"m9","mod',
    )
    sub = p1 / "s1" / "subagents" / "agent-a1.jsonl"
    write_lines(
        sub,
        [
            assistant_line(
                "s1",
                "/work/app",
                "2025-10-01T11:30:00.000Z",
                "m2",
                "r2",
                SONNET,
                usage(10, 50, 5000, 0, 1000),
                sidechain=True,
                agent_id="a1",
            ),
            assistant_line(
                "s1",
                "/work/app",
                "2025-10-01T11:40:00.000Z",
                "m3",
                "r3",
                SONNET,
                usage(1000, 100, 0, 400, 0, breakdown=False),
                sidechain=True,
                agent_id="a1",
            ),
        ],
    )
    p2 = root / "-work-lib"
    write_lines(
        p2 / "s2.jsonl",
        [
            assistant_line(
                "s2",
                "/work/lib",
                "2025-10-02T09:00:00.000Z",
                "m4",
                "r4",
                SONNET,
                usage(7, 3),
                cost_usd=0.5,
            ),
            assistant_line(
                "s2",
                "/work/lib",
                "2025-10-02T09:05:00.000Z",
                "m5",
                "r5",
                "mystery-model-1",
                usage(11, 13),
            ),
        ],
    )
    (p2 / "notes.txt").write_text("not a transcript")
    with (p2 / "s2.jsonl").open("ab") as f:
        f.write(b"this is not json\n")
    return Expected(
        outcomes=5,
        input_tokens=100 + 10 + 1000 + 7 + 11,
        output_tokens=200 + 50 + 100 + 3 + 13,
        cache_read_tokens=1000 + 5000,
        cache_write_tokens=2000 + 1000 + 400,
        cost_usd=(11100 + 8280 + 6000) / 1e6 + 0.5,
    )
