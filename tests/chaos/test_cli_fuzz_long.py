"""The CLI fuzz, long form (``make chaos``): at least 10,000 invocations of every command with
every flag, hostile values and planted secrets (engine: ``tests/property/_cli_fuzz.py``).

Every failing invocation is collected (not only the first), and the figures (invocations,
children, exit codes, seconds per command) are printed for RELIABILITY.md.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "property"))
import _cli_fuzz as fuzz

pytestmark = pytest.mark.slow

INVOCATIONS = int(os.environ.get("PROVIDER_EVENTS_FUZZ_LONG", "10000"))


def test_ten_thousand_cli_invocations_never_crash_or_leak() -> None:
    """>= 10,000 invocations: exit 0/1/2, no traceback, no planted secret printed or written."""
    failures: list[str] = []
    started = time.perf_counter()

    @settings(
        max_examples=INVOCATIONS,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(fuzz.invocations())
    def one(inv: fuzz.Invocation) -> None:
        verdict = fuzz.run_invocation(inv)
        done = fuzz.STATS["invocations"]
        if done % 500 == 0:
            print(
                f"  {done} invocations, {time.perf_counter() - started:.0f} s, "
                f"{len(failures)} failing",
                file=sys.stderr,
                flush=True,
            )
        if verdict.problems:
            failures.append(
                f"{inv.describe()} [{verdict.outcome.how}] -> {verdict.problems}: "
                f"{verdict.outcome.stderr[-400:]!r}"
            )

    before = fuzz.STATS["invocations"]
    one()
    ran = fuzz.STATS["invocations"] - before
    print(f"\ncli fuzz: {ran} invocations in {time.perf_counter() - started:.0f} s")
    print("  " + ", ".join(f"{k}={v}" for k, v in sorted(fuzz.STATS.items())))
    print("  seconds: " + ", ".join(f"{k}={v:.0f}" for k, v in fuzz.SECONDS.most_common(8)))
    assert ran >= INVOCATIONS
    assert not failures, "\n".join(failures[:20]) + f"\n({len(failures)} failing invocations)"
