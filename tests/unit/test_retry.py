"""The one retry policy: exponential, capped, jittered downwards; and who uses it."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

import provider_events
from provider_events._retry import Backoff

SRC = Path(provider_events.__file__).parent


def test_delays_double_up_to_the_maximum_and_never_exceed_it() -> None:
    """Delay n lies in [d * (1 - jitter), d] with d = min(maximum, initial * 2 ** (n - 1))."""
    policy = Backoff(0.2, 5.0, jitter=0.3)
    for attempt in range(1, 200):
        ceiling = min(5.0, 0.2 * 2 ** min(attempt - 1, 64))
        for _ in range(20):
            delay = policy.delay(attempt)
            assert ceiling * 0.7 <= delay <= ceiling


def test_jitter_spreads_the_delays() -> None:
    """Processes that failed together do not retry in lockstep."""
    delays = {round(Backoff(1.0, 1.0).delay(1), 6) for _ in range(50)}
    assert len(delays) > 10
    assert Backoff(1.0, 1.0, jitter=0.0).delay(7) == 1.0


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert Backoff(0.1, 3.0, jitter=0.0).delay(10**9) == 3.0
    assert list(itertools.islice(Backoff(0.1, 0.4, jitter=0.0).delays(), 4)) == [
        0.1,
        0.2,
        0.4,
        0.4,
    ]


@pytest.mark.parametrize(
    "args", [(-1.0, 1.0), (2.0, 1.0), (0.1, 1.0, 0.5), (0.1, 1.0, 2.0, 1.5), (0.1, 1.0, 2.0, -0.1)]
)
def test_nonsense_policies_are_refused(args: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        Backoff(*args)


def test_relay_consumer_outbox_and_producer_use_it() -> None:
    """The loops that retry import the shared policy instead of their own arithmetic."""
    for module in (
        "publish/_relay.py",
        "ingest/_consumer.py",
        "publish/_outbox.py",
        "publish/_producer.py",
        "store/_migrate.py",
    ):
        tree = ast.parse((SRC / module).read_text())
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "provider_events._retry"
            for alias in node.names
        }
        assert imported == {"Backoff"}, module


def test_environment_is_read_only_in_settings() -> None:
    """No module but settings.py touches os.environ or os.getenv, except the lean enqueue of
    the hook / ``--background`` path, which may not import settings (its start-up budget) and
    whose reading is checked against ``load_settings`` by test_enqueue_differential.py."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "settings.py" or path.relative_to(SRC).as_posix() == "publish/_enqueue.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
                and node.attr in ("environ", "getenv", "environb", "putenv")
            ):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == []
