"""Latencies as a mergeable histogram: buckets 1 % wide on a log scale.

The watch suite's client processes see up to millions of deliveries a run; each sends
its counts per bucket (a few hundred numbers) instead of every sample, and the sum of
their histograms gives percentiles within 1 % of the exact ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_FLOOR_MS = 0.01  # everything below falls into bucket 0
_GROWTH = 1.01
_LOG_GROWTH = math.log(_GROWTH)


@dataclass(slots=True)
class Histogram:
    counts: dict[int, int] = field(default_factory=dict)
    total: int = 0
    max_ms: float = 0.0

    def add(self, milliseconds: float) -> None:
        bucket = (
            int(math.log(milliseconds / _FLOOR_MS) / _LOG_GROWTH) + 1
            if milliseconds > _FLOOR_MS
            else 0
        )
        self.counts[bucket] = self.counts.get(bucket, 0) + 1
        self.total += 1
        self.max_ms = max(self.max_ms, milliseconds)

    def percentile_ms(self, fraction: float) -> float:
        """Nearest rank, as the upper edge of its bucket (0.0 when empty)."""
        if not self.total:
            return 0.0
        rank = max(1, math.ceil(fraction * self.total))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return min(_FLOOR_MS * _GROWTH**bucket, self.max_ms)
        return self.max_ms

    def to_json(self) -> dict[str, object]:
        return {"counts": {str(b): n for b, n in self.counts.items()}, "max_ms": self.max_ms}

    @classmethod
    def from_json(cls, fields: Mapping[str, object]) -> Histogram:
        counts = fields["counts"]
        assert isinstance(counts, dict)
        histogram = cls({int(b): int(n) for b, n in counts.items()})
        histogram.total = sum(histogram.counts.values())
        histogram.max_ms = float(str(fields["max_ms"]))
        return histogram

    @classmethod
    def merged(cls, parts: Iterable[Histogram]) -> Histogram:
        whole = cls()
        for part in parts:
            for bucket, n in part.counts.items():
                whole.counts[bucket] = whole.counts.get(bucket, 0) + n
            whole.total += part.total
            whole.max_ms = max(whole.max_ms, part.max_ms)
        return whole
