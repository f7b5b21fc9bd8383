"""Caller latency of the guide's CLI: --background and synchronous vs a one-shot `kcat -P`.

Each command is a fresh process producing the same key and value to the same broker, run 30
times alternating, median wall time. The commands run as installed: the venv's
``provider-events`` console script, and the hook command exactly as ``hook install`` registers
it, for two of its calls:

* ``UserPromptSubmit`` for one session every run, so each run after the first publishes the
  previous (interrupted) turn;
* ``Stop`` at the end of a realistic turn: before each timed Stop (untimed) a new turn is
  appended to a transcript in Claude Code's line format (the user's line, then assistant lines
  with usage: two content blocks of one response and a tool call) and its UserPromptSubmit is
  sent. The Stop publishes the turn's selection and starts the detached job that prices and
  queues its outcomes; the bench waits for that job (untimed) before the next command, and
  reports its median wall time as a note.

Targets: --background and the hook within 2x kcat. `python3 -c pass` is measured too: it is
the floor any Python CLI pays before its first line runs. Broker down: the bootstrap points at a
closed port on 127.0.0.1 (connection refused), and background mode must still be as fast.
Peak memory is each CLI process's max RSS (wait4). Import times (``-X importtime``, the sum of
the ``provider_events`` modules and of all modules) are printed for the hook's two calls and for
the full hook they replaced (``_hook.run_claude_hook``, still the path of unusual calls).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from ._harness import Comparison, Context, env_with
from ._kafka import delete_topics, fresh_topic

ROOT = Path(__file__).resolve().parent.parent
RUNS = 30


def _timed(
    args: list[str], env: dict[str, str], stdin: bytes | None = None
) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) and exit code of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        args,
        env=env,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if stdin is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_maxrss / 1024.0, proc.returncode


def _installed_cli() -> str:
    """The console script next to this interpreter (what `pip install` put on PATH)."""
    script = Path(sys.executable).with_name("provider-events")
    if not script.exists():
        raise SystemExit(f"{script} not found: install the package (make install)")
    return str(script)


def _hook_command(env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The command `hook install` registers, as argv and environment (its leading
    ``VAR=value`` words, if any, become environment)."""
    from provider_events.integrations._hook import default_hook_command

    words = shlex.split(default_hook_command())
    env = dict(env)
    while words and "=" in words[0] and not words[0].startswith("/"):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return words, env


SESSION = "bench-latency-stop"


def _assistant(turn: int, block: int, cwd: str, content: dict[str, object]) -> dict[str, object]:
    """One assistant line as Claude Code writes it (one per content block of a response)."""
    stamp = f"2026-01-01T00:{turn // 60 % 60:02d}:{turn % 60:02d}.{block:03d}Z"
    return {
        "parentUuid": f"u-{turn}",
        "isSidechain": False,
        "userType": "external",
        "cwd": cwd,
        "sessionId": SESSION,
        "version": "2.1.197",
        "gitBranch": "main",
        "message": {
            "id": f"msg_bench_{turn}_{block // 2}",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [content],
            "stop_reason": "tool_use" if block < 2 else "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 12 + turn,
                "cache_creation_input_tokens": 2048,
                "cache_read_input_tokens": 18000 + turn,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 2048,
                    "ephemeral_1h_input_tokens": 0,
                },
                "output_tokens": 310,
                "service_tier": "standard",
            },
        },
        "requestId": f"req_bench_{turn}_{block // 2}",
        "type": "assistant",
        "uuid": f"a-{turn}-{block}",
        "timestamp": stamp,
    }


