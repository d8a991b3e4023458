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

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from logtide.schemas import (
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
from logtide.streams.aggregate import CrossSeries
from logtide.streams.cardinality import CardinalityGuard
from logtide.streams.config import StreamsConfig
from logtide.streams.derive import COUNTER, GAUGE, STALE, CounterRates, Deriver, Point, series_key, ts_ms
from logtide.streams.detect import Detection, SeriesDetector
from logtide.streams.enrich import Enricher, GeoReader
from logtide.streams.prom_rate import extrapolated_increase
from logtide.streams.validate import SKEW_FLAG, SkewPolicy, is_skewed, validate
from logtide.streams.windowing import (
    NO_TIME,
    Agg,
    Closed,
    Late,
    SeriesWindows,
    SourceClock,
    WindowAggregator,
    WindowSpec,
)


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(slots=True)
class LogResult:
    """What one raw log record became: a dead letter, or an enriched event and its points."""

    dead: DeadLetter | None = None
    event: LogEvent | None = None
    points: list[Point] = field(default_factory=list)
    skew: str | None = None  # 'future'/'past' (wall clock: kept out of windows), 'source' (outlier: windowed)
    untimed: bool = False  # no real event time (see `has_event_time`): forwarded, kept out of windows
    src: str = ""  # the event's source: Kafka partition, host and file


@dataclass(slots=True)
class MetricResult:
    dead: DeadLetter | None = None
    sample: MetricSample | None = None
    point: Point | None = None
    skew: str | None = None
    untimed: bool = False
    src: str = ""


def source_id(partition: int | None, host: str | None, name: str | None) -> str:
    """A source of event time: the Kafka partition a record came from, and the shipper's host + file."""
    return f"{'' if partition is None else partition}|{host or ''}|{name or ''}"


# The skew direction of an event ahead of its own source's timeline (flagged, windowed, not in the watermark).
SOURCE_SKEW = "ahead_of_source"


# Shipper flags saying `@timestamp` is the ingest time, not the event's own time.
UNTIMED_FLAGS = frozenset({"ts_missing", "ts_unparsed", "parse_failure"})


def has_event_time(flags: list[str]) -> bool:
    """Whether `@timestamp` is a real event time. An ingest time would move its series' stream time to
    "now" and, on a replay of history, make every later historical event of that series late."""
    return not any(f in UNTIMED_FLAGS for f in flags)


# A dead letter's source, or a function making it (called only when a record is dead-lettered).
Source = DeadLetterSource | Callable[[], DeadLetterSource] | None


class Stateless:
    """Validate, enrich, derive: no state, so it runs wherever the record is read."""

    def __init__(self, cfg: StreamsConfig, geo: GeoReader | None = None) -> None:
        self.cfg = cfg
        self.policy = SkewPolicy(cfg.max_future_skew_seconds, cfg.max_past_skew_seconds)
        self.enrich = Enricher(cfg, geo)
        self.derive = Deriver(cfg.window.group_by, cfg.window.size_seconds)
        self.jump_ms = cfg.window.jump_ms
        self.clocks: dict[str, SourceClock] = {}  # event-time progress per source (outlier guard)
        # sources whose watermark moved since `take_marks`, per kind (logs and metrics are read by
        # different agents: each hands on the marks of its own points only)
        self._moved: dict[str, dict[str, int]] = {"log": {}, "metric": {}}

    def _clock(self, src: str, ev: LogEvent | MetricSample) -> bool:
        """Advance the event's source clock; True (and the event flagged) when it is an outlier."""
        return self.observe(src, ts_ms(ev), ev.logtide.flags, "metric" if isinstance(ev, MetricSample) else "log")

    def observe(self, src: str, t_ms: int, flags: list[str], kind: str) -> bool:
        """`_clock` on plain values (`flags` gains the skew flag in place); shared with `streams.fast_log`."""
        c = self.clocks.get(src)
        if c is None:
            c = self.clocks[src] = SourceClock()
        before = c.watermark
        outlier = c.observe(t_ms, self.jump_ms)
        if c.watermark != before:
            self._moved[kind][src] = c.watermark
        if outlier and SKEW_FLAG not in flags:
            flags.append(SKEW_FLAG)
        return outlier

    def take_marks(self, kind: str | None = None) -> list[tuple[str, int]]:
        """(source, watermark) of every source (of `kind`, 'log' or 'metric'; None: both) whose
        watermark moved since the last call: to be handed to the window stage *after* the points read
        before them (under Faust: to every partition)."""
        out: list[tuple[str, int]] = []
        for k in (kind,) if kind else ("log", "metric"):
            out += self._moved[k].items()
            self._moved[k] = {}
        return out

    def log(self, raw: bytes, now: datetime, source: Source = None, partition: int | None = None) -> LogResult:
        """Skewed events (wall clock), and events without a real event time (`has_event_time`), are
        enriched and forwarded, flagged, but produce no points (kept out of windows). An event ahead of
        its own source's timeline is flagged too, but windowed: it only stays out of the watermark."""
        ev, skew = validate(raw, LogEvent, now, self.policy, source)
        if isinstance(ev, DeadLetter):
            return LogResult(dead=ev)
        ev = self.enrich(ev)
        untimed = not has_event_time(ev.logtide.flags)
        windowed = self.cfg.derive.enabled and not untimed and not is_skewed(ev)
        src = source_id(partition, ev.host.name if ev.host else None,
                        ev.log.file.path if ev.log and ev.log.file else None)
        if windowed and self._clock(src, ev):
            skew = SOURCE_SKEW
        pts = self.derive.from_log(ev) if windowed else []
        return LogResult(event=ev, points=pts, skew=skew, untimed=untimed, src=src)

    def metric(self, raw: bytes, now: datetime, source: Source = None, partition: int | None = None) -> MetricResult:
        s, skew = validate(raw, MetricSample, now, self.policy, source)
        if isinstance(s, DeadLetter):
            return MetricResult(dead=s)
        untimed = not has_event_time(s.logtide.flags)
        windowed = not untimed and not is_skewed(s)
        src = source_id(partition, s.host.name if s.host else None, "metrics")
        if windowed and self._clock(src, s):
            skew = SOURCE_SKEW
        point = self.derive.from_sample(s) if windowed else None
        return MetricResult(sample=s, point=point, skew=skew, untimed=untimed, src=src)


@dataclass(slots=True)
class SeriesState:
    """Everything kept per series: identity, open windows, raw counters, detector and context."""

    metric: str
    labels: dict[str, str]
    windows: SeriesWindows
    counters: CounterRates
    detector: SeriesDetector | None = None
    offset: int = -1  # last points-topic offset folded in (replays at or below it are skipped)
    # counters only: pane start -> [first, last] sample time in it (the window's rate needs the span)
    times: dict[int, list[int]] | None = None


def _when(ms: int) -> str:
    try:
        return _utc(ms).isoformat() if ms > NO_TIME // 2 else "none yet"
    except (ValueError, OverflowError, OSError):  # a time no calendar holds: say so, never crash
        return f"{ms} ms"


def late_dead_letter(
    data: bytes, late: Late, lateness_ms: int, n: int = 1, source: DeadLetterSource | None = None
) -> DeadLetter:
    """Late events (a point, or a combined pane of `n` events), kept with the reason and the watermark
    they were behind, for the dead-letter topic."""
    m = decode_message(data)
    ts = m.max_ts if isinstance(m, Partial) else m.point.ts_ms if isinstance(m, Sourced) else m.ts_ms
    err = DecodeError(
        "late_event",
        f"{late.reason}: {n} event(s) at {_utc(ts).isoformat()} behind the series' watermark "
        f"{_when(late.series_watermark_ms)} (their source {late.source!r} at {_when(late.source_watermark_ms)}) "
        f"by more than the allowed lateness ({lateness_ms} ms) for every window holding them",
        "@timestamp",
    )
    src = source or DeadLetterSource(stage="window")
    return dead_letter(data, err, src.model_copy(update={"stage": "window", "expected_schema": "point"}))


@dataclass(slots=True)
class Partial:
    """Values of one series in one pane, pre-aggregated where they were read (map-side combine)."""

    key: str
    metric: str
    labels: dict[str, str]
    pane: int
    min_ts: int
    max_ts: int
    agg: Agg
    src: str | None = None

    def to_bytes(self) -> bytes:
        return orjson.dumps({"k": self.key, "m": self.metric, "l": self.labels, "p": self.pane,
                             "lo": self.min_ts, "hi": self.max_ts, "a": self.agg.to_plain(), "s": self.src})


@dataclass(slots=True)
class Sourced:
    """A single point and the source it came from."""

    point: Point
    src: str | None

    def to_bytes(self) -> bytes:
        return orjson.dumps({"pt": orjson.loads(self.point.to_bytes()), "s": self.src})


@dataclass(slots=True)
class Mark:
    """A source's watermark, sent to every partition of the points topic after the points before it.

    `read_to_end` (raw reader progress, on a mark without a source): the raw partitions the reader had
    read to their end, and as of when (wall clock, ms); the window stage judges idleness by it. A
    worker that predates it reads such a mark as a plain tick."""

    src: str
    watermark_ms: int
    read_to_end: dict[str, int] | None = None

    def to_bytes(self) -> bytes:
        if self.read_to_end:
            return orjson.dumps({"wm": self.watermark_ms, "s": self.src, "rt": self.read_to_end})
        return orjson.dumps({"wm": self.watermark_ms, "s": self.src})


TICK = Mark("", NO_TIME).to_bytes()  # a wall-clock tick for the window stage (no source, no time)


def decode_message(data: bytes) -> Partial | Sourced | Mark | Point:
    """A points-topic message: a combined pane, a sourced point, a watermark mark (JSON objects), or a
    single point without a source (JSON array)."""
    if data[:1] == b"{":
        d = orjson.loads(data)
        if "wm" in d:
            rt = d.get("rt")
            return Mark(d["s"], int(d["wm"]), {str(k): int(v) for k, v in rt.items()} if isinstance(rt, dict) else None)
        if "pt" in d:
            k, m, lab, ts, v, kind, ident = d["pt"]
            return Sourced(Point(k, m, lab, ts, v, kind, ident), d.get("s"))
        return Partial(d["k"], d["m"], d["l"], d["p"], d["lo"], d["hi"], Agg.from_plain(d["a"]), d.get("s"))
    return Point.from_bytes(data)


def routing_key(p: Point) -> str:
    """The points-topic record key: the series key, or for a histogram bucket the key without `le`."""
    if "le" in p.labels and "_bucket:rate" in p.metric:
        return series_key(p.metric, {k: v for k, v in p.labels.items() if k != "le"})
    return p.key


class Combiner:
    """Pre-aggregates a batch of points per (series, pane) before they cross the network.

    Gauge-like points become one `Partial` per series and pane (count, sum, min, max and sketch merge
    exactly, so nothing is lost); counter samples and staleness markers pass through one by one (a
    rate needs each sample).
    """

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self._parts: dict[tuple[str, int, str | None], Partial] = {}
        self._singles: list[Sourced] = []

    def add(self, p: Point, src: str | None = None) -> None:
        if p.kind != GAUGE:
            self._singles.append(Sourced(p, src))
            return
        pane = self.spec.pane_of(p.ts_ms)
        part = self._parts.get((p.key, pane, src))
        if part is None:
            part = self._parts[(p.key, pane, src)] = Partial(p.key, p.metric, p.labels, pane, p.ts_ms, p.ts_ms,
                                                             Agg(self.spec.alpha), src)
        part.agg.add(p.value)
        part.min_ts = min(part.min_ts, p.ts_ms)
        part.max_ts = max(part.max_ts, p.ts_ms)

    def __len__(self) -> int:
        return len(self._parts) + len(self._singles)

    def drain(self) -> list[tuple[str, bytes]]:
        """(routing key, message) pairs, oldest pane first; the combiner is empty afterwards.

        The routing key (the points topic's record key, so the partition) is the series key, except
        for histogram buckets: all buckets of one histogram share a partition, so the worker that owns
        it sees every bucket's window and can compute its quantiles."""
        out = [(routing_key(p.point), p.to_bytes()) for p in self._singles]
        out += [(p.key, p.to_bytes()) for p in sorted(self._parts.values(), key=lambda q: q.max_ts)]
        self._parts.clear()
        self._singles.clear()
        return out


class Stateful:
    """Cardinality guard, counter rates, event-time windows and detection over the points of a set of
    series (one partition of the points topic under Faust; everything in the embedded runner).

    Event time advances through source watermarks (`mark`, from `Stateless.take_marks`); idleness is
    judged by the wall clock the caller passes as `now_ms` (processing time), never by event times;
    with `reader_progress` (under Faust) only the time the raw reader had the source's partition read
    to its end counts (see `WindowAggregator`).
    """

    def __init__(self, cfg: StreamsConfig, *, reader_progress: bool = False) -> None:
        self.cfg = cfg
        w = cfg.window
        self.spec = WindowSpec(w.size_ms, w.step_ms, w.lateness_ms, w.relative_accuracy)
        self.detection = Detection(cfg.detect, self.spec.step_ms / 1000)
        self.windows = WindowAggregator(self.spec, w.idle_ms, self._zero_fill, w.zero_fill_windows, w.discovery_ms,
                                        reader_progress=reader_progress)
        self.guard = CardinalityGuard(cfg.max_series_per_metric, cfg.max_metric_names)
        self.series: dict[str, SeriesState] = {}
        self.late = 0
        self.last_late: Late | None = None  # why the last late point was late
        self.late_by: dict[tuple[str, str, str], int] = {}  # (series, source, reason) -> events, since the last report
        self._reported_ms: int | None = None  # wall clock of the last late report
        self.duplicates = 0
        # histogram quantiles and `op by` rules across series (not persisted: a restart may lose a
        # view's window in progress; the label-true series themselves are in the state)
        self.cross = CrossSeries(cfg.metrics, self.spec.lateness_ms + self.spec.step_ms)
        self._ended: list[tuple[str, Closed]] = []  # windows closed by staleness markers

    def _zero_fill(self, key: str) -> bool:
        metric = key.split("{", 1)[0]
        rule = next((r for r in self.cfg.detect.rules if fnmatch.fnmatchcase(metric, r.metric)), None)
        return rule is not None and rule.fills_zeros

    # --- state ---------------------------------------------------------------------------------
    def export(self, key: str) -> bytes:
        """One series' state as bytes (a table value), with the watermarks of its sources."""
        s = self.series[key]
        srcs = self.windows.sources
        return orjson.dumps({
            "m": s.metric, "l": s.labels, "w": s.windows.to_plain(), "c": s.counters.to_plain(),
            "d": s.detector.to_plain() if s.detector else None,
            "sw": {k: srcs[k].watermark for k in s.windows.sources if k in srcs},
            "o": s.offset, "t": list(s.times.items()) if s.times is not None else None,
        })

    def restore(self, key: str, blob: bytes, now_ms: int | None = None) -> None:
        """Install a series' state from `export` output (after a restart or a rebalance)."""
        d = orjson.loads(blob)
        self.windows._tick(now_ms)
        sw = SeriesWindows.from_plain(self.spec, d["w"])
        det = self.detection.restore(d["d"]) if d.get("d") else None
        times = {int(p): [int(a), int(b)] for p, (a, b) in d["t"]} if d.get("t") is not None else None
        self.series[key] = SeriesState(d["m"], d["l"], sw, CounterRates(d["c"]), det, int(d.get("o", -1)), times)
        self.windows.put(key, sw, {k: int(v) for k, v in (d.get("sw") or {}).items()})
        self.guard.remember(d["m"], key)

    def take_dirty(self) -> list[str]:
        """Series changed since the last call (to write back to the table)."""
        keys = [k for k in self.windows.dirty if k in self.series]
        self.windows.dirty.clear()
        return keys

    # --- processing ----------------------------------------------------------------------------
    def _series(self, key: str, metric: str, labels: dict[str, str]) -> SeriesState:
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = SeriesState(metric, labels, self.windows.get(key), CounterRates())
        return s

    def _seen(self, s: SeriesState, offset: int | None) -> bool:
        if offset is None:
            return False
        if offset <= s.offset:
            self.duplicates += 1
            return True
        s.offset = offset
        return False

    def _late(self, key: str, n: int) -> None:
        self.late += n
        late = self.last_late = self.windows.last_late
        if late is not None:
            k = (key, late.source, late.reason)
            self.late_by[k] = self.late_by.get(k, 0) + n

    def mark(self, src: str, watermark_ms: int, now_ms: int | None = None) -> None:
        """A source's watermark moved (see `Stateless.take_marks`)."""
        self.windows.mark(src, watermark_ms, now_ms)

    def add(self, p: Point, offset: int | None = None, *, src: str | None = None,
            now_ms: int | None = None) -> Point | None:
        """Fold one point in; returns it back when it is late (for the dead-letter topic; `last_late`
        says why). A point the cardinality guard refuses returns None and is counted in `guard.refused`.

        `offset` (the points-topic offset under Faust) makes replays after a crash idempotent. Without
        `src` the series is its own source (its points move its watermark).
        """
        if p.kind == STALE:
            self._stale(p, offset)
            return None
        p = self.guard.admit(p)
        if p is None:  # refused by the cardinality guard (counted there): not late, in no window
            return None
        s = self._series(p.key, p.metric, p.labels)
        if self._seen(s, offset):
            return None
        value = p.value
        if p.kind == COUNTER:
            r = s.counters.cumulative(p)
            if r is None:  # not newer than the counter's last sample
                return None
            value = r.value
        if not self.windows.add(p.key, p.ts_ms, value, src=src, now_ms=now_ms):
            self._late(p.key, 1)
            return p
        if p.kind == COUNTER:
            self._counter_time(s, p.ts_ms)
        return None

    def _counter_time(self, s: SeriesState, t_ms: int) -> None:
        if s.times is None:
            s.times = {}
        pane = self.spec.pane_of(t_ms)
        span = s.times.get(pane)
        if span is None:
            s.times[pane] = [t_ms, t_ms]
            horizon = s.windows.emitted_end - self.spec.size_ms
            for old in [q for q in s.times if q < horizon]:
                del s.times[old]
        else:
            span[0], span[1] = min(span[0], t_ms), max(span[1], t_ms)

    def _stale(self, p: Point, offset: int | None) -> None:
        """A staleness marker: the series ended. Emit the window holding the marker now rather than
        after the idle timeout (a counter that comes back is read across the gap, as Prometheus does)."""
        s = self.series.get(p.key)
        if s is None or self._seen(s, offset):
            return
        self.windows.dirty.add(p.key)
        if self.cfg.metrics.stale_closes_windows and p.ts_ms > s.windows.emitted_end:
            limit = self.spec.pane_of(p.ts_ms) + self.spec.step_ms + self.spec.lateness_ms
            self._ended.extend((p.key, c) for c in s.windows.close(limit))

    def add_partial(self, part: Partial, offset: int | None = None, now_ms: int | None = None) -> int:
        """Fold a combined pane (see `Combiner`) in; returns how many of its events were late (all or none)."""
        key, metric, labels = part.key, part.metric, part.labels
        p = self.guard.admit(Point(key, metric, labels, part.max_ts, 0.0), part.agg.count)
        if p is None:  # refused by the cardinality guard (counted there)
            return 0
        key, labels = p.key, p.labels
        s = self._series(key, metric, labels)
        if self._seen(s, offset):
            return 0
        if not self.windows.add(key, part.pane, part.agg, part.max_ts, src=part.src, now_ms=now_ms):
            self._late(key, part.agg.count)
            return part.agg.count
        return 0

    def apply(self, data: bytes, offset: int | None = None, now_ms: int | None = None) -> int:
        """Fold one points-topic message in; the number of late events it held (0 when none)."""
        m = decode_message(data)
        if isinstance(m, Mark):
            if m.read_to_end:
                self.windows.progress(m.read_to_end, now_ms)
            self.mark(m.src, m.watermark_ms, now_ms)
            return 0
        if isinstance(m, Partial):
            return self.add_partial(m, offset, now_ms)
        if isinstance(m, Sourced):
            return 0 if self.add(m.point, offset, src=m.src, now_ms=now_ms) is None else 1
        return 0 if self.add(m, offset, now_ms=now_ms) is None else 1

    def late_report(self, now_ms: int, force: bool = False) -> str | None:
        """A warning line summing up late events per series, source and reason since the last one, at
        most one per `late_report_seconds` (None when nothing is due)."""
        if not self.late_by:
            return None
        last = self._reported_ms
        if not force and last is not None and now_ms - last < self.cfg.late_report_seconds * 1000:
            return None
        self._reported_ms = now_ms
        items = sorted(self.late_by.items(), key=lambda kv: -kv[1])
        self.late_by = {}
        total = sum(n for _, n in items)
        top = "; ".join(f"{n} {reason} in {key} from source {src!r}" for (key, src, reason), n in items[:5])
        more = f" (and {len(items) - 5} more series/sources)" if len(items) > 5 else ""
        return (f"{total} late point(s) dead-lettered (behind the watermark by more than "
                f"window.lateness_seconds={self.cfg.window.lateness_seconds:g}): {top}{more}")

    def advance(self, now_ms: int | None = None) -> tuple[list[WindowAggregate], list[Anomaly]]:
        """Aggregates of every window the watermarks closed (`now_ms`: the wall clock, for idleness),
        and the anomalies they raise."""
        ended, self._ended = self._ended, []
        aggs, anomalies = self._emit([*ended, *self.windows.advance(now_ms)])
        return self._emit_views(self.cross.ready(self.stream_time_ms), aggs, anomalies)

    def _emit(self, closed_windows: Iterable[tuple[str, Closed]]) -> tuple[list[WindowAggregate], list[Anomaly]]:
        aggs: list[WindowAggregate] = []
        anomalies: list[Anomaly] = []
        for key, closed in closed_windows:
            agg = self.aggregate(key, closed)
            if agg is None:  # a counter window with fewer than two samples has no rate
                continue
            aggs.append(agg)
            self.cross.add(agg)
            a = self._detect(key, agg)
            if a is not None:
                anomalies.append(a)
        return aggs, anomalies

    def _emit_views(
        self, views: list[WindowAggregate], aggs: list[WindowAggregate], anomalies: list[Anomaly]
    ) -> tuple[list[WindowAggregate], list[Anomaly]]:
        """Cross-series views (histogram quantiles, `op by` rules) join the output and detection."""
        for v in views:
            self._series(v.series.key, v.series.metric, v.series.labels)
            aggs.append(v)
            a = self._detect(v.series.key, v)
            if a is not None:
                anomalies.append(a)
        return aggs, anomalies

    def flush(self) -> tuple[list[WindowAggregate], list[Anomaly]]:
        """Close every window (end of a bounded input)."""
        ended, self._ended = self._ended, []
        aggs, anomalies = self._emit([*ended, *self.windows.flush()])
        return self._emit_views(self.cross.flush(), aggs, anomalies)

    @property
    def counter_resets(self) -> int:
        return sum(s.counters.resets for s in self.series.values())

    @property
    def stream_time_ms(self) -> int:
        return self.windows.stream_time_ms

    def aggregate(self, key: str, c: Closed) -> WindowAggregate | None:
        """The closed window as an aggregate. For a counter, Prometheus' `increase` over the window in
        `sum` and the per-second rate (increase / window size) in every other statistic; None when the
        window has fewer than two of its samples."""
        s = self.series[key]
        start, end = _utc(c.start_ms), _utc(c.end_ms)
        if s.times is not None:
            stats = self._counter_stats(s, c)
            if stats is None:
                return None
        else:
            stats = Stats(**c.agg.stats())
        return WindowAggregate(
            timestamp=end,
            event=EventInfo(id=stable_id("window_aggregate", key, c.start_ms, c.end_ms), kind="metric"),
            logtide=WindowAggregate.meta(),
            labels=dict(s.labels),
            series=Series(metric=s.metric, key=key, labels=dict(s.labels)),
            window=Window(start=start, end=end, size_seconds=self.spec.size_ms / 1000,
                          step_seconds=self.spec.step_ms / 1000),
            stats=stats,
        )

    def _counter_stats(self, s: SeriesState, c: Closed) -> Stats | None:
        spans = [s.times[p] for p in range(c.start_ms, c.end_ms, self.spec.step_ms) if p in (s.times or {})]
        if not spans:
            return None
        first, last = min(a for a, _ in spans), max(b for _, b in spans)
        a = c.agg
        inc = extrapolated_increase(first, last, a.min, a.max - a.min, a.count, c.start_ms, c.end_ms)
        if inc is None:
            return None
        rate = inc / (self.spec.size_ms / 1000)
        return Stats(count=a.count, sum=inc, min=rate, max=rate, mean=rate, p50=rate, p90=rate, p99=rate)

    def _detect(self, key: str, agg: WindowAggregate) -> Anomaly | None:
        if not self.cfg.detect.enabled or self.detection.stat_for(agg.series.metric) is None:
            return None
        s = self.series[key]
        if s.detector is None:
            s.detector = self.detection.new(agg.series.metric)
        self.windows.dirty.add(key)
        return self.detection.observe(s.detector, agg)

