"""Small statistics: medians, percentiles of samples, and a latency histogram."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final


def median(values: Sequence[float]) -> float:
    """The median; raises ``ValueError`` for no values."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in 0..1); raises ``ValueError`` for none."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class Histogram:
    """Latencies in buckets 1% wide (log scale) from 1 µs: constant memory, ~1% precision."""

    _GROWTH: Final = 1.01
    _LOG_GROWTH: Final = math.log(1.01)

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self.count = 0
        self.maximum = 0.0

    def record(self, seconds: float) -> None:
        micros = max(seconds * 1e6, 1.0)
        bucket = int(math.log(micros) / self._LOG_GROWTH)
        self._counts[bucket] = self._counts.get(bucket, 0) + 1
        self.count += 1
        self.maximum = max(self.maximum, seconds)

    def merge(self, other: Histogram) -> None:
        for bucket, n in other._counts.items():
            self._counts[bucket] = self._counts.get(bucket, 0) + n
        self.count += other.count
        self.maximum = max(self.maximum, other.maximum)

    def percentile(self, fraction: float) -> float:
        """Seconds at or below which ``fraction`` of the recorded latencies fall (0 if none)."""
        if not self.count:
            return 0.0
        wanted = max(1, math.ceil(fraction * self.count))
        seen = 0
        for bucket in sorted(self._counts):
            seen += self._counts[bucket]
            if seen >= wanted:
                # the bucket's upper edge, but never above what was actually seen
                return min(self._GROWTH ** (bucket + 1) / 1e6, self.maximum)
        return self.maximum