def _append_turn(transcript: Path, turn: int, cwd: str) -> None:
    """A user line and three assistant lines (two responses) of one turn."""
    user = {
        "parentUuid": None,
        "isSidechain": False,
        "userType": "external",
        "cwd": cwd,
        "sessionId": SESSION,
        "version": "2.1.197",
        "gitBranch": "main",
        "type": "user",
        "message": {"role": "user", "content": f"turn {turn}: refactor the relay please"},
        "uuid": f"u-{turn}",
        "timestamp": f"2026-01-01T00:{turn // 60 % 60:02d}:{turn % 60:02d}.000Z",
    }
    lines = [
        user,
        _assistant(turn, 0, cwd, {"type": "text", "text": "Let me look at the relay."}),
        _assistant(
            turn,
            1,
            cwd,
            {"type": "tool_use", "id": f"toolu_{turn}", "name": "Read", "input": {"path": "x"}},
        ),
        _assistant(turn, 2, cwd, {"type": "text", "text": "Done: the relay is refactored."}),
    ]
    with transcript.open("a") as fh:
        for line in lines:
            fh.write(json.dumps(line, separators=(",", ":")) + "\n")


def _outcomes_pending(state: Path) -> bool:
    for path in (state / "claude-sessions").glob("*.json"):
        try:
            if "outcomes_pending" in json.loads(path.read_bytes() or b"{}"):
                return True
        except (OSError, ValueError):
            continue
    return False


def _wait_outcomes(state: Path, limit: float = 60.0) -> float:
    """Seconds until the hook's detached outcomes job cleared its marker."""
    started = time.perf_counter()
    while _outcomes_pending(state) and time.perf_counter() - started < limit:
        time.sleep(0.002)
    return time.perf_counter() - started


def _import_times(
    args: list[str], env: dict[str, str], stdin: bytes, before: Any = None, after: Any = None
) -> tuple[float, float]:
    """Medians of 5 runs of (ms in provider_events modules, ms in all modules), by
    ``-X importtime`` (self times); ``before``/``after`` run around each (untimed)."""
    runs = []
    for _ in range(5):
        if before is not None:
            before()
        runs.append(_import_time(args, env, stdin))
        if after is not None:
            after()
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def _import_time(args: list[str], env: dict[str, str], stdin: bytes) -> tuple[float, float]:
    done = subprocess.run(
        [args[0], "-X", "importtime", *args[1:]],
        input=stdin,
        env=env,
        capture_output=True,
        timeout=60,
    )
    ours = total = 0.0
    for line in done.stderr.decode(errors="replace").splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            own = float(parts[0].split(":")[1]) / 1000.0
        except ValueError:
            continue  # the header line
        total += own
        if parts[2].strip().startswith("provider_events"):
            ours += own
    return ours, total


