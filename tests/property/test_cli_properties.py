"""Property tests of the guide's CLI (``scripts/publish_provider_selection.py``) over hostile flags.

The broker address refuses connections (127.0.0.1:1), so an accepted event is spooled (exit 1)
or queued with ``--background`` (exit 0); bad input exits 2. For every generated command line
the exit code is exactly what the oracle predicts, a non-zero exit prints exactly one line on
stderr, nothing ever prints a traceback, and every accepted event is in the outbox with the
fields it was given (nothing accepted is lost). The bulk runs ``script_main(argv)`` in-process;
a smaller sample runs the real script in a subprocess with non-UTF-8 bytes in argv.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from _property_strategies import (
    ANY_CHARS,
    JSON_SCALARS,
    NAME_CHARS,
    SQL,
    TRICKY,
    any_criteria,
    assert_envelope_matches,
    examples,
    problems,
    sized,
    valid_criteria,
    valid_name,
    valid_reason,
)
from hypothesis import given
from hypothesis import strategies as st

from provider_events.cli._publish import script_main
from provider_events.events._models import LIMITS
from provider_events.events._validation import decode_envelope
from provider_events.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "publish_provider_selection.py"
#: flag -> builder argument, for the flags that take a value.
VALUE_FLAGS = {
    "--provider": "provider_name",
    "--model": "model_name",
    "--reason": "selection_reason",
    "--criteria": "selection_criteria",
    "--correlation-id": "correlation_id",
    "--causation-id": "causation_id",
    "--tenant-id": "tenant_id",
}
SWITCHES = ("--background", "--json", "--quiet")
#: Arguments argparse always refuses (none is a prefix of a real flag).
JUNK = ("stray-positional", "two\nlines", "--no-such-flag", "--no-such-flag=1", "-z")


def environment(state: Path) -> dict[str, str]:
    """A clean environment: a broker that refuses, no relay, a private outbox."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(state),
        "LC_ALL": "C.UTF-8",
        "PYTHONUTF8": "1",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "PROVIDER_EVENTS_RELAY_AUTOSTART": "false",
        "PROVIDER_EVENTS_DELIVERY_TIMEOUT": "0.05",
        "PROVIDER_EVENTS_SINK": "kafka",
        "PROVIDER_EVENTS_STATE_DIR": str(state / "state"),
    }


def _outbox(state: Path) -> Path:
    return state / "state" / "outbox.sqlite3"


def outbox_rows(state: Path, after: int) -> list[tuple[int, str, bytes]]:
    """(seq, event_id, value) of the events that entered the outbox after ``after``."""
    if not _outbox(state).exists():
        return []
    with contextlib.closing(sqlite3.connect(_outbox(state))) as conn:
        return [
            (seq, event_id, bytes(value))
            for seq, event_id, value in conn.execute(
                "SELECT seq, event_id, value FROM outbox WHERE seq > ? ORDER BY seq", (after,)
            )
        ]


def last_seq(state: Path) -> int:
    """The outbox's newest ``seq`` (0 when empty or not created yet)."""
    if not _outbox(state).exists():
        return 0
    with contextlib.closing(sqlite3.connect(_outbox(state))) as conn:
        return int(conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0])


# -- the oracle ------------------------------------------------------------------------------
def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def parse_json_text(raw: str | bytes) -> Any:
    """The JSON value of ``raw`` (its bytes, as the CLI reads them), or ValueError."""
    try:
        data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
        text = data.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant)
    except (UnicodeError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


@dataclass
class Command:
    """A generated command line and what it asks for."""

    values: dict[str, str]
    switches: list[str]
    junk: list[str]
    argv: list[str] = field(default_factory=list)

    def expected_code(self) -> int:
        """0 queued (--background), 1 spooled, 2 refused: predicted without the CLI."""
        if self.junk or any(f not in self.values for f in ("--provider", "--model", "--reason")):
            return 2
        try:
            fields = self.fields()
        except ValueError:
            return 2
        if problems(fields):
            return 2
        return 0 if "--background" in self.switches else 1

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {VALUE_FLAGS[f]: v for f, v in self.values.items()}
        if "selection_criteria" in fields:
            criteria = parse_json_text(fields["selection_criteria"])
            if not isinstance(criteria, dict):
                raise ValueError("not an object")
            fields["selection_criteria"] = criteria
        return fields


def cli_text(limit: int, *, cap: int) -> st.SearchStrategy[str]:
    """Flag values: valid, at and beyond ``limit`` (at most ``cap``), controls, surrogates, SQL."""
    return st.one_of(
        valid_name(min(limit, cap)),
        st.text(ANY_CHARS, max_size=20),
        st.lists(st.one_of(TRICKY, NAME_CHARS), max_size=12).map("".join),
        st.sampled_from(sorted({limit, limit + 1, cap})).flatmap(
            lambda n: sized(st.one_of(NAME_CHARS, TRICKY), min(n, cap))
        ),
        st.sampled_from(["", " ", "-", "--", "-x", "--provider", "-1", *SQL]),
    )


#: --criteria holding lone surrogates: any (in-process argv only) or surrogateescape's (a raw
#: non-UTF-8 byte in a real argv), in a value or a key.
LONE_SURROGATES = ['{"a": "\ud800"}', '{"\udfff": 1}', '{"a": "\udcff"}', "\udcc3\udca9"]


def criteria_text(*, cap: int) -> st.SearchStrategy[str]:
    """--criteria values: valid JSON objects, NaN tokens, wrong JSON types, deep, huge, noise."""
    documents = st.one_of(
        valid_criteria().filter(bool), any_criteria(), st.lists(JSON_SCALARS, max_size=3)
    )

    def dumps(value: Any) -> str | None:
        try:
            return json.dumps(value, ensure_ascii=False)  # NaN and Infinity written as tokens
        except (TypeError, ValueError, RecursionError):
            return None

    return st.one_of(
        documents.map(dumps).filter(lambda text: text is not None and len(text) <= cap),
        st.text(ANY_CHARS, max_size=30),
        st.sampled_from(LONE_SURROGATES),
        st.sampled_from(
            [
                '{"a": NaN}',
                '{"a": [Infinity]}',
                '{"a": {"b": -Infinity}}',
                '{"a": 1e999}',
                '{"latency_ms": -1}',
                '{"quality_score": 1.5}',
                '{"cost_per_token": "cheap"}',
                '{"a": "\\u0000"}',
                '{"a": "\\ud800"}',
                '{"a": 1',
                "[1, 2]",
                '"text"',
                "null",
                "",
                '{"sql": "\'; DROP TABLE provider_selection_events; --"}',
            ]
        ),
        st.integers(1, 3000).map(lambda n: '{"deep": ' + "[" * n + "]" * n + "}"),
        st.integers(16_370, 16_400).map(lambda n: json.dumps({"blob": "x" * n})),
        st.binary(min_size=1, max_size=6).map(
            lambda b: '{"raw": "' + b.decode("utf-8", "surrogateescape") + '"}'
        ),
        # NUL, controls, lone surrogates (any, not only surrogateescape's) inside a string.
        st.lists(st.one_of(TRICKY, ANY_CHARS), min_size=1, max_size=6).map(
            lambda chars: '{"text": "' + "".join(chars) + '"}'
        ),
    )


def flag_values(cap: int) -> dict[str, st.SearchStrategy[str]]:
    """The value strategy of each flag (built once: building strategies per draw is slow)."""
    limits = {
        "--provider": LIMITS["provider_name"],
        "--model": LIMITS["model_name"],
        "--correlation-id": LIMITS["correlation_id"],
        "--causation-id": LIMITS["correlation_id"],
        "--tenant-id": LIMITS["envelope_text"],
    }
    out = {
        "--reason": st.one_of(valid_reason(), cli_text(LIMITS["selection_reason"], cap=cap)),
        "--criteria": criteria_text(cap=cap),
    }
    for flag, limit in limits.items():
        good = valid_name(limit)
        if flag == "--correlation-id":
            good = good.filter(str.strip)
        out[flag] = st.one_of(good, good, cli_text(limit, cap=cap))
    return out


IN_PROCESS_VALUES = flag_values(cap=200_000)
#: A real argv holds at most 128 KiB per argument (MAX_ARG_STRLEN): stay well below.
SUBPROCESS_VALUES = flag_values(cap=20_000)
PRESENT = {
    flag: st.sampled_from([True] * 9 + [False])
    if flag in ("--provider", "--model", "--reason")
    else st.booleans()
    for flag in VALUE_FLAGS
}


@st.composite
def commands(draw: Any, *, subprocess_safe: bool = False) -> Command:
    """A command line: some value flags (valid or not), switches, sometimes junk, any order."""
    strategies = SUBPROCESS_VALUES if subprocess_safe else IN_PROCESS_VALUES
    values: dict[str, str] = {}
    for flag in VALUE_FLAGS:
        if not draw(PRESENT[flag]):
            continue
        value = draw(strategies[flag])
        if subprocess_safe:  # argv cannot carry NUL; lone surrogates travel as their bytes
            value = value.replace("\x00", "")
            value = value.encode("utf-8", "surrogatepass").decode("utf-8", "surrogateescape")
        if value == "--":  # argparse takes a lone "--" (even as --flag=--) as the options' end
            value = "--x"
        values[flag] = value
    switches = draw(st.lists(st.sampled_from(SWITCHES), unique=True, max_size=3))
    junk = draw(st.sampled_from([[]] * 12 + [[j] for j in JUNK]))
    parts: list[list[str]] = [[s] for s in switches] + [[j] for j in junk]
    for flag, value in values.items():
        if value.startswith("-") or draw(st.booleans()):
            parts.append([f"{flag}={value}"])
        else:
            parts.append([flag, value])
    order = draw(st.permutations(range(len(parts))))
    argv = [arg for index in order for arg in parts[index]]
    return Command(values, switches, junk, argv)


# -- checks shared by both ways of running ---------------------------------------------------
def check_outcome(
    command: Command, code: Any, out: str, err: str, before: int, state: Path
) -> None:
    expected = command.expected_code()
    assert "Traceback" not in out + err
    assert code == expected, f"exit {code}, expected {expected}; stderr: {err!r}"
    if code == 0:
        assert err == ""
    else:
        assert err.endswith("\n") and err.count("\n") == 1 and err.strip(), err
    if "--json" in command.switches and code in (0, 1):
        assert json.loads(out)["event_id"]
    new = outbox_rows(state, before)
    if code == 2:
        assert new == [], "a refused event reached the outbox"
        return
    assert len(new) == 1, "an accepted event is missing from the outbox"
    _, event_id, value = new[0]
    envelope = decode_envelope(value)
    assert str(envelope.event_id) == event_id
    if "--json" in command.switches:
        assert json.loads(out)["event_id"] == event_id
    elif code == 1:
        assert f"event {event_id} is safe in the outbox" in err
    settings = load_settings(environ=environment(state), dotenv=state / "no.env")
    assert_envelope_matches(envelope, command.fields(), settings)


@contextlib.contextmanager
def cli_environment(state: Path) -> Iterator[None]:
    with mock.patch.dict(os.environ, environment(state), clear=True):
        yield


def run_in_process(argv: list[str]) -> tuple[Any, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: Any = script_main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


# -- tests -----------------------------------------------------------------------------------
def test_cli_in_process_exit_codes_and_outbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,500 generated command lines: the predicted exit code, one stderr line, no traceback,
    and every accepted event in the outbox with its fields."""
    monkeypatch.chdir(tmp_path)  # no .env from the working tree

    @examples(1500)
    @given(commands())
    def run(command: Command) -> None:
        with cli_environment(tmp_path):
            before = last_seq(tmp_path)
            code, out, err = run_in_process(command.argv)
            check_outcome(command, code, out, err, before, tmp_path)

    run()


BATCH_KEYS = (
    "provider",
    "model",
    "reason",
    "criteria",
    "correlation_id",
    "causation_id",
    "tenant_id",
)
BATCH_FIELDS = dict(
    zip(
        BATCH_KEYS,
        [
            "provider_name",
            "model_name",
            "selection_reason",
            "selection_criteria",
            "correlation_id",
            "causation_id",
            "tenant_id",
        ],
        strict=True,
    )
)


@st.composite
def batch_lines(draw: Any) -> bytes:
    """One --batch line: a valid selection, one with a bad field, or not JSON at all."""
    kind = draw(st.sampled_from(["valid"] * 6 + ["bad_field", "wrong_type", "noise", "blank"]))
    doc: dict[str, Any] = {
        "provider": draw(valid_name(LIMITS["provider_name"])),
        "model": draw(valid_name(LIMITS["model_name"])),
    }
    if draw(st.booleans()):
        doc["reason"] = draw(valid_reason())
    if draw(st.booleans()):
        doc["criteria"] = draw(valid_criteria())
    if draw(st.booleans()):
        doc["correlation_id"] = draw(
            st.one_of(st.none(), valid_name(LIMITS["correlation_id"]).filter(str.strip))
        )
    if kind == "bad_field":
        key = draw(st.sampled_from(BATCH_KEYS))
        doc[key] = draw(cli_text(LIMITS["provider_name"], cap=5000))
    elif kind == "wrong_type":
        key = draw(st.sampled_from([*BATCH_KEYS, "unknown_field"]))
        doc[key] = draw(
            st.one_of(st.integers(), st.booleans(), st.lists(st.integers(), max_size=2))
        )
    elif kind == "noise":
        return draw(
            st.one_of(
                st.binary(max_size=40),
                st.sampled_from([b"[]", b"1", b'"x"', b"{", b'{"provider": NaN}']),
            )
        )
    elif kind == "blank":
        return draw(st.sampled_from([b"", b" ", b"\t"]))
    return json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


def expected_batch(lines: list[bytes]) -> int | None:
    """2 when any line is refused, else None (then 1: all spooled)."""
    for line in lines:
        if not line.strip():
            continue
        try:
            doc = parse_json_text(line)
        except ValueError:
            return 2
        if not isinstance(doc, dict) or set(doc) - set(BATCH_FIELDS):
            return 2
        fields = {BATCH_FIELDS[k]: v for k, v in doc.items()}
        fields.setdefault("selection_reason", "")
        if problems(fields):
            return 2
    return None


def test_cli_batch_is_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--batch files of valid and broken lines: one bad line refuses the whole file (exit 2,
    nothing spooled); otherwise every line is in the outbox with its fields."""
    monkeypatch.chdir(tmp_path)

    @examples(300)
    @given(st.lists(batch_lines(), max_size=6), st.sampled_from([b"\n", b"\r\n"]))
    def run(lines: list[bytes], newline: bytes) -> None:
        lines = [line for raw in lines for line in raw.splitlines() or [b""]]
        path = tmp_path / "batch.jsonl"
        path.write_bytes(newline.join(lines) + newline)
        with cli_environment(tmp_path):
            before = last_seq(tmp_path)
            code, out, err = run_in_process(["--batch", str(path), "--json"])
        assert "Traceback" not in out + err
        new = outbox_rows(tmp_path, before)
        expected = expected_batch(lines)
        wanted = [line for line in lines if line.strip()]
        if expected == 2:
            assert code == 2 and new == [], err
            assert err.count("\n") == 1 and err.endswith("\n")
            return
        assert code == (1 if wanted else 0), err
        # Events whose key already waits in the outbox are spooled first (order per key), so
        # the outbox order may differ from the file's; the JSON output follows the file.
        spooled = {event_id: value for _, event_id, value in new}
        event_ids = json.loads(out)["event_ids"]
        assert len(event_ids) == len(wanted) == len(spooled)
        settings = load_settings(environ=environment(tmp_path), dotenv=tmp_path / "no.env")
        for line, event_id in zip(wanted, event_ids, strict=True):
            fields = {BATCH_FIELDS[k]: v for k, v in parse_json_text(line).items()}
            fields.setdefault("selection_reason", "")
            assert_envelope_matches(decode_envelope(spooled[event_id]), fields, settings)

    run()


def test_cli_subprocess_with_non_utf8_argv(tmp_path: Path) -> None:
    """The real script with raw bytes in argv (non-UTF-8 via surrogateescape): exit 0/1/2 as
    predicted, one stderr line on failure, no traceback, accepted events in the outbox."""

    @examples(150)
    @given(commands(subprocess_safe=True))
    def run(command: Command) -> None:
        before = last_seq(tmp_path)
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), *(os.fsencode(a) for a in command.argv)],
            env=environment(tmp_path),
            cwd=tmp_path,
            capture_output=True,
            timeout=60,
        )
        out = proc.stdout.decode("utf-8", "backslashreplace")
        err = proc.stderr.decode("utf-8", "backslashreplace")
        check_outcome(command, proc.returncode, out, err, before, tmp_path)

    run()
