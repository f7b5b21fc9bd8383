"""The CLI fuzz, a sample (``make test``): every command, every flag, hostile values, planted
secrets. The long run (>= 10,000 invocations) is ``tests/chaos/test_cli_fuzz_long.py``."""

from __future__ import annotations

import os

from _cli_fuzz import FLAGS, Invocation, invocations, run_invocation
from hypothesis import HealthCheck, example, given, settings

from provider_events.cli import COMMANDS

EXAMPLES = int(os.environ.get("PROVIDER_EVENTS_FUZZ_EXAMPLES", "300"))


def test_every_command_and_flag_is_fuzzed() -> None:
    """The flags are read from the parsers: every command has its flags listed."""
    assert set(FLAGS) == set(COMMANDS)
    assert any(f.option == "--until-idle" for f in FLAGS["consume"])
    assert any(f.option == "--html" for f in FLAGS["report"])


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=False,
)
@given(invocations())
# found by CI: a negative descriptor reached fcntl.flock (ValueError, "internal error")
@example(Invocation("relay", ["--follow", "-f", "--detached", "--lock-fd=-1"], "unset", sasl=False))
def test_cli_invocation_never_crashes_or_leaks(inv: Invocation) -> None:
    """Exit 0, 1 or 2; no traceback; no planted secret printed or written."""
    verdict = run_invocation(inv)
    assert not verdict.problems, (
        f"{inv.describe()} [{verdict.outcome.how}] -> {verdict.problems}: "
        f"stdout={verdict.outcome.stdout[-800:]!r} stderr={verdict.outcome.stderr[-1500:]!r}"
    )


def test_a_sample_runs_as_child_processes() -> None:
    """The same checks through the real entry point (a child process), a few invocations."""
    samples = [
        Invocation("stats", ["--since", "3000000d"], "percent", sasl=True),
        Invocation("migrate", [], "at-sign", sasl=False),
        Invocation("report", ["--html", "<path:fifo>"], "closed", sasl=True),
        Invocation("consume", ["--until-idle", "nan"], "at-sign", sasl=True),
        Invocation("relay", ["--follow"], "unset", sasl=True),
        Invocation("relay", ["--detached", "--lock-fd=-1"], "unset", sasl=False),
        Invocation("hook", ["claude"], "kv", sasl=False),
    ]
    for inv in samples:
        verdict = run_invocation(inv, force_child=True)
        assert not verdict.problems, (inv.describe(), verdict.problems, verdict.outcome.stderr)
