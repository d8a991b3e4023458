"""Derive: turn log events and metric samples into points of named series.

From logs: event counts per service and level, an error ratio (mean of 0/1 per event, so a window's
mean *is* the error rate and a quiet window is not mistaken for a healthy one), HTTP responses per
status class, and request latency from access logs. From metric samples: gauges as they are, counters
as per-second rates, with counter resets (a smaller value than the last) read as a restart from zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from logtide.schemas import LogEvent, MetricSample, MetricType
from logtide.streams.enrich import is_error

GAUGE = 0
COUNTER = 1


@dataclass(slots=True)
class Point:
    """One value of one series; `ident` names the raw counter a rate comes from (None for gauges)."""

    key: str
    metric: str
    labels: dict[str, str]
    ts_ms: int
    value: float
    kind: int = GAUGE
    ident: str | None = None

    def to_bytes(self) -> bytes:
        return orjson.dumps([self.key, self.metric, self.labels, self.ts_ms, self.value, self.kind, self.ident])

    @classmethod
    def from_bytes(cls, data: bytes) -> Point:
        k, m, lab, ts, v, kind, ident = orjson.loads(data)
        return cls(k, m, lab, ts, v, kind, ident)


def series_key(metric: str, labels: dict[str, str]) -> str:
    """Canonical series id: `metric{a=1,b=2}` with labels sorted; the partition key and state key."""
    if not labels:
        return metric
    return metric + "{" + ",".join(f"{k}={labels[k]}" for k in sorted(labels)) + "}"


def ts_ms(ev: LogEvent | MetricSample) -> int:
    """Event time in integer milliseconds since the epoch."""
    return int(ev.timestamp.timestamp() * 1000)


def group_labels(ev: LogEvent | MetricSample, group_by: list[str]) -> dict[str, str]:
    """The series dimensions of an event: `service`, `host`, or a label name."""
    out: dict[str, str] = {}
    for dim in group_by:
        if dim == "service":
            v = ev.service.name if ev.service else None
        elif dim == "host":
            v = ev.host.name if ev.host else None
        else:
            v = ev.labels.get(dim)
        if v is not None:
            out[dim] = v
    return out


class Deriver:
    """Points from events, for a fixed choice of series dimensions."""

    _KEYS_MAX = 100_000  # cached series keys (bounded: label values come from the data)

    def __init__(self, group_by: list[str]) -> None:
        self.group_by = list(group_by)
        self._keys: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

    def _point(self, metric: str, base: dict[str, str], t: int, v: float, **extra: str) -> Point:
        labels = {**base, **extra} if extra else base
        ck = (metric, tuple(labels.items()))
        key = self._keys.get(ck)
        if key is None:
            if len(self._keys) >= self._KEYS_MAX:
                self._keys.clear()
            key = self._keys[ck] = series_key(metric, labels)
        return Point(key, metric, labels, t, v)

    def from_log(self, ev: LogEvent) -> list[Point]:
        """Count, error ratio, status class and latency points of one (enriched) log event."""
        base = group_labels(ev, self.group_by)
        t = ts_ms(ev)
        level = ev.log.level if ev.log and ev.log.level else "unknown"
        attrs = ev.attributes
        pts = [
            self._point("log.events", base, t, 1.0, level=level),
            self._point("log.error_ratio", base, t, 1.0 if is_error(ev) else 0.0),
        ]
        cls = attrs.get("http.status_class")
        if cls is not None:
            pts.append(self._point("http.responses", base, t, 1.0, status_class=str(cls)))
            ms = attrs.get("duration_ms")
            if isinstance(ms, int | float):
                pts.append(self._point("http.request.duration_ms", base, t, float(ms)))
        return pts

    def from_sample(self, s: MetricSample) -> Point:
        """A gauge point, or a counter point that `CounterRates` turns into a rate."""
        base = group_labels(s, self.group_by)
        t = ts_ms(s)
        if s.metric.type is MetricType.counter:
            metric = s.metric.name + ":rate"
            ident_labels: dict[str, Any] = dict(s.labels)
            if s.host:
                ident_labels["host"] = s.host.name
            if s.service:
                ident_labels["service"] = s.service.name
            return Point(series_key(metric, base), metric, base, t, s.metric.value, COUNTER,
                         series_key(s.metric.name, ident_labels))
        return Point(series_key(s.metric.name, base), s.metric.name, base, t, s.metric.value)


def counter_rate(prev: tuple[int, float] | None, t_ms: int, value: float) -> tuple[tuple[int, float] | None, float | None, bool]:
    """(new last sample, rate per second or None, reset seen) for one counter sample.

    A decrease is a reset: the counter restarted from zero, so the increase is the new value itself
    (Prometheus' `rate` reads it the same way). A sample not newer than the last one is ignored.
    """
    if prev is None:
        return (t_ms, value), None, False
    t0, v0 = prev
    if t_ms <= t0:
        return prev, None, False
    dt = (t_ms - t0) / 1000.0
    if value < v0:
        return (t_ms, value), value / dt, True
    return (t_ms, value), (value - v0) / dt, False


class CounterRates:
    """Last sample of every raw counter; state is a plain dict for tables."""

    def __init__(self, state: dict[str, list[Any]] | None = None) -> None:
        self.last: dict[str, tuple[int, float]] = {k: (int(v[0]), float(v[1])) for k, v in (state or {}).items()}
        self.resets = 0

    def apply(self, p: Point) -> Point | None:
        """The rate point for a counter point (None for the first sample), gauges pass through."""
        if p.kind != COUNTER:
            return p
        ident = p.ident or p.key
        new, rate, reset = counter_rate(self.last.get(ident), p.ts_ms, p.value)
        if new is not None:
            self.last[ident] = new
        if reset:
            self.resets += 1
        if rate is None:
            return None
        return Point(p.key, p.metric, p.labels, p.ts_ms, rate)

    def to_plain(self) -> dict[str, list[Any]]:
        return {k: [t, v] for k, (t, v) in self.last.items()}
