"""The CLI fuzz's engine: invocations of every command with every flag, run and judged.

The flags come from the commands' own argparse parsers (introspected), so a new flag is fuzzed
without touching this file. Values mix valid ones (the flag's choices, small numbers, dates),
boundary ones (0, -0, -1, 1e308, nan, inf, huge integers, empty) and hostile ones (unicode,
``/dev/null``, a FIFO, a directory, ``..``); options land before or after the positional.
Each invocation gets its own HOME, state directory and working directory, secrets planted in
``DATABASE_URL`` (malformed URLs too), ``KAFKA_SASL_PASSWORD``, ``ANTHROPIC_AUTH_TOKEN`` and
a provider key, and Kafka and PostgreSQL at closed local ports (127.0.0.1:1, never another
address). The verdict: exit code in {0, 1, 2}, no traceback or internal error, no planted
secret in stdout, stderr or any file under HOME, the state directory or the working directory
(a provider key may only be in the Claude settings file ``switch`` writes it into).

Most invocations run in-process (``cli.main`` with captured streams, patched environment);
those that only end on a signal (``relay --follow``, ``consume`` with a metrics port, the
``hook claude`` entry point that takes over fd 1) and a sample of the rest run as a child.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from provider_events.cli import COMMANDS, INTERNAL_ERROR, main
from provider_events.cli._common import ArgumentParser

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "provider_events.cli"]
CLOSED = "127.0.0.1:1"
#: Seconds an in-process invocation may take before it counts as hung.
IN_PROCESS_LIMIT = 60
#: Seconds before a child gets SIGTERM (relay --follow and a retrying consume stop with exit 0).
CHILD_STOP_AFTER = 3

# -- the flags, from the parsers ---------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    option: str | None  # None: a positional
    takes_value: bool
    choices: tuple[str, ...] = ()
    dest: str = ""


def command_flags(command: str) -> list[Flag]:
    """Every flag and positional of ``command``, read from its parser."""
    module = importlib.import_module(f"provider_events.cli.{COMMANDS[command][0]}")
    parser = ArgumentParser(prog=f"provider-events {command}")
    module.add_arguments(parser)
    flags = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        takes = action.nargs != 0
        choices = tuple(str(c) for c in action.choices or ())
        if action.option_strings:
            for option in action.option_strings:
                flags.append(Flag(option, takes, choices, action.dest))
        elif action.nargs != argparse.REMAINDER:
            flags.append(Flag(None, True, choices, action.dest))
    return flags


FLAGS = {name: command_flags(name) for name in COMMANDS}

BOUNDARY = [
    "0",
    "-0",
    "1",
    "-1",
    "2",
    "30",
    "1e308",
    "-1e308",
    "nan",
    "-nan",
    "inf",
    "-inf",
    "Infinity",
    "99999999999999999999",
    "-99999999999999999999",
    "9223372036854775807",
    "9223372036854775808",
    "0.5",
    "1e-320",
    "",
    " ",
    "0x10",
    "1_000",
    "+5",
]
WHEN = [
    "7d",
    "24h",
    "90m",
    "now",
    "2025-11-13",
    "2025-11-13T14:00Z",
    "0001-01-01",
    "9999-12-31",
    "9999-12-31T23:59:59Z",
    "3000000d",
    "99999999999999999999d",
    "1e9d",
    "0d",
    "-5d",
    "2025-13-45",
    "0001-01-01T00:00+05:00",
    "9998-12-31T23:00-05:00",
]
HOSTILE = [
    "é",
    "名前",
    "\u202etxt",
    "x" * 300,
    "'; DROP TABLE x; --",
    "=1+1",
    "@SUM(A1)",
    "-x",
    "--",
    "{}",
    "[]",
    '{"cost_per_token": 1e308}',
    '{"quality_score": NaN}',
    "a\nb",
    "\t",
    "registry://omninode/agent/provider_selected/v1",
    "claude",
    "zai",
    "list",
    "status",
]
PATH_KINDS = [
    "devnull",
    "devzero",
    "fifo",
    "dir",
    "file",
    "new",
    "nested-new",
    "link-fifo",
    "dotdot",
    "under-file",
]
#: Flags that make a command run until a signal, or that take over the process: rarely chosen,
#: and then run as a child with a kill timer.
HAZARDS = {
    ("relay", "--follow"),
    ("relay", "-f"),
    ("relay", "--detached"),
    ("consume", "--metrics-port"),
}


@dataclass
class Invocation:
    command: str
    argv: list[str]  # path placeholders as "<path:KIND>"
    database_url: str
    sasl: bool
    subprocess: bool = False

    def describe(self) -> str:
        return f"{self.command} {self.argv!r} DATABASE_URL-shape={self.database_url!r}"


SANE = ["1", "3", "10", "0.5", "<path:new>", "value"]


def _sane_value(flag: Flag) -> st.SearchStrategy[str]:
    """A value likely to be accepted, so the fuzz also reaches past the flag checks."""
    if flag.choices:
        return st.sampled_from(flag.choices)
    if flag.dest in ("since", "until"):
        return st.sampled_from(["7d", "24h", "2d", "now"] if flag.dest == "since" else ["now"])
    return st.sampled_from(SANE)


def _value(flag: Flag) -> st.SearchStrategy[str]:
    pools: list[st.SearchStrategy[str]] = [
        st.sampled_from(BOUNDARY),
        st.sampled_from(HOSTILE),
        st.sampled_from([f"<path:{k}>" for k in PATH_KINDS]),
        st.text(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
        ),
    ]
    if flag.choices:
        pools = [st.sampled_from(flag.choices)] * 3 + pools
    if flag.dest in ("since", "until"):
        pools = [st.sampled_from(WHEN)] * 3 + pools
    return st.one_of(pools)


@st.composite
def invocations(draw: st.DrawFn) -> Invocation:
    """One invocation of one command, with a random subset of its flags in random order."""
    command = draw(st.sampled_from(sorted(COMMANDS)))
    sane = draw(st.integers(0, 2)) == 0  # a third of the invocations: mostly valid values
    parts: list[list[str]] = []
    positional: list[str] = []
    for flag in FLAGS[command]:
        hazard = (command, flag.option) in HAZARDS
        if not draw(st.booleans()) or (hazard and draw(st.integers(0, 9)) > 0):
            continue
        values = _sane_value(flag) if sane and draw(st.integers(0, 9)) > 0 else _value(flag)
        if flag.option is None:
            positional.append(draw(values))
            continue
        if not flag.takes_value:
            parts.append([flag.option])
            continue
        value = draw(values)
        if value.startswith("-") or draw(st.booleans()):
            parts.append([f"{flag.option}={value}"])  # how a value starting with - must go
        else:
            parts.append([flag.option, value])
    if command == "hook" and positional == ["claude"] and draw(st.integers(0, 4)) > 0:
        positional = ["status"]  # the hook entry point takes over fd 1: run it rarely
    order = draw(st.permutations(parts)) if parts else []
    split = draw(st.integers(0, len(order)))
    argv = (
        [x for p in order[:split] for x in p] + positional + [x for p in order[split:] for x in p]
    )
    if draw(st.integers(0, 9)) == 0:
        argv = [*argv, *draw(st.sampled_from([["--help"], ["-h"], ["--bogus"], ["extra"]]))]
    shapes = ["unset", "percent", "at-sign", "kv", "closed"]
    if command == "consume" and draw(st.integers(0, 9)) > 0:
        shapes = ["unset", "percent"]  # the others retry until stopped: a child, 3 s each
    dsn = draw(st.sampled_from(shapes))
    return Invocation(command, argv, dsn, sasl=draw(st.booleans()))


# -- running one ---------------------------------------------------------------------------------


@dataclass
class Planted:
    values: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: str) -> str:
        self.values[name] = value
        return value


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    how: str


def _resolve(arg: str, base: Path) -> str:
    """``<path:KIND>`` placeholders made real inside ``base``."""
    if "<path:" not in arg:
        return arg
    head, _, rest = arg.partition("<path:")
    kind = rest[:-1]
    target = {
        "devnull": "/dev/null",
        "devzero": "/dev/zero",
        "fifo": str(base / "fifo"),
        "dir": str(base / "adir"),
        "file": str(base / "afile.txt"),
        "new": str(base / "new.out"),
        "nested-new": str(base / "n1" / "n2" / "new.out"),
        "link-fifo": str(base / "link-fifo"),
        "dotdot": str(base / "adir" / ".." / "dd.out"),
        "under-file": str(base / "afile.txt" / "x.out"),
    }[kind]
    return head + target


def _environment(inv: Invocation, base: Path, planted: Planted) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KAFKA_", "PROVIDER_EVENTS_", "ANTHROPIC_", "CLAUDE_", "PG"))
        and not k.endswith(("_API_KEY", "_TOKEN"))
        and k != "DATABASE_URL"
    }
    pw = planted.add("db", f"DBPW{secrets.token_hex(8)}")
    shapes = {
        "percent": f"postgresql://u:{pw}%ZZ{planted.add('db2', 'x' + secrets.token_hex(8))}"
        f"@{CLOSED}/db",
        "at-sign": f"postgresql://u:{pw}@{planted.add('db2', 'y' + secrets.token_hex(8))}"
        f"@{CLOSED}/db",
        "kv": f"host=127.0.0.1 port=1 user=u password={pw} dbname=db",
        "closed": f"postgresql://u:{pw}@{CLOSED}/db",
    }
    if inv.database_url in shapes:
        env["DATABASE_URL"] = shapes[inv.database_url]
    if inv.sasl:
        env["KAFKA_SECURITY_PROTOCOL"] = "SASL_PLAINTEXT"
        env["KAFKA_SASL_MECHANISM"] = "PLAIN"
        env["KAFKA_SASL_USERNAME"] = "fuzz"
        env["KAFKA_SASL_PASSWORD"] = planted.add("sasl", f"SASL{secrets.token_hex(8)}")
    env["ANTHROPIC_AUTH_TOKEN"] = planted.add("token", f"sk-ant-{secrets.token_hex(10)}")
    env["ZAI_API_KEY"] = planted.add("zai", f"zaikey{secrets.token_hex(10)}")
    env.update(
        HOME=str(base / "home"),
        XDG_CONFIG_HOME=str(base / "home" / ".config"),
        XDG_STATE_HOME=str(base / "home" / ".state"),
        CLAUDE_CONFIG_DIR=str(base / "home" / ".claude"),
        PROVIDER_EVENTS_STATE_DIR=str(base / "state"),
        KAFKA_BOOTSTRAP_SERVERS=CLOSED,
        PROVIDER_EVENTS_DELIVERY_TIMEOUT="0.3",
        PROVIDER_EVENTS_RELAY_AUTOSTART="false",
        PROVIDER_EVENTS_HOOK_TIMEOUT="5",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    if inv.command == "consume" and not inv.subprocess:
        env["PROVIDER_EVENTS_METRICS_PORT"] = "off"
    return env


def _prepare(base: Path) -> None:
    (base / "home").mkdir()
    (base / "adir").mkdir()
    (base / "afile.txt").write_text("not json\n")
    os.mkfifo(base / "fifo")
    (base / "link-fifo").symlink_to(base / "fifo")


def _needs_child(inv: Invocation, argv: list[str]) -> bool:
    if inv.command == "hook" and "claude" in argv:
        return True
    if inv.command == "relay" and any(a in ("--follow", "-f", "--detached") for a in argv):
        return True
    if inv.command == "consume":
        # only a malformed (fails at once) or no DATABASE_URL ends by itself; /metrics too
        return inv.database_url not in ("unset", "percent") or any(
            a.startswith("--metrics-port") for a in argv
        )
    return False


def _shape(inv: Invocation, argv: list[str]) -> list[str]:
    """Keep each run short: the demo makes few events unless the value is refused anyway."""
    if inv.command != "demo":
        return argv
    out, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a == "--events":
            skip = i + 1 < len(argv)
            continue
        if a.startswith("--events="):
            continue
        out.append(a)
    return [*out, "--events", "40"]


@contextlib.contextmanager
def _patched(env: dict[str, str], cwd: Path) -> Iterator[None]:
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved = sys.stdin, sys.stdout, sys.stderr
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers = []
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.stdin, sys.stdout, sys.stderr = saved
        root.handlers, root.level = saved_handlers, saved_level


def _in_process(argv: list[str], env: dict[str, str], cwd: Path) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    with _patched(env, cwd):
        sys.stdin = io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8")
        sys.stdout, sys.stderr = out, err
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)}

        def hung(*_: object) -> None:
            raise TimeoutError(f"still running after {IN_PROCESS_LIMIT} s")

        signal.signal(signal.SIGALRM, hung)  # a hang (a FIFO opened, a loop) is a finding
        signal.alarm(IN_PROCESS_LIMIT)
        try:
            code: Any = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except BaseException as exc:
            import traceback

            err.write("Traceback (escaped main):\n" + traceback.format_exc())
            code = f"raised {type(exc).__name__}"
        finally:
            signal.alarm(0)
            for s, h in previous.items():
                signal.signal(s, h)
    return Outcome(code, out.getvalue(), err.getvalue(), "in-process")


def _child(argv: list[str], env: dict[str, str], cwd: Path) -> Outcome:
    proc = subprocess.Popen(
        [*CLI, *argv],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    try:
        out, err = proc.communicate(timeout=CHILD_STOP_AFTER)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # relay --follow, consume: a clean stop is exit 0
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return Outcome(-9, out, err + "\n(did not stop on SIGTERM)", "child")
    return Outcome(proc.returncode, out, err, "child")


def _written(*roots: Path) -> Iterator[tuple[Path, bytes]]:
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    yield path, path.read_bytes()


#: What ran, for the figures in RELIABILITY.md: invocations, children, exit codes, commands.
STATS: Counter[str] = Counter()
SECONDS: Counter[str] = Counter()


@dataclass
class Verdict:
    outcome: Outcome
    problems: list[str]


def run_invocation(inv: Invocation, force_child: bool = False) -> Verdict:
    """Run ``inv`` in a fresh HOME/state/working directory and judge it."""
    with tempfile.TemporaryDirectory(prefix="pe-fuzz-") as tmp:
        base = Path(tmp)
        _prepare(base)
        argv = _shape(inv, [_resolve(a, base) for a in inv.argv])
        inv.subprocess = force_child or _needs_child(inv, argv)
        planted = Planted()
        env = _environment(inv, base, planted)
        work = base / "work"
        work.mkdir()
        started = time.perf_counter()
        outcome = (_child if inv.subprocess else _in_process)([inv.command, *argv], env, work)
        SECONDS[f"{inv.command} {outcome.how}"] += time.perf_counter() - started
        STATS["invocations"] += 1
        STATS[f"run {outcome.how}"] += 1
        STATS[f"exit {outcome.code}"] += 1
        STATS[f"command {inv.command}"] += 1
        problems = []
        if outcome.code not in (0, 1, 2):
            problems.append(f"exit code {outcome.code!r}")
        if "Traceback" in outcome.stderr or "Traceback" in outcome.stdout:
            problems.append("traceback")
        if INTERNAL_ERROR in outcome.stderr:
            problems.append("internal error")
        shown = (outcome.stdout + outcome.stderr).encode("utf-8", "replace")
        for name, value in planted.values.items():
            if value.encode() in shown:
                problems.append(f"secret {name} printed")
        for path, data in _written(base / "home", base / "state", work, base / "n1"):
            for name, value in planted.values.items():
                allowed = name == "zai" and path.name.startswith("settings.json")
                if value.encode() in data and not allowed:
                    problems.append(f"secret {name} written to {path.relative_to(base)}")
        return Verdict(outcome, problems)
