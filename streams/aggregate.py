"""Views across series at the same window end: `histogram_quantile` per histogram and `op by (...)` rules.

Both need several label-true series' windows that end together: the buckets of one histogram (its
labels without `le`), or every series a rule selects. Closed windows are collected per (view, group,
window end) and a group is emitted once the stream time has passed its end by `hold_ms` (by then the
windows of every series that had data in it closed), or at `flush`. Pure: no I/O.

Output aggregates carry the combined value in `mean` (and p50/p90/p99), the members' count in `count`,
their sum, min and max in the usual fields, so a detect rule on `mean` watches the combined value.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field

from logtide.schemas import EventInfo, Series, Stats, Window, WindowAggregate, stable_id
from logtide.streams.config import AggregateRule, MetricsConfig
from logtide.streams.derive import series_key
from logtide.streams.histogram import histogram_quantile, parse_le

_BUCKET_RATE = "_bucket:rate"


@dataclass(slots=True)
class _Group:
    metric: str
    labels: dict[str, str]
    window: Window
    values: dict[str, float] = field(default_factory=dict)  # member key (or le) -> value
    rule: AggregateRule | None = None


def _combine(op: str, values: list[float]) -> float:
    if op == "sum":
        return math.fsum(values)
    if op == "max":
        return max(values)
    if op == "min":
        return min(values)
    return math.fsum(values) / len(values)


def quantile_metric(bucket_rate_metric: str) -> str:
    """`x_bucket:rate1m` -> `x:histogram_quantile_rate1m`."""
    base, _, ops = bucket_rate_metric.partition(":")
    return f"{base.removesuffix('_bucket')}:histogram_quantile_{ops}"


def derived_aggregate(metric: str, labels: dict[str, str], window: Window, value: float,
                      members: list[float]) -> WindowAggregate:  # fmt: skip
    """A WindowAggregate for a combined value (see the module docstring for the field meanings)."""
    key = series_key(metric, labels)
    end = window.end
    return WindowAggregate(
        timestamp=end,
        event=EventInfo(id=stable_id("window_aggregate", key, window.start.isoformat(), end.isoformat()),
                        kind="metric"),
        logtide=WindowAggregate.meta(),
        labels=dict(labels),
        series=Series(metric=metric, key=key, labels=dict(labels)),
        window=window,
        stats=Stats(count=len(members), sum=math.fsum(members), min=min(members), max=max(members),
                    mean=value, p50=value, p90=value, p99=value),
    )


class CrossSeries:
    """Collects closed windows into histogram and rule groups; emits the groups that are complete."""

    def __init__(self, cfg: MetricsConfig, hold_ms: int) -> None:
        self.rules = list(cfg.aggregate)
        self.quantiles = list(cfg.histogram_quantiles)
        self.hold_ms = hold_ms
        self.groups: dict[tuple, _Group] = {}
        self.bad_buckets = 0  # `le` labels that are not numbers (counted, skipped)

    def add(self, agg: WindowAggregate) -> None:
        metric = agg.series.metric
        labels = agg.series.labels
        end_ms = int(agg.window.end.timestamp() * 1000)
        if self.quantiles and _BUCKET_RATE in metric and "le" in labels:
            rest = {k: v for k, v in labels.items() if k != "le"}
            gk = ("h", metric, tuple(sorted(rest.items())), end_ms)
            g = self.groups.get(gk)
            if g is None:
                g = self.groups[gk] = _Group(metric, rest, agg.window)
            g.values[labels["le"]] = agg.stats.mean
        for i, rule in enumerate(self.rules):
            if not fnmatch.fnmatchcase(metric, rule.metric):
                continue
            by = {k: labels[k] for k in rule.by if k in labels}
            gk = ("r", i, metric, tuple(sorted(by.items())), end_ms)
            g = self.groups.get(gk)
            if g is None:
                g = self.groups[gk] = _Group(metric, by, agg.window, rule=rule)
            g.values[agg.series.key] = float(getattr(agg.stats, rule.stat))

    def ready(self, stream_time_ms: int) -> list[WindowAggregate]:
        """Aggregates of the groups whose window ended more than `hold_ms` before stream time."""
        due = [k for k in self.groups if k[-1] + self.hold_ms <= stream_time_ms]
        return self._emit(sorted(due, key=lambda k: k[-1]))

    def flush(self) -> list[WindowAggregate]:
        return self._emit(sorted(self.groups, key=lambda k: k[-1]))

    def _emit(self, keys: list[tuple]) -> list[WindowAggregate]:
        out: list[WindowAggregate] = []
        for k in keys:
            g = self.groups.pop(k)
            vals = [v for v in g.values.values() if math.isfinite(v)]
            if not vals:
                continue
            if g.rule is not None:
                op = g.rule.op or "sum"
                out.append(derived_aggregate(g.rule.output_name(g.metric), g.labels, g.window,
                                             _combine(op, vals), vals))  # fmt: skip
                continue
            try:
                buckets = [(parse_le(le), v) for le, v in g.values.items()]
            except ValueError:
                self.bad_buckets += 1
                continue
            name = quantile_metric(g.metric)
            for q in self.quantiles:
                value = histogram_quantile(q, buckets)
                if math.isfinite(value):
                    out.append(derived_aggregate(name, {**g.labels, "quantile": f"{q:g}"}, g.window, value, vals))
        return out
