"""Shared benchmark plumbing: the result row, timing helpers and the printed table."""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Comparison:
    """One measured figure of ours against a peer's, with the target ratio."""

    name: str
    ours: float
    peer: float
    unit: str
    peer_name: str
    #: "higher" when bigger is better (throughput), "lower" when smaller is (latency).
    better: str = "higher"
    target: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.ours / self.peer if self.peer else float("inf")

    @property
    def meets_target(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio >= self.target if self.better == "higher" else self.ratio <= self.target


@dataclass
class Context:
    """What every benchmark gets: where the services are and how big to go."""

    bootstrap: str
    database_url: str | None
    scale: float = 1.0

    def n(self, full: int, minimum: int = 100) -> int:
        """``full`` scaled by ``--scale`` (CI smoke runs use a small scale)."""
        return max(minimum, int(full * self.scale))


def median_wall(fn: Callable[[], Any], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def peak_rss_mib(children: bool = False) -> float:
    """Peak resident memory (MiB) of this process, or of its waited-for children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_maxrss / 1024.0


def env_with(**values: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(values)
    return env
