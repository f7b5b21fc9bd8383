"""Issue 16's findings a-j, each reproduced: secrets in malformed URLs, output targets, flags
and CSV cells. Every test here failed on the code before the fix.

Commands run in-process (``cli.main`` with captured output) where that is safe, as a child
process where they loop (``consume``) or need another user (``relay`` on a read-only outbox).
Kafka and PostgreSQL addresses are closed local ports: nothing here needs a service.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from provider_events.cli import main
from provider_events.errors import InvalidEventError

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "provider_events.cli"]
CLOSED = "127.0.0.1:1"
#: The two malformed URLs of finding a: a bad percent escape, and an ``@`` in the password.
BAD_URLS = {
    "percent": ("postgresql://u:DBPASS%ZZsecret888@127.0.0.1:1/db", ("DBPASS", "secret888")),
    "at-sign": ("postgresql://u:DBPASS@secret999@127.0.0.1:1/db", ("DBPASS", "secret999")),
}
SASL = "saslpw-7c1d9e22a0"
TOKEN = "sk-ant-token-41f0c3d95b"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An isolated HOME, state dir and working directory; services at closed ports."""
    for name in list(os.environ):
        if name.startswith(("KAFKA_", "PROVIDER_EVENTS_", "ANTHROPIC_", "CLAUDE_", "PG")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".state"))
    monkeypatch.setenv("PROVIDER_EVENTS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", CLOSED)
    monkeypatch.setenv("PROVIDER_EVENTS_DELIVERY_TIMEOUT", "1")
    monkeypatch.setenv("PROVIDER_EVENTS_RELAY_AUTOSTART", "false")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    )
    monkeypatch.chdir(tmp_path)
    return dict(os.environ)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``provider-events ARGS`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's exit
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def files_under(*roots: Path) -> bytes:
    """Every byte of every file under ``roots`` (and their names)."""
    data = b""
    for root in roots:
        for path in root.rglob("*") if root.exists() else ():
            data += str(path).encode() + b"\n"
            if path.is_file() and not path.is_symlink():
                data += path.read_bytes()
    return data


# -- a. secrets in malformed URLs ----------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(BAD_URLS))
@pytest.mark.parametrize(
    "args",
    [
        ("migrate",),
        ("migrate", "--status"),
        ("stats", "--store", "postgresql"),
        ("stats", "--json"),
        ("recommend", "--store", "postgresql"),
        ("report", "--html", "r.html"),
        ("doctor",),
        ("doctor", "--json"),
        ("relay",),
        ("outbox",),
        ("publish", "--provider", "p", "--model", "m", "--reason", "r", "--json"),
        ("publish", "--provider", "p", "--model", "m", "--reason", "r", "--background"),
    ],
    ids=" ".join,
)
def test_a_malformed_dsn_password_is_never_printed(
    kind: str,
    args: tuple[str, ...],
    env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A DSN whose password holds ``%`` or ``@``, the SASL password and an auth token never
    reach stdout, stderr or a file, whichever command runs."""
    url, pieces = BAD_URLS[kind]
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", TOKEN)
    code, out, err = run(capsys, *args)
    assert code in (0, 1, 2), (code, err)
    shown = (out + err).encode() + files_under(tmp_path / "home", tmp_path / "state")
    for secret in (*pieces, TOKEN):
        assert secret.encode() not in shown, (secret, out, err)
    assert "Traceback" not in err


@pytest.mark.parametrize("kind", sorted(BAD_URLS))
def test_a_consume_json_lines_and_retries_hold_no_password(
    kind: str, env: dict[str, str], tmp_path: Path
) -> None:
    """``consume`` (its JSON log lines, on every retry) never prints the malformed password."""
    url, pieces = BAD_URLS[kind]
    child_env = dict(env, DATABASE_URL=url, KAFKA_SASL_PASSWORD=SASL)
    proc = subprocess.Popen(
        [*CLI, "consume", "--metrics-port", "off", "--json", "--until-idle", "2"],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=6)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, 1, 2)
    assert "Traceback" not in err
    for secret in (*pieces, SASL):
        assert secret not in out + err, (secret, out[-500:], err[-500:])
    # It did report the problem: a URL psycopg cannot parse (an invalid %-escape) is bad input,
    # exit 2 naming DATABASE_URL; a parseable one is tried and its failure reported.
    assert (
        "DATABASE_URL" in err if proc.returncode == 2 else "connecting to PostgreSQL" in out + err
    )


def test_a_redaction_handles_urls_no_parser_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything between ``://`` and the last ``@`` and every ``password=`` value is masked,
    and the known secret values anywhere in a text."""
    from provider_events._redact import dsn_secrets, redact

    text = redact("postgresql://u:pa@ss%ZZword@h:5/db?sslpassword=k3y&x=1 host=h password='a b'")
    assert "pa@ss" not in text and "ZZword" not in text and "k3y" not in text and "a b" not in text
    assert text.startswith("postgresql://u:********@h:5/db")
    secrets = dsn_secrets("postgresql://u:DBPASS@secret999@h/db")
    assert redact("failed to resolve host 'secret999@h'", secrets) == (
        "failed to resolve host '********@h'"
    )
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", SASL)
    from provider_events.settings import redact_dsn

    assert SASL not in redact_dsn(f"SASL authentication failed for {SASL}")


# -- b. output targets ---------------------------------------------------------------------------
def test_b_report_refuses_fifo_device_directory_and_links_to_them(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--html`` on a FIFO, a device, a directory or a link to one: exit 2, one line, and the
    target is what it was (the FIFO stays a FIFO; the device is only named, never written)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link-to-fifo"
    link.symlink_to(fifo)
    (tmp_path / "dir").mkdir()
    for target in (fifo, link, Path("/dev/null"), tmp_path / "dir"):
        code, out, err = run(capsys, "report", "--html", str(target))
        assert code == 2, (target, out, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    code, out, err = run(capsys, "schema", "--write", str(fifo))
    assert code == 2 and stat.S_ISFIFO(fifo.stat().st_mode), err


def test_b_report_writes_a_new_path_and_replaces_a_regular_file(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new path or a regular file is written whole, with no temporary file left behind."""
    target = tmp_path / "out" / "r.html"
    assert run(capsys, "report", "--html", str(target), "-q")[0] == 0
    target.write_text("old")
    assert run(capsys, "report", "--html", str(target), "-q")[0] == 0
    assert target.read_text().startswith("<!DOCTYPE html>") or "<html" in target.read_text()
    assert [p.name for p in target.parent.iterdir()] == ["r.html"]


# -- c. report size --------------------------------------------------------------------------------
REPORT_MAX_BYTES = 5 * 1024 * 1024


def test_c_report_size_is_bounded_whatever_the_window(
    env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A report over centuries aggregates into coarser bins and stays under 5 MB."""
    demo = tmp_path / "demo"
    code, _, err = run(capsys, "demo", "--local", "--events", "300", "--state-dir", str(demo))
    assert code == 0, err
    monkeypatch.setenv("PROVIDER_EVENTS_STATE_DIR", str(demo))
    for since, until in (("1900-01-01", None), ("0001-01-01", None), ("0001-01-01", "9999-01-01")):
        out = tmp_path / "long.html"
        args = ["report", "--html", str(out), "-q", "--since", since]
        code, _, err = run(capsys, *args, *(["--until", until] if until else []))
        assert code == 0, err
        assert out.stat().st_size < REPORT_MAX_BYTES, (since, out.stat().st_size)
        assert "selections-over-time" in out.read_text()


@pytest.mark.parametrize("command", ["stats", "usage"])
@pytest.mark.parametrize("since", ["0001-01-01", "0999-01-01"])
def test_c_json_window_of_year_one_is_rfc3339(
    command: str, since: str, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``stats|usage --since 0001-01-01 --json`` state their window as zero-padded RFC 3339
    times (strftime("%Y") wrote year 999 as "999")."""
    code, out, err = run(capsys, command, "--since", since, "--until", "9999-01-01", "--json")
    assert code == 0, err
    window = json.loads(out)["window"]
    assert window["since"] == f"{since}T00:00:00Z" and window["until"] == "9999-01-01T00:00:00Z"


def test_c_embedded_store_time_text_sorts_for_any_year() -> None:
    """The embedded store compares RFC 3339 text: a year before 1000 must sort before 2025."""
    from datetime import UTC, datetime

    from provider_events.analytics._routing import _when
    from provider_events.store._local import _text_time

    class Sqlite:
        dialect = "sqlite"

    for moment in (datetime(999, 1, 1, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)):
        later = datetime(2025, 1, 1, tzinfo=UTC)
        assert _text_time(moment) < _text_time(later)
        assert _when(Sqlite(), moment) < _when(Sqlite(), later)  # type: ignore[arg-type]
        assert _text_time(moment) == _when(Sqlite(), moment)


# -- d. empty filters ------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["stats", "recommend", "report"])
def test_d_empty_tenant_is_refused(
    command: str, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--tenant ''`` would mean every tenant: exit 2 instead."""
    extra = ["--html", "r.html"] if command == "report" else []
    code, _, err = run(capsys, command, *extra, "--tenant", "")
    assert code == 2 and "--tenant" in err and len(err.strip().splitlines()) == 1


# -- e. relay on a read-only outbox ----------------------------------------------------------------
def test_e_relay_on_read_only_outbox_is_one_line(env: dict[str, str]) -> None:
    """``relay`` whose outbox directory it cannot write: one line on stderr, exit 1."""
    base = Path(tempfile.mkdtemp(prefix="pe-ro-"))  # outside pytest's 0700 tree: nobody reads it
    try:
        base.chmod(0o755)
        state = base / "state"
        child = dict(env, PROVIDER_EVENTS_STATE_DIR=str(state), HOME=str(base))
        publish = [*CLI, "publish", "--provider", "p", "--model", "m", "--reason", "r"]
        queued = subprocess.run(
            [*publish, "--background"],
            env=child,
            cwd=base,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert queued.returncode == 0, queued.stderr
        for path in state.iterdir():
            path.chmod(0o444)
        state.chmod(0o555)
        command = [*CLI, "relay"]
        if os.geteuid() == 0:  # root writes anywhere: run it as nobody
            setpriv = shutil.which("setpriv")
            assert setpriv, "setpriv (util-linux) is needed to drop root for this test"
            command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        proc = subprocess.run(
            command, env=child, cwd=base, capture_output=True, text=True, timeout=60
        )
    finally:
        for path in base.rglob("*"):
            path.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# -- f, h. numeric flags ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ("stats", "--until", "9999-12-31T23:59:59Z"),
        ("stats", "--since", "3000000d"),
        ("stats", "--since", "99999999999999999999d"),
        ("stats", "--top", "99999999999999999999"),
        ("stats", "--since", "0001-01-01T00:00+05:00"),
        ("stats", "--until", "0001-01-02"),
        ("recommend", "--quality-tolerance", "nan"),
        ("recommend", "--quality-tolerance", "inf"),
        ("recommend", "--max-latency-ms", "-5"),
        ("recommend", "--latency-tolerance", "-inf"),
        ("recommend", "--min-samples", "99999999999999999999"),
        ("report", "--html", "r.html", "--min-samples", "-1"),
        ("consume", "--until-idle", "nan"),
        ("consume", "--until-idle", "inf"),
        ("consume", "--max-messages", "99999999999999999999"),
        ("consume", "--batch-size", "99999999999999999999"),
        ("consume", "--batch-timeout", "1e300"),
        ("relay", "--batch-size", "0"),
        ("demo", "--days", "nan"),
        ("demo", "--events", "1e308"),
    ],
    ids=" ".join,
)
def test_f_h_numeric_flags_refuse_nan_inf_negative_and_huge(
    args: tuple[str, ...],
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """nan, infinities, meaningless negatives and values no store holds: exit 2, one line."""
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:p@{CLOSED}/db")
    code, out, err = run(capsys, *args)
    assert code == 2, (code, out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


# -- g. CSV formula injection ----------------------------------------------------------------------
def test_g_csv_cells_cannot_be_formulas(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Text cells starting with = + - @ tab or CR get a leading ``'``; numbers stay numbers."""
    monkeypatch.setenv("PROVIDER_EVENTS_SINK", "local")
    hostile = ['=HYPERLINK("http://x")', "+1+cmd", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"]
    for i, text in enumerate(hostile):
        criteria = json.dumps({"cost_per_token": 0.000001, "quality_score": 0.9, "latency_ms": 5})
        code, _, err = run(
            capsys,
            "publish",
            f"--provider={text if text.isprintable() else f'p{i}'}",
            f"--model={text if text.isprintable() else 'm'}-m{i}",
            f"--reason={text}",
            f"--criteria={criteria}",
            "--quiet",
        )
        assert code == 0, err
    outputs = []
    for section in ("groups", "reasons", "cost", "criteria"):
        code, out, err = run(capsys, "stats", "--csv", "--section", section, "--since", "2d")
        assert code == 0, err
        outputs.append(out)
    code, out, err = run(capsys, "recommend", "--csv", "--min-samples", "1", "--since", "2d")
    assert code == 0, err
    outputs.append(out)
    seen = 0
    for text in outputs:
        for row in csv.reader(io.StringIO(text, newline="")):
            for cell in row:
                if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                    float(cell)  # only a number may start so
                seen += cell.startswith("'")
    assert seen >= len(hostile)


# -- i. file-reading options -----------------------------------------------------------------------
@pytest.mark.parametrize("target", ["/dev/zero", "fifo"])
def test_i_providers_file_that_never_ends_is_refused(
    target: str, env: dict[str, str], tmp_path: Path
) -> None:
    """``PROVIDER_EVENTS_PROVIDERS_FILE=/dev/zero switch list`` (or a FIFO): exit 2, at once."""
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")
        target = str(tmp_path / "fifo")
    proc = subprocess.run(
        [*CLI, "switch", "list"],
        env=dict(env, PROVIDER_EVENTS_PROVIDERS_FILE=target),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_i_settings_and_batch_files_that_never_end_are_refused(
    env: dict[str, str], tmp_path: Path
) -> None:
    """``switch --settings /dev/zero`` and ``publish --batch /dev/zero``: exit 2, at once."""
    for args in (
        ["switch", "--settings", "/dev/zero", "status"],
        ["publish", "--batch", "/dev/zero"],
    ):
        proc = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


# -- j. invalid UTF-8 inside a JSON string ---------------------------------------------------------
def test_j_invalid_utf8_inside_a_json_string_is_bad_utf8() -> None:
    """The docs' promise: bad UTF-8 inside a string is ``bad_utf8``, not ``bad_json``."""
    from provider_events.events._envelope import build_provider_selection
    from provider_events.events._validation import decode_envelope
    from provider_events.settings import Settings

    event = build_provider_selection(
        provider_name="pp", model_name="mm", selection_reason="rr", settings=Settings()
    )
    for bad in (b'"r\xffr"', b'"r\xc3("', b'"\xed\xa0\x80"'):
        with pytest.raises(InvalidEventError) as info:
            decode_envelope(event.value.replace(b'"rr"', bad))
        assert info.value.reason == "bad_utf8", bad
    with pytest.raises(InvalidEventError) as info:
        decode_envelope(event.value[:-3])
    assert info.value.reason == "bad_json"


# -- found by the CLI fuzz -------------------------------------------------------------------------
def test_fuzz_found_demo_report_naming_its_own_folder(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``demo --state-dir=value --report=value``: exit 2, one line (was an internal error)."""
    code, _, err = run(
        capsys, "demo", "--state-dir=value", "--local", "--report=value", "--events", "40"
    )
    assert code == 2 and "--report" in err and len(err.strip().splitlines()) == 1, err


def test_fuzz_found_metrics_address_no_codec_encodes(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``consume --metrics-addr`` holding U+0085: exit 2, one line (was an internal error)."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@127.0.0.1:1/db")
    code, _, err = run(capsys, "consume", "--metrics-port", "0", "--metrics-addr", "a\x85b")
    assert code == 2 and "metrics" in err and len(err.strip().splitlines()) == 1, err


# -- standard output that cannot be written ------------------------------------------------------
def _close_stdout() -> None:
    os.close(1)


@pytest.mark.parametrize("where", ["/dev/full", "closed"])
@pytest.mark.parametrize(
    "argv",
    [
        ["publish", "--provider", "p", "--model", "m", "--reason", "r", "--background"],
        ["publish", "--provider", "p", "--model", "m", "--reason", "r", "--background", "--json"],
        ["stats", "--json"],
        ["usage", "--csv"],
        ["budget", "show"],
        ["outbox", "status"],
        ["statusline"],
        ["schema", "--list"],
    ],
    ids=lambda a: "-".join(a[:2]) + ("-json" if "--json" in a[2:] else ""),
)
def test_output_that_cannot_be_written_is_one_line_and_exit_1(
    env: dict[str, str], tmp_path: Path, argv: list[str], where: str
) -> None:
    """stdout on a full device or closed: one line naming it, exit 1 — not an "internal
    error", not a traceback, not the interpreter's "Exception ignored" at exit."""
    child_env = {**env, "PROVIDER_EVENTS_SINK": "local"} if argv[0] != "publish" else env
    with open("/dev/full", "wb") if where == "/dev/full" else open(os.devnull, "wb") as sink:
        done = subprocess.run(
            [sys.executable, "-m", "provider_events.cli", *argv],
            env=child_env,
            input=b"{}",
            stdout=sink,
            stderr=subprocess.PIPE,
            preexec_fn=_close_stdout if where == "closed" else None,
            timeout=60,
        )
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert len(err.splitlines()) == 1, err
    expected = "standard output is closed" if where == "closed" else "No space left on device"
    assert err.startswith("error: ") and expected in err, err


def test_the_guides_script_words_an_unwritable_output_as_the_command_does(
    env: dict[str, str],
) -> None:
    """``scripts/publish_provider_selection.py`` is ``provider-events publish`` under its own
    name: the same one line and exit 1 when stdout is a full device (it was a traceback)."""
    argv = ["--provider", "p", "--model", "m", "--reason", "r", "--background"]  # prints its id
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "publish_provider_selection.py"), *argv],
            env=env,
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    err = done.stderr.decode()
    assert (
        done.returncode == 1 and err == "error: cannot write the output: No space left on device\n"
    )
