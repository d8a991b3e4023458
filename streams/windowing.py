"""Event-time windows: tumbling and hopping, with allowed lateness, per series.

Windows are built from panes `step` wide; a window of `size` (a multiple of `step`) is the merge of
`size/step` consecutive panes. Each pane keeps count, sum, min, max and a mergeable log-bucket quantile
sketch (the DDSketch construction, relative-accuracy guarantee), so a hopping window costs one pane
update per event and one merge at close, and percentiles stay honest across panes.

Semantics (Flink's watermarks with idleness, Beam's per-source watermarks, Kafka Streams' grace):
event-time progress is tracked per *source* (a Kafka partition's host + file, see `SourceClock`); a
series' window [start, end) closes once the slowest active source feeding the series has a watermark
`>= end + lateness`, and is emitted exactly once. Idleness is decided by the wall clock the caller
passes in. An event whose every window has closed is *late*: it is returned to the caller with the
reason and the watermark it was behind (for the dead-letter topic), never folded into an emitted
window. An event that still has an open window is folded into the open ones only (closed windows are
immutable by construction: they were emitted already).

All state is plain data (`to_plain` / `from_plain`), so it round-trips through a Faust table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

_EMPTY_MIN = math.inf


class Sketch:
    """Log-bucket quantile sketch (DDSketch): relative error <= `alpha` on every quantile; mergeable.

    Buckets are `(gamma^(i-1), gamma^i]` with `gamma = (1+alpha)/(1-alpha)`; negative values mirror the
    positive ones; values closer to zero than `min_value` count as zero. Past `max_bins` buckets the
    lowest ones collapse (the accuracy of the high quantiles, the ones that matter, is kept).
    """

    __slots__ = ("_lg", "alpha", "count", "max_bins", "neg", "pos", "zero")

    MIN_VALUE = 1e-9

    def __init__(self, alpha: float = 0.01, max_bins: int = 2048) -> None:
        self.alpha = alpha
        self._lg = math.log((1 + alpha) / (1 - alpha))  # log(gamma), once (it was recomputed per value)
        self.max_bins = max_bins
        self.pos: dict[int, int] = {}
        self.neg: dict[int, int] = {}
        self.zero = 0
        self.count = 0

    def add(self, x: float, n: int = 1) -> None:
        self.count += n
        if x > self.MIN_VALUE:
            i = math.ceil(math.log(x) / self._lg)
            self.pos[i] = self.pos.get(i, 0) + n
            if len(self.pos) > self.max_bins:
                _collapse(self.pos, self.max_bins)
        elif x < -self.MIN_VALUE:
            i = math.ceil(math.log(-x) / self._lg)
            self.neg[i] = self.neg.get(i, 0) + n
            if len(self.neg) > self.max_bins:
                _collapse(self.neg, self.max_bins)
        else:
            self.zero += n

    def merge(self, other: Sketch) -> None:
        if other.alpha != self.alpha:
            raise ValueError("cannot merge sketches of different accuracy")
        for i, c in other.pos.items():
            self.pos[i] = self.pos.get(i, 0) + c
        for i, c in other.neg.items():
            self.neg[i] = self.neg.get(i, 0) + c
        self.zero += other.zero
        self.count += other.count
        if len(self.pos) > self.max_bins:
            _collapse(self.pos, self.max_bins)
        if len(self.neg) > self.max_bins:
            _collapse(self.neg, self.max_bins)

    def _value(self, i: int) -> float:
        g = (1 + self.alpha) / (1 - self.alpha)
        return 2.0 * g**i / (g + 1.0)

    def quantile(self, q: float) -> float:
        """The value at rank `q * (count - 1)` (lower rank), within relative error alpha."""
        if self.count == 0:
            return math.nan
        rank = q * (self.count - 1)
        seen = 0
        for i in sorted(self.neg, reverse=True):
            seen += self.neg[i]
            if seen > rank:
                return -self._value(i)
        seen += self.zero
        if seen > rank:
            return 0.0
        for i in sorted(self.pos):
            seen += self.pos[i]
            if seen > rank:
                return self._value(i)
        return self._value(max(self.pos)) if self.pos else 0.0

    def to_plain(self) -> list[Any]:
        return [self.alpha, self.zero, list(self.pos.items()), list(self.neg.items())]

    @classmethod
    def from_plain(cls, data: list[Any]) -> Sketch:
        s = cls(data[0])
        s.zero = int(data[1])
        s.pos = {int(i): int(c) for i, c in data[2]}
        s.neg = {int(i): int(c) for i, c in data[3]}
        s.count = s.zero + sum(s.pos.values()) + sum(s.neg.values())
        return s


def _collapse(bins: dict[int, int], max_bins: int) -> None:
    keys = sorted(bins)
    extra = len(keys) - max_bins
    if extra <= 0:
        return
    target = keys[extra]
    moved = sum(bins.pop(k) for k in keys[:extra])
    bins[target] += moved


class Agg:
    """Count, sum, min, max and a sketch: one pane, or a window after merging panes."""

    __slots__ = ("count", "max", "min", "sketch", "sum")

    def __init__(self, alpha: float = 0.01) -> None:
        self.count = 0
        self.sum = 0.0
        self.min = _EMPTY_MIN
        self.max = -_EMPTY_MIN
        self.sketch = Sketch(alpha)

    def add(self, x: float) -> None:
        self.count += 1
        self.sum += x
        self.min = min(self.min, x)
        self.max = max(self.max, x)
        self.sketch.add(x)

    def merge(self, o: Agg) -> None:
        self.count += o.count
        self.sum += o.sum
        self.min = min(self.min, o.min)
        self.max = max(self.max, o.max)
        self.sketch.merge(o.sketch)

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan

    def stats(self) -> dict[str, float | int]:
        """The `Stats` fields of the schema (all 0 for a window without events)."""
        if not self.count:
            return {"count": 0, "sum": 0.0, "min": 0.0, "max": 0.0, "mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0}
        q = self.sketch.quantile
        return {
            "count": self.count, "sum": self.sum, "min": self.min, "max": self.max, "mean": self.mean,
            "p50": q(0.5), "p90": q(0.9), "p99": q(0.99),
        }

    def to_plain(self) -> list[Any]:
        return [self.count, self.sum, self.min, self.max, self.sketch.to_plain()]

    @classmethod
    def from_plain(cls, d: list[Any]) -> Agg:
        a = cls.__new__(cls)
        a.count, a.sum, a.min, a.max = int(d[0]), float(d[1]), float(d[2]), float(d[3])
        a.sketch = Sketch.from_plain(d[4])
        return a


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """Window geometry in integer milliseconds (no float drift at boundaries)."""

    size_ms: int
    step_ms: int
    lateness_ms: int = 0
    alpha: float = 0.01

    def __post_init__(self) -> None:
        if self.size_ms <= 0 or self.step_ms <= 0 or self.size_ms % self.step_ms:
            raise ValueError("size_ms must be a positive multiple of step_ms")
        if self.lateness_ms < 0:
            raise ValueError("lateness_ms must be >= 0")

    @property
    def panes_per_window(self) -> int:
        return self.size_ms // self.step_ms

    def pane_of(self, ts_ms: int) -> int:
        """Start of the pane holding ts."""
        return ts_ms - ts_ms % self.step_ms

    def windows_of(self, ts_ms: int) -> list[tuple[int, int]]:
        """All [start, end) windows containing ts, oldest first."""
        last = self.pane_of(ts_ms)
        return [(s, s + self.size_ms) for s in range(last - self.size_ms + self.step_ms, last + 1, self.step_ms)]

    def closed(self, end_ms: int, stream_time_ms: int) -> bool:
        return stream_time_ms >= end_ms + self.lateness_ms


NO_TIME = -(1 << 62)  # no event time seen yet

# Reasons a late event gives (the dead letter's message and the `reason` label of the late counter).
LATE_OUT_OF_ORDER = "source_out_of_order"  # behind its own source's watermark by more than the lateness
LATE_IDLE_SOURCE = "idle_source_resumed"  # its source was idle while the series' windows closed past it
LATE_NEW_SOURCE = "source_joined_late"  # the first event of this source in a series already closed past it
LATE_WINDOW_CLOSED = "window_closed"  # any other event whose every window was already closed


@dataclass(slots=True)
class SourceClock:
    """Event-time progress of one source (a Kafka partition's host + file), with the outlier guard.

    The watermark is the largest *accepted* event time. An event more than `jump_ms` ahead of it is
    held as pending, not accepted: if the next event is ahead too, the jump was real (a gap in the
    file, the start of a timeline) and the watermark moves to the smaller of the two; if the source
    carries on where it was, the held event was an outlier and never moved the clock. So one line
    stamped minutes in the future cannot make the rest of its source look late.
    """

    watermark: int = NO_TIME
    pending: int | None = None

    def observe(self, ts_ms: int, jump_ms: int) -> bool:
        """Record one event time; True when it is an outlier (ahead of a known timeline, unconfirmed)."""
        wm = self.watermark
        if wm != NO_TIME and ts_ms <= wm + jump_ms:
            if ts_ms > wm:
                self.watermark = ts_ms
            self.pending = None  # the source carried on where it was: a held event was an outlier
            return False
        p = self.pending
        if p is None:
            self.pending = ts_ms
            return wm != NO_TIME
        # a second event ahead of the timeline: the jump is real
        self.watermark = max(wm, min(p, ts_ms))
        self.pending = ts_ms if ts_ms > self.watermark + jump_ms else None
        return False

    def to_plain(self) -> list[Any]:
        return [self.watermark, self.pending]

    @classmethod
    def from_plain(cls, d: list[Any]) -> SourceClock:
        return cls(int(d[0]), None if d[1] is None else int(d[1]))


@dataclass(slots=True)
class Closed:
    """A window that just closed: emit it once."""

    start_ms: int
    end_ms: int
    agg: Agg


@dataclass(slots=True)
class SeriesWindows:
    """The open panes of one series, the end of the last window emitted, and the sources feeding it."""

    spec: WindowSpec
    panes: dict[int, Agg] = field(default_factory=dict)
    emitted_end: int = NO_TIME  # windows ending at or before this were emitted (or skipped as empty)
    sources: list[str] = field(default_factory=list)  # sources that fed this series (their min holds it)
    last_data_end: int = NO_TIME  # end of the newest window emitted with data (zero-filling stops a while after)
    zero_fill: bool = False  # emit windows with no events (count 0) between data, not skip them
    zero_fill_max: int = 60  # at most this many windows of zeros after the last data

    def add(self, ts_ms: int, value: float | Agg, watermark_ms: int,
            source_ms: int = NO_TIME) -> tuple[bool, list[Closed]]:
        """Fold a value (or a partial aggregate of values of the same pane) in if one of its windows
        is still open (False when it is late: closed by the series' watermark, or behind its own
        source's watermark `source_ms` by more than the lateness).

        Windows that the watermark has closed but that were not emitted yet are closed first (and
        returned), so the value cannot leak into them.
        """
        spec = self.spec
        pane = spec.pane_of(ts_ms)
        newest_end = pane + spec.size_ms
        if (spec.closed(newest_end, max(watermark_ms, source_ms)) or newest_end <= self.emitted_end):
            return False, []
        closed: list[Closed] = []
        if spec.closed(pane + spec.step_ms, watermark_ms):
            closed = self.close(watermark_ms)
        agg = self.panes.get(pane)
        if isinstance(value, Agg):
            if agg is None:
                self.panes[pane] = Agg.from_plain(value.to_plain())
            else:
                agg.merge(value)
            return True, closed
        if agg is None:
            agg = self.panes[pane] = Agg(spec.alpha)
        agg.add(value)
        return True, closed

    def close(self, watermark_ms: int) -> list[Closed]:
        """Emit every window that closed by `watermark_ms`, oldest first; drop dead panes.

        Windows without data are skipped, or emitted with a count of 0 when `zero_fill` is set (for at
        most `zero_fill_max` windows after the last window with data: a series that stopped is not
        filled for ever).
        """
        spec = self.spec
        out: list[Closed] = []
        limit_end = watermark_ms - spec.lateness_ms  # windows ending <= this are closed
        limit_end -= limit_end % spec.step_ms
        if limit_end <= self.emitted_end:
            return out
        fill = self.zero_fill and self.last_data_end != NO_TIME
        if self.emitted_end == NO_TIME or not fill:
            if not self.panes:
                self.emitted_end = max(self.emitted_end, limit_end)
                return out
            end = max(min(self.panes) + spec.step_ms, self.emitted_end + spec.step_ms)
        else:
            end = self.emitted_end + spec.step_ms
        while end <= limit_end:
            filling = self.zero_fill and end <= self.last_data_end + self.zero_fill_max * spec.step_ms
            if not self.panes and not filling:
                break
            start = end - spec.size_ms
            merged: Agg | None = None
            for p in range(start, end, spec.step_ms):
                a = self.panes.get(p)
                if a is not None:
                    if merged is None:
                        merged = Agg(spec.alpha)
                    merged.merge(a)
            if merged is not None:
                out.append(Closed(start, end, merged))
                self.last_data_end = end
            elif filling:
                out.append(Closed(start, end, Agg(spec.alpha)))
            self.panes.pop(start, None)  # the pane starting at `start` belongs to no later window
            if self.zero_fill and end < self.last_data_end + self.zero_fill_max * spec.step_ms:
                end += spec.step_ms
            else:  # skip the empty windows between here and the next pane
                end = max(end + spec.step_ms, min(self.panes) + spec.step_ms) if self.panes else end + spec.step_ms
        self.emitted_end = max(self.emitted_end, limit_end)
        for p in [p for p in self.panes if p + spec.size_ms <= self.emitted_end]:
            del self.panes[p]
        return out

    def to_plain(self) -> list[Any]:
        return [self.emitted_end, [[p, a.to_plain()] for p, a in self.panes.items()], list(self.sources),
                self.last_data_end]

    @classmethod
    def from_plain(cls, spec: WindowSpec, d: list[Any]) -> SeriesWindows:
        sources = [str(s) for s in d[2]] if len(d) > 2 and isinstance(d[2], list) else []
        last = int(d[3]) if len(d) > 3 else NO_TIME
        return cls(spec, {int(p): Agg.from_plain(a) for p, a in d[1]}, int(d[0]), sources, last)


@dataclass(slots=True)
class SourceState:
    """What the window stage knows of a source: its watermark and when (wall clock) it last spoke."""

    watermark: int = NO_TIME
    seen_ms: int = 0  # wall clock of its last event or watermark mark
    active: bool = True
    series: set[str] = field(default_factory=set)
    partition: str | None = None  # the raw partition its id names (reader progress gates its idleness)


def source_partition(src: str) -> str | None:
    """The raw partition number a source id (`pipeline.source_id`: "partition|host|file") starts with;
    None for a source without one (a series that is its own source, a record read without Kafka)."""
    head, sep, _ = src.partition("|")
    return head if sep and head.isdigit() else None


@dataclass(slots=True)
class Late:
    """Why an event was late, and the watermarks it was behind."""

    reason: str
    series_watermark_ms: int
    source_watermark_ms: int
    source: str


class WindowAggregator:
    """Windows of many series, closed by per-source watermarks (Flink's idleness, Beam's per-source
    watermarks, Kafka Streams' grace).

    Every event comes from a source (a Kafka partition's host + file). A source's watermark only moves
    through `mark` (the stateless stage's `SourceClock`, outlier guard included), or, for an event
    added without a source, the series is its own source and its events move it. A series' windows
    close when the minimum of the watermarks of the *active* sources that fed it passes their end plus
    the lateness: a fast source never makes a slow one's events late. A source that has said nothing
    for `idle_ms` of wall clock (`now_ms`, processing time, given by the caller) stops holding
    series back; when all of a series' sources are idle, the largest of their watermarks closes it.
    Idleness is never judged by comparing one series' event time with another's.

    With `reader_progress` (the Kafka path, where the window stage runs apart from the readers), the
    wall clock alone does not make a source idle: a source on raw partition P is idle once the raw
    reader reported P read to its end (`progress`: the wall-clock time of the fetch that found no
    more records) `idle_ms` after the source last spoke. A source whose partition is not being read
    (its worker restarting, a rebalance, the broker away) therefore never looks idle, and its events
    are never made late by that; a source that truly wrote nothing (a rotated-away file) still is.
    Flink decides idleness at the source reader for the same reason.
    """

    def __init__(self, spec: WindowSpec, idle_ms: int | None = None,
                 zero_fill: Callable[[str], bool] | None = None, zero_fill_max: int = 60,
                 discovery_ms: int = 0, *, reader_progress: bool = False) -> None:
        self.spec = spec
        self.idle_ms = idle_ms
        self.reader_progress = reader_progress
        # raw partition number -> raw topic -> wall clock (ms) as of which the reader had read it all
        self.read_to_end: dict[str, dict[str, int]] = {}
        self.discovery_ms = discovery_ms
        self.hold_until_ms = 0  # no window closes before this (wall clock): sources are being discovered
        self._clocked = False  # a wall clock was given
        self.zero_fill = zero_fill
        self.zero_fill_max = zero_fill_max
        self.series: dict[str, SeriesWindows] = {}
        self.sources: dict[str, SourceState] = {}
        self.now_ms = 0
        self._check: set[str] = set()  # series whose watermark may have moved since `advance`
        self._pending: list[tuple[str, Closed]] = []
        self.dirty: set[str] = set()
        self.last_late: Late | None = None

    # --- sources ------------------------------------------------------------------------------------
    def _source(self, src: str) -> SourceState:
        st = self.sources.get(src)
        if st is None:
            st = self.sources[src] = SourceState(seen_ms=self.now_ms, partition=source_partition(src))
            # a source never seen: the others reading alongside it (files of one backfill) get a moment
            # of wall clock to speak too before windows close, so a series they share waits for them
            if self._clocked:  # (callers that give no wall clock get no discovery time)
                self.hold_until_ms = max(self.hold_until_ms, self.now_ms + self.discovery_ms)
        return st

    def _active(self, st: SourceState) -> bool:
        if self.idle_ms is None:
            return True
        if self.reader_progress and st.partition is not None:
            # the slowest of the raw topics' reports for its partition number (a topic whose reader
            # stopped reporting holds it: idleness waits rather than guesses)
            read = self.read_to_end.get(st.partition)
            return not read or min(read.values()) - st.seen_ms < self.idle_ms
        return self.now_ms - st.seen_ms < self.idle_ms

    def progress(self, read_to_end: dict[str, int], now_ms: int | None = None) -> None:
        """The raw reader's report: `{"topic:partition": wall-clock ms}`, each partition read to its
        end as of that time (every record before it was handed on ahead of this report)."""
        self._tick(now_ms)
        for tp, t in read_to_end.items():
            topic, _, part = tp.rpartition(":")
            if not part.isdigit():
                continue
            by_topic = self.read_to_end.setdefault(part, {})
            if t > by_topic.get(topic, NO_TIME):
                by_topic[topic] = int(t)

    def _tick(self, now_ms: int | None) -> None:
        if now_ms is not None:
            self._clocked = True
            self.now_ms = max(self.now_ms, now_ms)

    def mark(self, src: str, watermark_ms: int, now_ms: int | None = None) -> None:
        """A source's watermark (and a sign of life at `now_ms`, wall clock); an empty `src` is only a
        tick of the wall clock (idleness and discovery move on without any source speaking)."""
        self._tick(now_ms)
        if not src:
            return
        st = self._source(src)
        st.seen_ms = self.now_ms
        if watermark_ms > st.watermark:
            st.watermark = watermark_ms
            self._check |= st.series

    @property
    def stream_time_ms(self) -> int:
        """The largest source watermark (for reports; nothing closes on it)."""
        return max((s.watermark for s in self.sources.values()), default=NO_TIME)

    def watermark(self, sw: SeriesWindows) -> int:
        """The series' watermark: min over its active sources, else max over its (idle) sources."""
        low = None
        high = NO_TIME
        for s in sw.sources:
            st = self.sources.get(s)
            if st is None:
                continue
            high = max(high, st.watermark)
            if self._active(st) and (low is None or st.watermark < low):
                low = st.watermark
        return high if low is None else low

    # --- series -------------------------------------------------------------------------------------
    def get(self, key: str) -> SeriesWindows:
        sw = self.series.get(key)
        if sw is None:
            sw = self.series[key] = SeriesWindows(self.spec, zero_fill=bool(self.zero_fill and self.zero_fill(key)),
                                                  zero_fill_max=self.zero_fill_max)
        return sw

    def put(self, key: str, sw: SeriesWindows, source_watermarks: dict[str, int] | None = None) -> None:
        """Install restored state for a series (its sources count as active from now: a restarted
        worker has not seen them go quiet)."""
        sw.zero_fill = bool(self.zero_fill and self.zero_fill(key))
        sw.zero_fill_max = self.zero_fill_max
        self.series[key] = sw
        for s in sw.sources:
            st = self._source(s)  # after a restart, sources are discovered again
            st.series.add(key)
            st.seen_ms = self.now_ms
            st.active = True
            w = (source_watermarks or {}).get(s)
            if w is not None and w > st.watermark:
                st.watermark = w
        self._check.add(key)

    def add(self, key: str, ts_ms: int, value: float | Agg, max_ts_ms: int | None = None, *,
            src: str | None = None, now_ms: int | None = None) -> bool:
        """Fold an event (or a partial's pane) into its series unless it is late (False; see
        `last_late` for why). Without `src` the series is its own source and the event moves it."""
        self._tick(now_ms)
        own = src is None
        if own:
            src = "\x00" + key
        sw = self.get(key)
        st = self._source(src)
        was_idle = not self._active(st)
        st.seen_ms = self.now_ms
        new = key not in st.series
        if new:
            st.series.add(key)
            sw.sources.append(src)
        src_wm = st.watermark
        wm = NO_TIME if self.now_ms < self.hold_until_ms else self.watermark(sw)
        ok, closed = sw.add(ts_ms, value, wm, src_wm)
        if not ok:
            newest_end = self.spec.pane_of(ts_ms) + self.spec.size_ms
            if self.spec.closed(newest_end, src_wm):
                reason = LATE_OUT_OF_ORDER
            elif was_idle:
                reason = LATE_IDLE_SOURCE
            elif new:
                reason = LATE_NEW_SOURCE
            else:
                reason = LATE_WINDOW_CLOSED
            closed_to = sw.emitted_end + self.spec.lateness_ms if sw.emitted_end != NO_TIME else NO_TIME
            self.last_late = Late(reason, max(wm, closed_to), src_wm, src)
        if closed:
            self._pending.extend((key, c) for c in closed)
        if own:
            t = ts_ms if max_ts_ms is None else max_ts_ms
            st.watermark = max(st.watermark, t)
        self.dirty.add(key)
        self._check.add(key)
        return ok

    def advance(self, now_ms: int | None = None) -> Iterator[tuple[str, Closed]]:
        """Yield (series key, closed window) for every window the watermarks closed since the last call
        (sources that went idle by `now_ms` no longer hold their series back)."""
        self._tick(now_ms)
        if self._pending:
            pending, self._pending = self._pending, []
            yield from pending
        if self.now_ms < self.hold_until_ms:
            return
        if self.idle_ms is not None:
            for st in self.sources.values():
                a = self._active(st)
                if a != st.active:
                    st.active = a
                    self._check |= st.series
        check, self._check = self._check, set()
        for key in sorted(check):
            sw = self.series.get(key)
            if sw is None:
                continue
            wm = self.watermark(sw)
            if wm == NO_TIME:
                continue
            closed = sw.close(wm)
            if closed:
                self.dirty.add(key)
                yield from ((key, c) for c in closed)

    def flush(self) -> Iterator[tuple[str, Closed]]:
        """Close everything (end of a bounded input): every series as if its sources' time jumped far
        ahead (zero-filled windows go up to the series' own watermark, not beyond)."""
        yield from self.advance()
        for key in sorted(self.series):
            sw = self.series[key]
            closed = []
            wm = self.watermark(sw)
            if sw.zero_fill and wm != NO_TIME:
                closed += sw.close(wm)
            last = max(sw.panes, default=None)
            if last is not None:
                closed += sw.close(last + self.spec.size_ms + self.spec.lateness_ms)
            if closed:
                self.dirty.add(key)
            yield from ((key, c) for c in closed)