def run(ctx: Context, console: Console) -> list[Comparison]:
    kcat = shutil.which("kcat")
    if kcat is None:
        raise SystemExit("kcat is required (apt-get install kcat)")
    runs = max(15, int(RUNS * min(1.0, ctx.scale * 10)))  # >= 15 alternating runs
    topic = fresh_topic(ctx.bootstrap, "latency")
    state = tempfile.mkdtemp(prefix="pe-latency-")
    up = env_with(
        KAFKA_BOOTSTRAP_SERVERS=ctx.bootstrap,
        PROVIDER_EVENTS_TOPIC=topic,
        PROVIDER_EVENTS_STATE_DIR=state,
    )
    down = env_with(
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9",
        PROVIDER_EVENTS_TOPIC=topic,
        PROVIDER_EVENTS_STATE_DIR=tempfile.mkdtemp(prefix="pe-latency-down-"),
        PROVIDER_EVENTS_RELAY_AUTOSTART="false",
    )
    flags = [
        "--provider",
        "claude",
        "--model",
        "claude-3-5-sonnet-20241022",
        "--reason",
        "latency",
        "--correlation-id",
        "bench-latency",
        "--quiet",
    ]
    value = b'{"provider_name":"claude","model_name":"claude-3-5-sonnet-20241022"}'
    # As installed: bytecode cached (pip compiles it at install time). PYTHONDONTWRITEBYTECODE
    # would make every run compile each module it imports; the cache goes outside the tree.
    pycache = tempfile.mkdtemp(prefix="pe-latency-pycache-")
    for env in (up, down):
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache
    cli = _installed_cli()
    home = tempfile.mkdtemp(prefix="pe-latency-home-")
    hook_args, hook_env = _hook_command(dict(up, HOME=home))
    prompt = json.dumps(
        {
            "session_id": "bench-latency",
            "hook_event_name": "UserPromptSubmit",
            "prompt": "hello",
            "cwd": home,
            "transcript_path": str(Path(home) / "none.jsonl"),
        }
    ).encode()
    stop_state = Path(tempfile.mkdtemp(prefix="pe-latency-stop-"))
    stop_home = Path(tempfile.mkdtemp(prefix="pe-latency-stop-home-"))
    stop_args, stop_env = _hook_command(
        dict(up, HOME=str(stop_home), PROVIDER_EVENTS_STATE_DIR=str(stop_state))
    )
    transcript = stop_home / "projects" / f"{SESSION}.jsonl"
    transcript.parent.mkdir(parents=True)
    stop_call = {
        "session_id": SESSION,
        "transcript_path": str(transcript),
        "cwd": str(stop_home),
        "permission_mode": "default",
    }
    stop_prompt = json.dumps(
        {**stop_call, "hook_event_name": "UserPromptSubmit", "prompt": "refactor the relay"}
    ).encode()
    stop = json.dumps({**stop_call, "hook_event_name": "Stop", "stop_hook_active": False}).encode()
    turns = [0]
    job_times: list[float] = []

    def before_stop() -> None:  # untimed: the turn Claude Code would write, and its prompt
        turns[0] += 1
        _timed(stop_args, stop_env, stop_prompt)
        _append_turn(transcript, turns[0], str(stop_home))

    def after_stop() -> None:  # untimed: the detached outcomes job ends before the next run
        job_times.append(_wait_outcomes(stop_state))

    commands = {
        "kcat -P (one-shot)": (
            [kcat, "-P", "-b", ctx.bootstrap, "-t", topic, "-k", "bench-latency"],
            up,
            value,
        ),
        "python3 -c pass (floor)": ([sys.executable, "-c", "pass"], up, None),
        "CLI --background": ([cli, "publish", *flags, "--background"], up, None),
        "hook UserPromptSubmit": (hook_args, hook_env, prompt),
        "hook Stop (a turn with usage)": (stop_args, stop_env, stop),
        "CLI sync": ([cli, "publish", *flags], up, None),
        "CLI --background, broker down": ([cli, "publish", *flags, "--background"], down, None),
        "CLI sync, broker down": ([cli, "publish", *flags], down, None),
    }
    samples: dict[str, list[float]] = {k: [] for k in commands}
    rss: dict[str, float] = {k: 0.0 for k in commands}
    codes: dict[str, set[int]] = {k: set() for k in commands}
    stop_name = "hook Stop (a turn with usage)"
    for name, (args, env, stdin) in commands.items():  # warm-up (bytecode caches, page cache)
        if name == stop_name:
            before_stop()
        _timed(args, env, stdin)
        if name == stop_name:
            after_stop()
    for _ in range(runs):
        for name, (args, env, stdin) in commands.items():
            if name == stop_name:
                before_stop()
            wall, peak, code = _timed(args, env, stdin)
            if name == stop_name:
                after_stop()
            samples[name].append(wall)
            rss[name] = max(rss[name], peak)
            codes[name].add(code)
    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    job_ms = statistics.median(job_times[1:]) * 1000
    # Import times: the hook's two calls as installed, and the full hook they replaced.
    full_hook = [
        hook_args[0],
        "-c",
        "from provider_events.integrations._hook import run_claude_hook; run_claude_hook()",
    ]
    imports = {
        "hook UserPromptSubmit": _import_times(hook_args, hook_env, prompt),
        "hook Stop": _import_times(stop_args, stop_env, stop, before_stop, after_stop),
        "full hook UserPromptSubmit (before)": _import_times(full_hook, hook_env, prompt),
        "full hook Stop (before)": _import_times(full_hook, stop_env, stop, before_stop),
    }
    for name, (ours_ms, total_ms) in imports.items():
        console.print(
            f"  imports {name:38s} provider_events {ours_ms:6.1f} ms  all modules {total_ms:6.1f} ms"
        )
    console.print(
        f"  hook Stop's detached outcomes job: median {job_ms:.0f} ms (not in the hook's time)"
    )
    problems = stop_state / "hook.log"
    if problems.exists():
        console.print(f"  hook.log (Stop): {problems.read_text()[-300:]!r}")
    delete_topics(ctx.bootstrap, topic)
    for name in commands:
        console.print(
            f"  {name:32s} median {med[name]:8.1f} ms  p95 {sorted(samples[name])[int(0.95 * (len(samples[name]) - 1))] * 1000:8.1f} ms"
            f"  peak RSS {rss[name]:6.1f} MiB  exit codes {sorted(codes[name])}"
        )
    kcat_ms = med["kcat -P (one-shot)"]
    floor_ms = med["python3 -c pass (floor)"]
    return [
        Comparison(
            "CLI --background latency",
            med["CLI --background"],
            kcat_ms,
            "ms",
            "kcat -P one-shot",
            better="lower",
            target=2.0,
            notes={
                "python3 -c pass floor (ms)": round(floor_ms, 1),
                "background / floor": round(med["CLI --background"] / floor_ms, 2),
                "peak RSS (MiB)": round(rss["CLI --background"], 1),
            },
        ),
        Comparison(
            "hook latency, UserPromptSubmit (command as `hook install` registers it)",
            med["hook UserPromptSubmit"],
            kcat_ms,
            "ms",
            "kcat -P one-shot",
            better="lower",
            target=2.0,
            notes={
                "peak RSS (MiB)": round(rss["hook UserPromptSubmit"], 1),
                "imports provider_events / all (ms)": [
                    round(v, 1) for v in imports["hook UserPromptSubmit"]
                ],
                "full hook imports provider_events / all (ms)": [
                    round(v, 1) for v in imports["full hook UserPromptSubmit (before)"]
                ],
            },
        ),
        Comparison(
            "hook latency, Stop of a turn with usage (as registered)",
            med[stop_name],
            kcat_ms,
            "ms",
            "kcat -P one-shot",
            better="lower",
            target=2.0,
            notes={
                "peak RSS (MiB)": round(rss[stop_name], 1),
                "detached outcomes job (ms)": round(job_ms),
                "imports provider_events / all (ms)": [round(v, 1) for v in imports["hook Stop"]],
                "full hook imports provider_events / all (ms)": [
                    round(v, 1) for v in imports["full hook Stop (before)"]
                ],
            },
        ),
        Comparison(
            "CLI sync latency",
            med["CLI sync"],
            kcat_ms,
            "ms",
            "kcat -P one-shot",
            better="lower",
            target=2.0,
            notes={
                "sync / floor": round(med["CLI sync"] / floor_ms, 2),
                "peak RSS (MiB)": round(rss["CLI sync"], 1),
            },
        ),
        Comparison(
            "CLI --background latency, broker down",
            med["CLI --background, broker down"],
            kcat_ms,
            "ms",
            "kcat -P one-shot (broker up)",
            better="lower",
            target=2.0,
        ),
        Comparison(
            "CLI sync latency, broker down",
            med["CLI sync, broker down"],
            5000.0,
            "ms",
            "delivery bound (5 s)",
            better="lower",
            target=1.0,
            notes={"exit codes": sorted(codes["CLI sync, broker down"])},
        ),
        Comparison(
            "python3 -c pass (floor)", floor_ms, kcat_ms, "ms", "kcat -P one-shot", better="lower"
        ),
    ]
