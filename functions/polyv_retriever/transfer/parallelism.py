"""How many connections a transfer keeps busy: start with a few, add more while the total still grows.

A long path (a CDN in China to a Lambda in another region) limits each TCP stream, not only the whole path:
one stream may get 4 MiB/s where the path carries 64. Connections are then what the rate is made of, up to
the path's capacity; past it, more only share it (and cost memory, requests and CPU). Where the path or
the CPU is the limit at the start, few suffice. Nobody knows which ahead of time, so it is measured:

1. Start at ``start`` connections (capped by the ceiling: the memory budget / part size, or the settings).
2. Every window (long enough for new connections to have their first bytes), compare the total rate with the
   rate at the previous level. If it grew by at least ``min_gain`` (10 %), the connections added paid off:
   multiply again (x``factor``) up to the ceiling. If not, they did not: go back to the previous level and
   stay there (no overshoot into losses on a path where fewer streams suffice).

Pure logic, fed with measurements (:meth:`Controller.observe`): the engine samples its byte counter; the unit
tests feed synthetic throughputs (tests/unit/test_parallelism.py).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Controller:
    start: int
    ceiling: int
    factor: float = 3.0
    min_gain: float = 0.10

    def __post_init__(self) -> None:
        self.ceiling = max(1, self.ceiling)
        self.target = max(1, min(self.start, self.ceiling))
        self.settled = self.target >= self.ceiling
        self._previous: tuple[int, float] | None = None  # (level, rate) before the last step up
        self.history: list[tuple[int, float]] = []  # (level, rate measured at it), for the result

    def observe(self, rate: float) -> int:
        """The total rate (bytes/s) measured over a window at the current target; returns the next target."""
        self.history.append((self.target, rate))
        if self.settled:
            return self.target
        if self._previous is not None:
            level, before = self._previous
            if rate < before * (1 + self.min_gain):
                # The step did not pay: back to where it was, and stay.
                self.target, self.settled = level, True
                return self.target
        if self.target >= self.ceiling:
            self.settled = True
            return self.target
        self._previous = (self.target, rate)
        self.target = min(self.ceiling, max(self.target + 1, math.ceil(self.target * self.factor)))
        return self.target


class RateMeter:
    """Bytes moved, counted as they arrive (from any thread), and the rate over a window of time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._total = 0

    def add(self, count: int) -> None:
        with self._lock:
            self._total += count

    @property
    def total(self) -> int:
        return self._total

    def mark(self) -> tuple[float, int]:
        return self._clock(), self._total

    def rate_since(self, mark: tuple[float, int]) -> float:
        began, total = mark
        elapsed = self._clock() - began
        return (self._total - total) / elapsed if elapsed > 0 else 0.0


def window_seconds(first_byte_seconds: float) -> tuple[float, float]:
    """(settle, measure): how long new connections get before measuring (their request, its first byte),
    and how long the measurement lasts; both from the first-byte time the probe saw."""
    settle = max(0.2, 1.5 * first_byte_seconds)
    measure = max(0.4, 2 * first_byte_seconds)
    return settle, measure
