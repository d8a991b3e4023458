"""Cardinality guard: a cap on distinct series per metric, so a label explosion cannot exhaust memory.

Series beyond the cap are folded into one overflow series per metric (`{overflow="true"}`) and
counted, so the data is still aggregated (totals stay right) and the explosion is visible.
"""

from __future__ import annotations

from logtide.streams.derive import Point, series_key

OVERFLOW_LABEL = "overflow"


class CardinalityGuard:
    """Tracks admitted series keys per metric (at most `cap` each, so memory is bounded too)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.admitted: dict[str, set[str]] = {}
        self.overflowed: dict[str, int] = {}

    def remember(self, metric: str, key: str) -> None:
        """Re-admit a series restored from state (restarts must not change who is admitted)."""
        if not key.endswith(f"{OVERFLOW_LABEL}=true}}"):
            self.admitted.setdefault(metric, set()).add(key)

    def admit(self, p: Point) -> Point:
        """The point itself when its series is admitted, else the same value on the overflow series."""
        keys = self.admitted.get(p.metric)
        if keys is None:
            keys = self.admitted[p.metric] = set()
        if p.key in keys:
            return p
        if len(keys) < self.cap:
            keys.add(p.key)
            return p
        self.overflowed[p.metric] = self.overflowed.get(p.metric, 0) + 1
        labels = {OVERFLOW_LABEL: "true"}
        return Point(series_key(p.metric, labels), p.metric, labels, p.ts_ms, p.value, p.kind, p.ident)

    def series_count(self) -> int:
        return sum(len(v) for v in self.admitted.values())
