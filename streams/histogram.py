"""`histogram_quantile` over cumulative buckets, the way Prometheus computes it (pure).

Buckets are (upper bound `le`, cumulative count or rate). The rank `q * total` is found in the first
bucket whose cumulative value reaches it, and the value is interpolated linearly within that bucket,
assuming observations spread evenly between its lower and upper bound. As in Prometheus: the lowest
bucket's lower bound is 0 (when its upper bound is positive); a rank in the +Inf bucket answers the
highest finite bound; counts that decrease with `le` (scrapes not atomic) are made monotonic; no +Inf
bucket, or fewer than two buckets, or a zero total, answers NaN; q < 0 is -Inf and q > 1 is +Inf.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def parse_le(le: str) -> float:
    """The `le` label as a float (`+Inf` included); ValueError for anything else."""
    return math.inf if le in ("+Inf", "Inf", "+inf", "inf") else float(le)


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """The q-quantile of cumulative `(le, count)` buckets (any order)."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    bs = sorted(buckets)
    if len(bs) < 2 or not math.isinf(bs[-1][0]):
        return math.nan
    counts: list[float] = []
    for _, c in bs:  # monotonic fix-up
        counts.append(max(c, counts[-1]) if counts else c)
    total = counts[-1]
    if total <= 0 or math.isnan(total):
        return math.nan
    rank = q * total
    i = next(j for j, c in enumerate(counts) if c >= rank)
    if i == len(bs) - 1:
        return bs[-2][0]
    upper = bs[i][0]
    if i == 0 and upper <= 0:
        return upper
    lower, below = (0.0, 0.0) if i == 0 else (bs[i - 1][0], counts[i - 1])
    in_bucket = counts[i] - below
    if in_bucket <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / in_bucket


def bucket_index(value: float, bounds: Iterable[float]) -> int:
    """Index of the bucket (sorted upper bounds) a value falls in: for "within one bucket" comparisons."""
    for i, b in enumerate(sorted(bounds)):
        if value <= b:
            return i
    return -1
