"""The operators wired in order, as plain objects: the one core both the Faust worker and the embedded
runner drive.

    stateless (any worker, any order):   raw bytes --Validate--> event --Enrich--> enriched event
                                          enriched event / sample --Derive--> points
    stateful (one owner per series):      point --Cardinality--> --CounterRate--> --Window--> closed
                                          closed window --Detect--> aggregate (+ anomaly)

`Stateless` holds the first half, `Stateful` the second; `Stateful` state is one bytes value per
series (`export` / `restore`), which is what a Faust table stores and a changelog replays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from schemas import (
    Anomaly,
    DeadLetter,
    DeadLetterSource,
    DecodeError,
    EventInfo,
    LogEvent,
    MetricSample,
    Series,
    Stats,
    Window,
    WindowAggregate,
    dead_letter,
    stable_id,
)
from streams.cardinality import CardinalityGuard
from streams.config import StreamsConfig
from streams.derive import CounterRates, Deriver, Point
from streams.detect import Detection, SeriesDetector
from streams.enrich import Enricher, GeoReader
from streams.validate import SkewPolicy, is_skewed, validate
from streams.windowing import Closed, SeriesWindows, WindowAggregator, WindowSpec


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(slots=True)
class LogResult:
    """What one raw log record became: a dead letter, or an enriched event and its points."""

    dead: DeadLetter | None = None
    event: LogEvent | None = None
    points: list[Point] = field(default_factory=list)
    skew: str | None = None


@dataclass(slots=True)
class MetricResult:
    dead: DeadLetter | None = None
    sample: MetricSample | None = None
    point: Point | None = None
    skew: str | None = None


class Stateless:
    """Validate, enrich, derive: no state, so it runs wherever the record is read."""

    def __init__(self, cfg: StreamsConfig, geo: GeoReader | None = None) -> None:
        self.cfg = cfg
        self.policy = SkewPolicy(cfg.max_future_skew_seconds, cfg.max_past_skew_seconds)
        self.enrich = Enricher(cfg, geo)
        self.derive = Deriver(cfg.window.group_by)

    def log(self, raw: bytes, now: datetime, source: DeadLetterSource | None = None) -> LogResult:
        """Skewed events are enriched and forwarded, flagged, but produce no points (kept out of windows)."""
        ev, skew = validate(raw, LogEvent, now, self.policy, source or DeadLetterSource(stage="validate"))
        if isinstance(ev, DeadLetter):
            return LogResult(dead=ev)
        ev = self.enrich(ev)
        pts = self.derive.from_log(ev) if self.cfg.derive.enabled and not is_skewed(ev) else []
        return LogResult(event=ev, points=pts, skew=skew)

    def metric(self, raw: bytes, now: datetime, source: DeadLetterSource | None = None) -> MetricResult:
        s, skew = validate(raw, MetricSample, now, self.policy, source or DeadLetterSource(stage="validate"))
        if isinstance(s, DeadLetter):
            return MetricResult(dead=s)
        return MetricResult(sample=s, point=None if is_skewed(s) else self.derive.from_sample(s), skew=skew)


@dataclass(slots=True)
class SeriesState:
    """Everything kept per series: identity, open windows, raw counters, detector and context."""

    metric: str
    labels: dict[str, str]
    windows: SeriesWindows
    counters: CounterRates
    detector: SeriesDetector | None = None


def late_dead_letter(p: Point, stream_time_ms: int, lateness_ms: int, topic: str | None = None) -> DeadLetter:
    """A late point, kept with the reason, for the dead-letter topic."""
    err = DecodeError(
        "late_event",
        f"event time {_utc(p.ts_ms).isoformat()} is behind stream time {_utc(stream_time_ms).isoformat()} "
        f"by more than the allowed lateness ({lateness_ms} ms) for every window holding it",
        "@timestamp",
    )
    return dead_letter(p.to_bytes(), err, DeadLetterSource(stage="window", topic=topic, expected_schema="point"))


class Stateful:
    """Cardinality guard, counter rates, event-time windows and detection over the points of a set of
    series that share a stream time (one partition under Faust; everything in the embedded runner)."""

    def __init__(self, cfg: StreamsConfig) -> None:
        self.cfg = cfg
        w = cfg.window
        self.spec = WindowSpec(w.size_ms, w.step_ms, w.lateness_ms, w.relative_accuracy)
        self.windows = WindowAggregator(self.spec)
        self.guard = CardinalityGuard(cfg.max_series_per_metric)
        self.detection = Detection(cfg.detect)
        self.series: dict[str, SeriesState] = {}
        self.late = 0

    # --- state ---------------------------------------------------------------------------------
    def export(self, key: str) -> bytes:
        """One series' state as bytes (a table value)."""
        s = self.series[key]
        return orjson.dumps({
            "m": s.metric, "l": s.labels, "w": s.windows.to_plain(), "c": s.counters.to_plain(),
            "d": s.detector.to_plain() if s.detector else None, "st": self.windows.stream_time_ms,
        })

    def restore(self, key: str, blob: bytes) -> None:
        """Install a series' state from `export` output (after a restart or a rebalance)."""
        d = orjson.loads(blob)
        sw = SeriesWindows.from_plain(self.spec, d["w"])
        det = self.detection.restore(d["d"]) if d.get("d") else None
        self.series[key] = SeriesState(d["m"], d["l"], sw, CounterRates(d["c"]), det)
        self.windows.put(key, sw)
        self.windows.observe_time(int(d.get("st", -(1 << 62))))
        self.guard.remember(d["m"], key)

    def take_dirty(self) -> list[str]:
        """Series changed since the last call (to write back to the table)."""
        keys = [k for k in self.windows.dirty if k in self.series]
        self.windows.dirty.clear()
        return keys

    # --- processing ----------------------------------------------------------------------------
    def add(self, p: Point) -> Point | None:
        """Fold one point in; returns it back when it is late (for the dead-letter topic)."""
        p = self.guard.admit(p)
        s = self.series.get(p.key)
        if s is None:
            sw = self.windows.get(p.key)
            s = self.series[p.key] = SeriesState(p.metric, p.labels, sw, CounterRates())
        r = s.counters.apply(p)
        if r is None:
            self.windows.dirty.add(p.key)  # the counter's last sample changed
            self.windows.observe_time(p.ts_ms)
            return None
        if not self.windows.add(p.key, r.ts_ms, r.value):
            self.late += 1
            return p
        return None

    def advance(self) -> tuple[list[WindowAggregate], list[Anomaly]]:
        """Aggregates of every window closed by the current stream time, and the anomalies they raise."""
        aggs: list[WindowAggregate] = []
        anomalies: list[Anomaly] = []
        for key, closed in self.windows.advance():
            agg = self.aggregate(key, closed)
            aggs.append(agg)
            a = self._detect(key, agg)
            if a is not None:
                anomalies.append(a)
        return aggs, anomalies

    def flush(self) -> tuple[list[WindowAggregate], list[Anomaly]]:
        """Close every window (end of a bounded input)."""
        self.windows.stream_time_ms = max(self.windows.stream_time_ms, 1 << 61)
        return self.advance()

    @property
    def counter_resets(self) -> int:
        return sum(s.counters.resets for s in self.series.values())

    @property
    def stream_time_ms(self) -> int:
        return self.windows.stream_time_ms

    def aggregate(self, key: str, c: Closed) -> WindowAggregate:
        s = self.series[key]
        start, end = _utc(c.start_ms), _utc(c.end_ms)
        return WindowAggregate(
            timestamp=end,
            event=EventInfo(id=stable_id("window_aggregate", key, c.start_ms, c.end_ms), kind="metric"),
            logtide=WindowAggregate.meta(),
            labels=dict(s.labels),
            series=Series(metric=s.metric, key=key, labels=dict(s.labels)),
            window=Window(start=start, end=end, size_seconds=self.spec.size_ms / 1000,
                          step_seconds=self.spec.step_ms / 1000),
            stats=Stats(**c.agg.stats()),
        )

    def _detect(self, key: str, agg: WindowAggregate) -> Anomaly | None:
        if not self.cfg.detect.enabled or self.detection.stat_for(agg.series.metric) is None:
            return None
        s = self.series[key]
        if s.detector is None:
            s.detector = self.detection.new()
        self.windows.dirty.add(key)
        return self.detection.observe(s.detector, agg)

