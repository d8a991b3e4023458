"""Prometheus' `increase`/`rate` of a counter over one window, from the samples inside it (pure).

The window holds the counter's reset-adjusted cumulative values (never decreasing: a reset adds the
value before it, as Prometheus' range functions do), so the increase between its first and last
sample is `max - min`. Like Prometheus' `extrapolatedRate`, that increase is extrapolated to the
window's edges when the first/last samples are within 1.1 average intervals of them (else by half an
interval), and never below the counter's zero. So a window's rate is what `increase(x[W]) / W` reads
at the window's end over the same samples; fewer than two samples give no value, as in Prometheus.
"""

from __future__ import annotations


def extrapolated_increase(  # noqa: PLR0917 - Prometheus' own inputs, named as there
    first_ms: int, last_ms: int, first_value: float, delta: float, count: int, start_ms: int, end_ms: int
) -> float | None:
    """`increase` over [start, end) from `count` samples between first and last (None if < 2)."""
    if count < 2 or last_ms <= first_ms:
        return None
    sampled = (last_ms - first_ms) / 1000.0
    to_start = (first_ms - start_ms) / 1000.0
    to_end = (end_ms - last_ms) / 1000.0
    avg = sampled / (count - 1)
    if delta > 0 and first_value >= 0:
        to_zero = sampled * (first_value / delta)
        to_start = min(to_start, to_zero)
    threshold = avg * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else avg / 2
    interval += to_end if to_end < threshold else avg / 2
    return delta * (interval / sampled)
