"""Derive: turn log events and metric samples into points of named series.

From logs: event counts per service and level, an error ratio (mean of 0/1 per event, so a window's
mean *is* the error rate and a quiet window is not mistaken for a healthy one), HTTP responses per
status class, and request latency from access logs; logs group by `streams.window.group_by`.

From metric samples, as in Prometheus' data model: a series is the metric name plus its *full* label
set (never averaged over labels not named somewhere; explicit `sum by`/`max by`/`avg by` rules are in
`streams/aggregate.py`). Kinds come from the source: gauges and untyped samples as they are (summary
quantiles keep their `quantile` label); counters, histogram `_bucket`/`_sum`/`_count` and summary
`_sum`/`_count` become per-second rates named `<name without _total>:rate<window>` (the recording-rule
convention, e.g. `node_cpu_seconds:rate1m`), computed per window the way Prometheus' `increase`/`rate`
are (streams/prom_rate.py), with resets (a smaller value than the last) read as a restart from zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from logtide.schemas import LogEvent, MetricSample, MetricType
from logtide.streams.enrich import is_error

GAUGE = 0
COUNTER = 1
STALE = 2  # a staleness marker: the series ended (its counter state is dropped, its windows close)
STALE_FLAG = "stale"


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


def duration_suffix(seconds: float) -> str:
    """Prometheus' duration spelling of a window size: 60 -> 1m, 90 -> 90s, 3600 -> 1h."""
    ms = round(seconds * 1000)
    for unit, n in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % n == 0:
            return f"{ms // n}{unit}"
    return f"{ms}ms"


_RATE_SUFFIXES = ("_bucket", "_sum", "_count")


def is_rate(kind: MetricType, name: str) -> bool:
    """Whether samples of this kind and name are cumulative (read as rates), as Prometheus' types say."""
    if kind is MetricType.counter:
        return not name.endswith("_created")
    if kind is MetricType.histogram:
        return name.endswith(_RATE_SUFFIXES)
    if kind is MetricType.summary:
        return name.endswith(("_sum", "_count"))
    return False


def rate_name(name: str, window_s: float) -> str:
    """`x_total` -> `x:rate1m`; `x_bucket` -> `x_bucket:rate1m` (what a Prometheus user would record)."""
    base = name[:-6] if name.endswith("_total") else name
    return f"{base}:rate{duration_suffix(window_s)}"


def sample_labels(s: MetricSample) -> dict[str, str]:
    """A sample's full label set; `host` (the shipper's) is added where no `instance` names the source."""
    labels = dict(s.labels)
    if s.host and "instance" not in labels:
        labels.setdefault("host", s.host.name)
    if s.service:
        labels.setdefault("service", s.service.name)
    return labels


class Deriver:
    """Points from events: logs grouped by `group_by`, metric samples label-true."""

    _KEYS_MAX = 100_000  # cached series keys (bounded: label values come from the data)

    def __init__(self, group_by: list[str], window_s: float = 60.0) -> None:
        self.group_by = list(group_by)
        self.window_s = window_s
        self._rate_names: dict[str, str] = {}
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
        """A gauge point, a counter point that `CounterRates` turns into a rate, or a staleness marker."""
        labels = sample_labels(s)
        name = s.metric.name
        kind = GAUGE
        if is_rate(s.metric.type, name):
            kind = COUNTER
            metric = self._rate_names.get(name)
            if metric is None:
                if len(self._rate_names) >= self._KEYS_MAX:
                    self._rate_names.clear()
                metric = self._rate_names[name] = rate_name(name, self.window_s)
            name = metric
        if STALE_FLAG in s.logtide.flags:
            kind = STALE
        return Point(series_key(name, labels), name, labels, ts_ms(s), s.metric.value, kind)


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
    """Last sample (and reset offset) of every raw counter; state is a plain dict for tables."""

    def __init__(self, state: dict[str, list[Any]] | None = None) -> None:
        st = state or {}
        self.last: dict[str, tuple[int, float]] = {k: (int(v[0]), float(v[1])) for k, v in st.items()}
        self.offset: dict[str, float] = {k: float(v[2]) for k, v in st.items() if len(v) > 2 and v[2]}
        self.resets = 0

    def cumulative(self, p: Point) -> Point | None:
        """The counter point with its reset-adjusted value (never decreasing: a reset adds the value
        before it, as Prometheus' range functions count it); None for a sample not newer than the last."""
        ident = p.ident or p.key
        prev = self.last.get(ident)
        off = self.offset.get(ident, 0.0)
        if prev is not None:
            if p.ts_ms <= prev[0]:
                return None
            if p.value < prev[1]:
                off += prev[1]
                self.offset[ident] = off
                self.resets += 1
        self.last[ident] = (p.ts_ms, p.value)
        return Point(p.key, p.metric, p.labels, p.ts_ms, p.value + off, COUNTER, p.ident)

    def apply(self, p: Point) -> Point | None:
        """The rate point for a counter point (None for the first sample), gauges pass through; a
        staleness marker forgets the last sample (no rate across a series' end)."""
        if p.kind == STALE:
            self.last.pop(p.ident or p.key, None)
            return None
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
        return {k: [t, v, self.offset.get(k, 0.0)] for k, (t, v) in self.last.items()}
