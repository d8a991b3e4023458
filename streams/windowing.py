"""Event-time windows: tumbling and hopping, with allowed lateness, per series.

Windows are built from panes `step` wide; a window of `size` (a multiple of `step`) is the merge of
`size/step` consecutive panes. Each pane keeps count, sum, min, max and a mergeable log-bucket quantile
sketch (the DDSketch construction, relative-accuracy guarantee), so a hopping window costs one pane
update per event and one merge at close, and percentiles stay honest across panes.

Semantics (those of Kafka Streams with a grace period): stream time is the largest event time seen;
a window [start, end) closes once `stream_time >= end + lateness` and is emitted exactly once. An
event whose every window has closed is *late*: it is returned to the caller (for the dead-letter
topic), never folded into an emitted window. An event that still has an open window is folded into the
open ones only (closed windows are immutable by construction: they were emitted already).

All state is plain data (`to_plain` / `from_plain`), so it round-trips through a Faust table.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
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
        """The `Stats` fields of the schema."""
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


@dataclass(slots=True)
class Closed:
    """A window that just closed: emit it once."""

    start_ms: int
    end_ms: int
    agg: Agg


@dataclass(slots=True)
class SeriesWindows:
    """The open panes of one series and the end of the last window emitted."""

    spec: WindowSpec
    panes: dict[int, Agg] = field(default_factory=dict)
    emitted_end: int = -(1 << 62)  # windows ending at or before this were emitted (or skipped as empty)
    stream_ms: int = -(1 << 62)  # this series' stream time: the largest event time it has seen

    def add(self, ts_ms: int, value: float | Agg, stream_time_ms: int) -> tuple[bool, list[Closed]]:
        """Fold a value (or a partial aggregate of values of the same pane) in if one of its windows
        is still open (False when it is late).

        Windows that stream time has closed but that were not emitted yet are closed first (and
        returned), so the value cannot leak into them.
        """
        spec = self.spec
        pane = spec.pane_of(ts_ms)
        newest_end = pane + spec.size_ms
        if spec.closed(newest_end, stream_time_ms) or newest_end <= self.emitted_end:
            return False, []
        closed: list[Closed] = []
        if spec.closed(pane + spec.step_ms, stream_time_ms):
            closed = self.close(stream_time_ms)
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

    def next_close_ms(self) -> int | None:
        """Stream time at which the oldest pending window closes (None when nothing is pending)."""
        if not self.panes:
            return None
        first_end = max(min(self.panes) + self.spec.step_ms, self.emitted_end + self.spec.step_ms)
        return first_end + self.spec.lateness_ms

    def close(self, stream_time_ms: int) -> list[Closed]:
        """Emit every window with data that closed by `stream_time_ms`, oldest first; drop dead panes."""
        spec = self.spec
        out: list[Closed] = []
        limit_end = stream_time_ms - spec.lateness_ms  # windows ending <= this are closed
        limit_end -= limit_end % spec.step_ms
        if not self.panes:
            self.emitted_end = max(self.emitted_end, limit_end)
            return out
        start_end = max(min(self.panes) + spec.step_ms, self.emitted_end + spec.step_ms)
        end = start_end
        while end <= limit_end and self.panes:
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
            # the pane starting at `start` belongs to no later window
            self.panes.pop(start, None)
            # skip the empty windows between here and the next pane
            end = max(end + spec.step_ms, min(self.panes) + spec.step_ms) if self.panes else end + spec.step_ms
        self.emitted_end = max(self.emitted_end, limit_end)
        # panes fully behind the emitted horizon can go
        for p in [p for p in self.panes if p + spec.size_ms <= self.emitted_end]:
            del self.panes[p]
        return out

    def to_plain(self) -> list[Any]:
        return [self.emitted_end, [[p, a.to_plain()] for p, a in self.panes.items()], self.stream_ms]

    @classmethod
    def from_plain(cls, spec: WindowSpec, d: list[Any]) -> SeriesWindows:
        return cls(spec, {int(p): Agg.from_plain(a) for p, a in d[1]}, int(d[0]), int(d[2]))


class WindowAggregator:
    """Windows of many series.

    Stream time is kept *per series* (the largest event time of that series): lateness and window
    closing are judged against the series' own progress, so one source running ahead of another
    (two Kafka partitions read at different speeds) does not make the slower one's events late.
    A series that goes quiet has its windows closed once the largest event time of all series passes
    their close time by `idle_ms` (None: only its own events or `flush` close them).
    """

    def __init__(self, spec: WindowSpec, idle_ms: int | None = None) -> None:
        self.spec = spec
        self.idle_ms = idle_ms
        self.series: dict[str, SeriesWindows] = {}
        self.stream_time_ms: int = -(1 << 62)  # largest event time of all series
        self._heap: list[tuple[int, str]] = []  # (idle close time, key)
        self._scheduled: dict[str, int] = {}
        self._pending: list[tuple[str, Closed]] = []
        self.dirty: set[str] = set()

    def get(self, key: str) -> SeriesWindows:
        sw = self.series.get(key)
        if sw is None:
            sw = self.series[key] = SeriesWindows(self.spec)
        return sw

    def put(self, key: str, sw: SeriesWindows) -> None:
        """Install restored state for a series."""
        self.series[key] = sw
        self.observe_time(sw.stream_ms)
        self._schedule(key, sw)

    def observe_time(self, ts_ms: int) -> None:
        self.stream_time_ms = max(self.stream_time_ms, ts_ms)

    def add(self, key: str, ts_ms: int, value: float | Agg, max_ts_ms: int | None = None) -> bool:
        """Advance the series' stream time with the event (or a partial's latest event), fold it in
        unless it is late, and close the windows its stream time closed."""
        t = ts_ms if max_ts_ms is None else max_ts_ms
        self.observe_time(t)
        sw = self.get(key)
        sw.stream_ms = max(sw.stream_ms, t)
        ok, closed = sw.add(ts_ms, value, sw.stream_ms)
        due = sw.next_close_ms()
        if due is not None and due <= sw.stream_ms:
            closed += sw.close(sw.stream_ms)
        if closed:
            self._pending.extend((key, c) for c in closed)
        self.dirty.add(key)
        self._schedule(key, sw)
        return ok

    def _schedule(self, key: str, sw: SeriesWindows) -> None:
        if self.idle_ms is None:
            return
        t = sw.next_close_ms()
        if t is None:
            self._scheduled.pop(key, None)
            return
        t += self.idle_ms
        if self._scheduled.get(key) != t:
            self._scheduled[key] = t
            heapq.heappush(self._heap, (t, key))

    def advance(self) -> Iterator[tuple[str, Closed]]:
        """Yield (series key, closed window): those closed by their series' events since the last call,
        then those of series idle for longer than `idle_ms`."""
        if self._pending:
            pending, self._pending = self._pending, []
            yield from pending
        if self.idle_ms is None:
            return
        st = self.stream_time_ms
        heap = self._heap
        while heap and heap[0][0] <= st:
            t, key = heapq.heappop(heap)
            if self._scheduled.get(key) != t:
                continue  # superseded entry
            del self._scheduled[key]
            sw = self.series.get(key)
            if sw is None:
                continue
            sw.stream_ms = max(sw.stream_ms, st - self.idle_ms)
            closed = sw.close(sw.stream_ms)
            if closed:
                self.dirty.add(key)
            yield from ((key, c) for c in closed)
            self._schedule(key, sw)

    def flush(self) -> Iterator[tuple[str, Closed]]:
        """Close everything (end of a bounded input): as if every series' time jumped far ahead."""
        yield from self.advance()
        for key, sw in self.series.items():
            closed = sw.close(1 << 61)
            if closed:
                self.dirty.add(key)
            yield from ((key, c) for c in closed)
