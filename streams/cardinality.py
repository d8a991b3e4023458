"""Cardinality guard: caps on distinct metric names and on distinct series per name, so a name or
label explosion cannot exhaust memory.

- Gauge series of an admitted name beyond `cap` are folded into one overflow series per name
  (`{overflow="true"}`) and counted, so the data is still aggregated (count, sum, min, max stay right)
  and the explosion is visible.
- Counter samples beyond `cap` are refused, not folded: a rate needs each counter's own last sample
  and reset offset (exactly the per-series state the cap bounds), and one rate over the samples of
  different counters reads every switch between them as a reset or a jump.
- Names beyond `max_names` are refused (an overflow series across names would add up unrelated units).

Refused points stay out of every window; they are counted by reason (`refused`) and the worker
dead-letters the message that held them.
"""

from __future__ import annotations

from logtide.streams.derive import GAUGE, Point, series_key

OVERFLOW_LABEL = "overflow"
REFUSED_NAME = "metric_names"  # the name is not admitted: `max_names` names are live
REFUSED_COUNTER = "counter_overflow"  # a counter series beyond `cap` (no overflow series for rates)


def overflow_key(metric: str) -> str:
    """The key of a name's overflow series."""
    return series_key(metric, {OVERFLOW_LABEL: "true"})


class CardinalityGuard:
    """Tracks admitted names and their series keys (at most `max_names` names of at most `cap` series
    each, so memory is bounded too)."""

    def __init__(self, cap: int, max_names: int | None = None) -> None:
        self.cap = cap
        self.max_names = max_names
        self.admitted: dict[str, set[str]] = {}
        self.overflowed: dict[str, int] = {}  # name -> events folded into its overflow series
        self.refused: dict[str, int] = {}  # reason -> events kept out of every window
        self.refused_total = 0
        self.last_refusal = ""  # the reason of the last refusal

    def remember(self, metric: str, key: str) -> None:
        """Re-admit a series restored from state (restarts must not change who is admitted)."""
        keys = self.admitted.setdefault(metric, set())
        if not key.endswith(f"{OVERFLOW_LABEL}=true}}"):
            keys.add(key)

    def forget(self, metric: str, key: str) -> None:
        """A series' state was dropped (evicted): its slot is free, and so is its name's once it has none."""
        keys = self.admitted.get(metric)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.admitted[metric]

    def key_for(self, metric: str, key: str, kind: int = GAUGE) -> str | None:
        """The key a series' points would land on (its own, or its name's overflow series), None when
        they would be refused; admits nothing."""
        keys = self.admitted.get(metric)
        if keys is None:
            return key if self.max_names is None or len(self.admitted) < self.max_names else None
        if key in keys or len(keys) < self.cap:
            return key
        return overflow_key(metric) if kind == GAUGE else None

    def admit(self, p: Point, n: int = 1) -> Point | None:
        """The point itself when its series is admitted, the same value on the overflow series for a
        gauge beyond the cap, None when refused (`n`: the events the point stands for)."""
        keys = self.admitted.get(p.metric)
        if keys is None:
            if self.max_names is not None and len(self.admitted) >= self.max_names:
                return self._refuse(REFUSED_NAME, n)
            keys = self.admitted[p.metric] = set()
        if p.key in keys:
            return p
        if len(keys) < self.cap:
            keys.add(p.key)
            return p
        if p.kind != GAUGE:
            return self._refuse(REFUSED_COUNTER, n)
        self.overflowed[p.metric] = self.overflowed.get(p.metric, 0) + n
        labels = {OVERFLOW_LABEL: "true"}
        return Point(overflow_key(p.metric), p.metric, labels, p.ts_ms, p.value, p.kind, p.ident)

    def _refuse(self, reason: str, n: int) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + n
        self.refused_total += n
        self.last_refusal = reason

    def why(self, reason: str, metric: str, n: int) -> str:
        """A dead letter's explanation of a refusal."""
        if reason == REFUSED_NAME:
            return (f"{REFUSED_NAME}: {n} event(s) of metric {metric!r} kept out of windows: {self.max_names} "
                    f"metric names are live (streams.max_metric_names, per points partition)")
        return (f"{REFUSED_COUNTER}: {n} sample(s) of counter {metric!r} kept out of windows: {self.cap} of its "
                f"series are live (streams.max_series_per_metric); counters get no overflow series, since a "
                f"rate over different counters' samples would be wrong")

    def series_count(self) -> int:
        return sum(len(v) for v in self.admitted.values())

    def names_count(self) -> int:
        return len(self.admitted)
