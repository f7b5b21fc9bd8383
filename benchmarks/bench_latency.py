"""Caller latency of the guide's CLI: --background and synchronous vs a one-shot `kcat -P`.

Each command is a fresh process producing the same key and value to the same broker, run 30
times alternating, median wall time. The commands run as installed: the venv's
``provider-events`` console script, and the hook command exactly as ``hook install`` registers
it (fed a UserPromptSubmit payload on stdin). Targets: --background and the hook within 2x kcat. `python3 -c pass` is measured too: it is the floor any
Python CLI pays before its first line runs. Broker down: the bootstrap points at a closed
port on 127.0.0.1 (connection refused), and background mode must still be as fast.
Peak memory is each CLI process's max RSS (wait4).
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
    commands = {
        "kcat -P (one-shot)": (
            [kcat, "-P", "-b", ctx.bootstrap, "-t", topic, "-k", "bench-latency"],
            up,
            value,
        ),
        "python3 -c pass (floor)": ([sys.executable, "-c", "pass"], up, None),
        "CLI --background": ([cli, "publish", *flags, "--background"], up, None),
        "hook (as installed)": (hook_args, hook_env, prompt),
        "CLI sync": ([cli, "publish", *flags], up, None),
        "CLI --background, broker down": ([cli, "publish", *flags, "--background"], down, None),
        "CLI sync, broker down": ([cli, "publish", *flags], down, None),
    }
    samples: dict[str, list[float]] = {k: [] for k in commands}
    rss: dict[str, float] = {k: 0.0 for k in commands}
    codes: dict[str, set[int]] = {k: set() for k in commands}
    for args, env, stdin in commands.values():  # warm-up (bytecode caches, page cache)
        _timed(args, env, stdin)
    for _ in range(runs):
        for name, (args, env, stdin) in commands.items():
            wall, peak, code = _timed(args, env, stdin)
            samples[name].append(wall)
            rss[name] = max(rss[name], peak)
            codes[name].add(code)
    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
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
            "hook latency (command as `hook install` registers it)",
            med["hook (as installed)"],
            kcat_ms,
            "ms",
            "kcat -P one-shot",
            better="lower",
            target=2.0,
            notes={"peak RSS (MiB)": round(rss["hook (as installed)"], 1)},
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
