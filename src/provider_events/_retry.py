"""The one retry policy: exponential backoff with jitter.

Every loop that waits and tries again (the relay's delivery attempts, the consumer's database
and offset-commit retries, the outbox's WAL switch, the producer's full-queue wait, the
migration lock) asks a :class:`Backoff` how long to wait before attempt ``n``. The delay doubles
from ``initial`` up to ``maximum``; jitter draws each delay from ``[d * (1 - jitter), d]`` so
processes that failed together (every hook process after a broker restart, every consumer of
a group after a database failover) do not retry in lockstep. The upper bound never exceeds the
unjittered delay, so a bound a caller reasons about (``maximum``) still holds.

Import-light (the hook path imports the outbox, which uses it): the jitter draws from
``os.urandom`` rather than importing :mod:`random` and its hashlib dependency.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

__all__ = ["Backoff"]

#: Beyond this exponent every delay is ``maximum`` anyway (and 2.0 ** 1100 overflows).
_MAX_EXPONENT = 64


def _uniform() -> float:
    """A uniform draw from [0, 1) with 53 random bits."""
    return (int.from_bytes(os.urandom(7), "big") >> 3) / (1 << 53)


class Backoff:
    """Delays for retry attempts 1, 2, 3, ...: ``initial * factor ** (n - 1)``, capped at
    ``maximum``, each shortened by a random fraction of at most ``jitter``.

    A plain slotted class, not a dataclass: building a dataclass costs the hook path's import
    more than this whole module.
    """

    __slots__ = ("factor", "initial", "jitter", "maximum")

    def __init__(
        self, initial: float, maximum: float, factor: float = 2.0, jitter: float = 0.2
    ) -> None:
        if not (0.0 <= initial <= maximum and factor >= 1.0):
            raise ValueError(
                f"need 0 <= initial <= maximum and factor >= 1, got {initial}, {maximum}, {factor}"
            )
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter must be within [0, 1], got {jitter}")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter

    def __repr__(self) -> str:
        return (
            f"Backoff(initial={self.initial}, maximum={self.maximum}, factor={self.factor}, "
            f"jitter={self.jitter})"
        )

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (1 for the first retry)."""
        exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
        ceiling = min(self.maximum, self.initial * self.factor**exponent)
        return ceiling * (1.0 - self.jitter * _uniform())

    def delays(self) -> Iterator[float]:
        """The delays of attempts 1, 2, 3, ... (endless: the caller bounds the loop)."""
        attempt = 0
        while True:
            attempt += 1
            yield self.delay(attempt)
