"""The batch path: a whole batch of raw records in, one message per series out, folded exactly once.

Why: under Faust, each raw record cost about ten asyncio callbacks, and a kill between producing a
batch's points and committing its raw offsets replayed those records as *new* points (double counts).
Here a batch of one raw partition's records (offsets `lo..hi`) is validated, enriched and derived in
one pass (`BatchMapper`; log records through the plain-dict lane `streams.fast_log`, metric samples
through `streams.fast_metric`, where they are sure, the pydantic reference otherwise), and its points
are pre-aggregated into one `SeriesBatch` per series: every
(pane, event-time source) of that series in the batch, plus counter samples one by one (a rate needs
each sample). Each message is stamped with its raw partition (`topic:partition`) and offset range; each
pane and point keeps its event-time source (Kafka partition + shipper host + file, see
`pipeline.source_id`). After a batch's messages, the watermarks its sources reached go to every
partition of the points topic (`MappedBatch.marks`, as `pipeline.Mark`), so the window stage never
sees a source's watermark before the points it covers. The aggregator folds a
message only when its `hi` is past the mark it keeps for that (series, source) (`BatchFolder`), and the
marks are stored with the series state in one table value, so state and marks cannot disagree.
Exactness then needs the replay of a batch to cut at the same offsets: the reader records a batch's
last offset in its commit metadata before it produces (see `streams.raw_reader`).

Same results as the point-by-point reference path (`Stateless` then `Stateful.add` per point, the
sources' marks after the same records), tested by property: watermarks move only through marks, which
come after a batch's points, so no window closes while a batch is folded and a pane of one source is
late all together or not at all (lateness is decided at the aggregator only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from logtide.schemas import DeadLetter, DeadLetterSource, DecodeError, dead_letter
from logtide.streams.derive import COUNTER, GAUGE, Point
from logtide.streams.fast_log import FastLog
from logtide.streams.fast_metric import FastMetric
from logtide.streams.pipeline import Partial, Stateful, Stateless
from logtide.streams.resend import RecentIds, record_id
from logtide.streams.windowing import NO_TIME, Agg, Late, WindowSpec

BATCH_TAG = b'{"b":'  # how a SeriesBatch message starts (older points messages start otherwise)
STATE_TAG = b'{"s":'  # how a table value with marks starts (older values are a bare `Stateful.export`)


class RawRecord(Protocol):
    """What the mapper reads of a consumed record (aiokafka's ConsumerRecord fits)."""

    key: bytes | None
    value: bytes
    offset: int


@dataclass(slots=True)
class SeriesBatch:
    """One series' points from one batch of one source partition (offsets lo..hi)."""

    key: str
    metric: str
    labels: dict[str, str]
    src: str
    lo: int
    hi: int
    # pane, min ts, max ts, agg, event-time source
    panes: list[tuple[int, int, int, Agg, str | None]] = field(default_factory=list)
    points: list[tuple[Point, str | None]] = field(default_factory=list)  # counter samples + source, in input order

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "b": 1, "k": self.key, "m": self.metric, "l": self.labels, "src": self.src, "lo": self.lo,
            "hi": self.hi, "pn": [[p, a, b, agg.to_plain(), es] for p, a, b, agg, es in self.panes],
            "pt": [[p.ts_ms, p.value, p.kind, p.ident, es] for p, es in self.points],
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> SeriesBatch:
        d = orjson.loads(data)
        k, m, lab = d["k"], d["m"], d["l"]
        # (messages written before event-time sources have no source: the series is its own)
        return cls(k, m, lab, d["src"], d["lo"], d["hi"],
                   [(x[0], x[1], x[2], Agg.from_plain(x[3]), x[4] if len(x) > 4 else None) for x in d["pn"]],
                   [(Point(k, m, lab, x[0], x[1], x[2], x[3]), x[4] if len(x) > 4 else None) for x in d["pt"]])


@dataclass(slots=True)
class MappedBatch:
    """What a batch of raw records became."""

    enriched: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    series: list[SeriesBatch] = field(default_factory=list)
    marks: list[tuple[str, int]] = field(default_factory=list)  # (event-time source, watermark), after `series`
    skew: dict[str, int] = field(default_factory=dict)
    untimed: int = 0
    errors: int = 0  # records an operator raised on (dead-lettered with stage and reason)
    resent: int = 0  # records a shipper sent again (an id among the partition's recent ones): out of windows


class _Acc:
    """One series' combining state inside a batch."""

    __slots__ = ("labels", "metric", "panes", "points")

    def __init__(self, metric: str, labels: dict[str, str]) -> None:
        self.metric, self.labels = metric, labels
        # (pane, source) -> [min ts, max ts, sum, min, max, {value: count}]
        self.panes: dict[tuple[int, str], list[Any]] = {}
        self.points: list[tuple[Point, str]] = []  # counter samples


def operator_dead_letter(raw: bytes, stage: str, exc: BaseException, source: DeadLetterSource) -> DeadLetter:
    """A record an operator raised on: kept with the stage and the exception, never a crash loop."""
    err = DecodeError("operator_error", f"{stage}: {type(exc).__name__}: {exc}"[:500])
    return dead_letter(raw, err, source.model_copy(update={"stage": stage}))


class BatchMapper:
    """Validate, enrich, derive and combine a batch of one raw partition's records."""

    def __init__(self, cfg: Any, stateless: Stateless | None = None) -> None:
        self.stateless = stateless or Stateless(cfg)
        self.fast = FastLog(self.stateless)
        self.fast_metric = FastMetric(self.stateless)
        w = cfg.window
        self.spec = WindowSpec(w.size_ms, w.step_ms, w.lateness_ms, w.relative_accuracy)
        self.recent: dict[tuple[str, int], RecentIds] = {}  # raw partition -> ids of its recent records

    def learn(self, records: Sequence[RawRecord], topic: str, partition: int) -> None:
        """Remember the ids of records read back before a partition's committed offset (they were
        counted by whoever read them first): a shipper's resend of them stays out of the windows."""
        recent = self.recent.setdefault((topic, partition), RecentIds())
        for rec in records:
            i = record_id(rec.value)
            if i is not None:
                recent.seen(i)

    def forget(self, topic: str, partition: int) -> None:
        """The partition went to another reader (or is read back again)."""
        self.recent.pop((topic, partition), None)

    def logs(self, records: Sequence[RawRecord], topic: str, partition: int, now: datetime) -> MappedBatch:
        return self._map(records, topic, partition, now, True)

    def metrics(self, records: Sequence[RawRecord], topic: str, partition: int, now: datetime) -> MappedBatch:
        return self._map(records, topic, partition, now, False)

    def _map(self, records: Sequence[RawRecord], topic: str, partition: int, now: datetime,
             is_log: bool) -> MappedBatch:
        out = MappedBatch()
        if not records:
            return out
        spec, sl = self.spec, self.stateless
        accs: dict[str, _Acc] = {}
        step = spec.step_ms
        recent = self.recent.get((topic, partition))
        if recent is None:
            recent = self.recent[topic, partition] = RecentIds()
        resent = recent.seen
        fast = self.fast if is_log and self.fast.usable else None
        fast_metric = self.fast_metric if not is_log and self.fast_metric.usable else None
        groups: dict[tuple[int, int, str], list[Any]] = {}
        enriched, skews = out.enriched, out.skew
        for rec in records:
            raw = rec.value
            f = fast(raw, now, partition) if fast is not None else None
            if f is not None:  # the plain-dict lane (`streams.fast_log`): the same outcome, cheaper
                data, skew, untimed, esrc, ts, combo, latency, event_id = f
                enriched.append((rec.key, data))
                if resent(event_id):
                    out.resent += 1  # forwarded all the same (sinks write by id), counted once
                    continue
                if skew:
                    skews[skew] = skews.get(skew, 0) + 1
                if untimed:
                    out.untimed += 1
                if combo is not None:
                    # the constant-valued points (counts, 0/1 error): counted per (kind of event, pane,
                    # source), spread over their series at the end (exact: sums of 0s and 1s)
                    pane = ts - ts % step
                    gk = (id(combo), pane, esrc)  # `groups` keeps combo alive: its id stays its own
                    g = groups.get(gk)
                    if g is None:
                        groups[gk] = [combo, pane, esrc, 1, ts, ts]
                    else:
                        g[3] += 1
                        if ts < g[4]:
                            g[4] = ts
                        elif ts > g[5]:
                            g[5] = ts
                    if latency is not None:  # every value, in input order (a float sum depends on it)
                        key, metric, labels = combo.latency
                        acc = accs.get(key)
                        if acc is None:
                            acc = accs[key] = _Acc(metric, labels)
                        _combine(acc.panes, (pane, esrc), ts, latency)
                continue
            m = fast_metric(raw, now, partition) if fast_metric is not None else None
            if m is not None:  # the samples' lane (`streams.fast_metric`): the same outcome, cheaper
                p, skew, untimed, esrc, event_id = m
                if resent(event_id):
                    out.resent += 1
                    continue
                if skew:
                    skews[skew] = skews.get(skew, 0) + 1
                if untimed:
                    out.untimed += 1
                if p is not None:
                    _add_point(accs, p, esrc, step)
                continue

            def source(rec: RawRecord = rec) -> DeadLetterSource:
                return DeadLetterSource(stage="validate", topic=topic, partition=partition, offset=rec.offset)

            stage = "log_operators" if is_log else "metric_operators"
            try:
                if is_log:
                    r = sl.log(raw, now, source, partition)
                    if r.dead is None:
                        stage = "encode"
                        # pydantic's own JSON writer: the same bytes as `schemas.encode` (tested), ~4 us less
                        enriched.append((rec.key, r.event.model_dump_json(by_alias=True, exclude_none=True)
                                         .encode()))
                    pts = r.points
                else:
                    r = sl.metric(raw, now, source, partition)  # type: ignore[assignment]
                    pts = [r.point] if r.point is not None else []  # type: ignore[attr-defined]
            except Exception as exc:
                out.errors += 1
                out.dead.append(operator_dead_letter(raw, stage, exc, source()))
                continue
            if r.dead is not None:
                out.dead.append(r.dead)
                continue
            if resent((r.event if is_log else r.sample).event.id):  # type: ignore[union-attr]
                out.resent += 1  # forwarded all the same (sinks write by id), counted once
                continue
            if r.skew:
                skews[r.skew] = skews.get(r.skew, 0) + 1
            if r.untimed:
                out.untimed += 1
            esrc = r.src
            for p in pts:
                _add_point(accs, p, esrc, step)
        for combo, pane, esrc, n, t_lo, t_hi in groups.values():
            pk = (pane, esrc)
            for key, metric, labels, v in combo.consts:
                acc = accs.get(key)
                if acc is None:
                    acc = accs[key] = _Acc(metric, labels)
                _combine_n(acc.panes, pk, t_lo, t_hi, v, n)
        src = f"{topic}:{partition}"
        lo, hi = records[0].offset, records[-1].offset
        alpha = spec.alpha
        for key, acc in accs.items():
            panes = sorted(((p, c[0], c[1], _agg(c, alpha), es) for (p, es), c in acc.panes.items()),
                           key=lambda x: x[2])
            out.series.append(SeriesBatch(key, acc.metric, acc.labels, src, lo, hi, panes, acc.points))
        out.marks = sl.take_marks("log" if is_log else "metric")
        return out


def _add_point(accs: dict[str, _Acc], p: Point, esrc: str, step: int) -> None:
    """One point into its series' combining state: a gauge into its (pane, source) cell; counter
    samples (rates need every sample) and staleness markers one by one."""
    acc = accs.get(p.key)
    if acc is None:
        acc = accs[p.key] = _Acc(p.metric, p.labels)
    if p.kind != GAUGE:
        acc.points.append((p, esrc))
        return
    ts = p.ts_ms
    _combine(acc.panes, (ts - ts % step, esrc), ts, p.value)


def _combine(panes: dict[tuple[int, str], list[Any]], pk: tuple[int, str], ts: int, v: float) -> None:
    """One gauge value into its (pane, source) cell: [min ts, max ts, sum, min, max, {value: count}]."""
    cell = panes.get(pk)
    if cell is None:
        # min/max as Agg.add computes them (from +-inf), so even a NaN ends up where it would
        panes[pk] = [ts, ts, v, min(_INF, v), max(-_INF, v), {v: 1}]
        return
    if ts < cell[0]:
        cell[0] = ts
    elif ts > cell[1]:
        cell[1] = ts
    cell[2] += v  # summed in input order, as Agg.add does: the same float
    cell[3] = min(cell[3], v)
    cell[4] = max(cell[4], v)
    counts = cell[5]
    counts[v] = counts.get(v, 0) + 1


def _combine_n(panes: dict[tuple[int, str], list[Any]], pk: tuple[int, str], t_lo: int, t_hi: int,  # noqa: PLR0917
               v: float, n: int) -> None:
    """`n` times the value `v` (a 0 or a 1: its sum is exact in any order) at times within [t_lo, t_hi]."""
    cell = panes.get(pk)
    if cell is None:
        panes[pk] = [t_lo, t_hi, v * n, v, v, {v: n}]
        return
    cell[0] = min(cell[0], t_lo)
    cell[1] = max(cell[1], t_hi)
    cell[2] += v * n
    cell[3] = min(cell[3], v)
    cell[4] = max(cell[4], v)
    counts = cell[5]
    counts[v] = counts.get(v, 0) + n


_INF = math.inf


def late_batch_dead_letter(
    data: bytes, event_ms: int, late: Late | None, lateness_ms: int, *, n: int, source: DeadLetterSource
) -> DeadLetter:
    """Late events of a folded `SeriesBatch` (its whole message kept), with the reason and the
    watermarks they were behind, for the dead-letter topic."""
    why = (f"{late.reason}: {n} event(s) at or before {_iso(event_ms)} behind the series' watermark "
           f"{_iso(late.series_watermark_ms)} (their source {late.source!r} at {_iso(late.source_watermark_ms)})"
           if late is not None else f"{n} event(s) at or before {_iso(event_ms)} behind the watermark")
    err = DecodeError(
        "late_event",
        f"{why} by more than the allowed lateness ({lateness_ms} ms) for every window holding them",
        "@timestamp",
    )
    return dead_letter(data, err, source.model_copy(update={"stage": "window", "expected_schema": "series_batch"}))


def refused_dead_letter(data: bytes, why: str, source: DeadLetterSource) -> DeadLetter:
    """A folded message whose points the cardinality guard refused (`CardinalityGuard.why`), kept whole."""
    err = DecodeError("cardinality_overflow", why)
    return dead_letter(data, err, source.model_copy(update={"stage": "window", "expected_schema": "series_batch"}))


def _iso(ms: int) -> str:
    if ms <= NO_TIME // 2:
        return "none yet"
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat()
    except (ValueError, OverflowError, OSError):  # a time no calendar holds: say so, never crash
        return f"{ms} ms"


def _agg(cell: list[Any], alpha: float) -> Agg:
    """A pane's Agg from its combining cell: the sketch gets each distinct value once, with its count
    (one logarithm per distinct value instead of one per event; the same buckets)."""
    agg = Agg(alpha)
    counts = cell[5]
    agg.count = sum(counts.values())
    agg.sum, agg.min, agg.max = cell[2] + 0.0, cell[3], cell[4]
    add = agg.sketch.add
    for v, n in counts.items():
        add(v, n)
    return agg


Marks = dict[str, dict[str, int]]  # original series key -> source -> last offset folded


class BatchFolder:
    """Folds `SeriesBatch` messages into a `Stateful` exactly once per (series, source, offset range)."""

    def __init__(self, sf: Stateful) -> None:
        self.sf = sf
        self.marks: dict[str, Marks] = {}  # state key -> marks of the series folded into it
        self._tops: dict[str, dict[str, int]] = {}  # overflow state key -> newest batch end per source
        self.dirty: set[str] = set()
        self.duplicates = 0
        self.late_ts = 0  # newest event time among the late events of the last `fold`
        self.last_late: Late | None = None  # why the last late events were late

    def fold(self, msg: SeriesBatch, now_ms: int | None = None) -> int | None:
        """Fold a message in (`now_ms`: the wall clock, for the sources' idleness); the number of its
        events that were late, or None for a replay."""
        sf = self.sf
        kind = COUNTER if any(p.kind == COUNTER for p, _ in msg.points) else GAUGE
        akey = sf.guard.key_for(msg.metric, msg.key, kind)
        if akey is None:  # refused by the cardinality guard: no state, so no marks (a replay is refused again)
            m: dict[str, int] = {}
        else:
            marks = self.marks.setdefault(akey, {})
            if akey != msg.key and self._overflow_replayed(akey, marks, msg.src, msg.hi):
                self.duplicates += 1
                return None
            m = marks.setdefault(msg.key, {})
        if m.get(msg.src, -1) >= msg.hi:
            self.duplicates += 1
            return None
        late = 0
        for pane, lo, hi, agg, esrc in msg.panes:
            n = sf.add_partial(Partial(msg.key, msg.metric, msg.labels, pane, lo, hi, agg, esrc), None, now_ms)
            if n:
                late += n
                self.late_ts = hi
                self.last_late = sf.last_late
        for p, esrc in msg.points:
            if sf.add(p, src=esrc, now_ms=now_ms) is not None:
                late += 1
                self.late_ts = p.ts_ms
                self.last_late = sf.last_late
        if akey is not None:
            m[msg.src] = msg.hi
            self.dirty.add(akey)
        return late

    def _overflow_replayed(self, akey: str, marks: Marks, src: str, hi: int) -> bool:
        """Marks of an overflow series (any number of series folded into one state) are kept for the
        newest batch of each source only, so that they stay as bounded as the state: a message of an
        older batch of that source is a replay (one reader produces a source's batches in order, and
        only the last announced one is ever produced again), and a newer batch drops the older marks."""
        tops = self._tops.get(akey)
        if tops is None:
            tops = self._tops[akey] = {}
            for per_src in marks.values():
                for s, h in per_src.items():
                    tops[s] = max(tops.get(s, -1), h)
        top = tops.get(src, -1)
        if hi < top:
            return True
        if hi > top:
            for k in [k for k, per_src in marks.items() if src in per_src]:
                del marks[k][src]
                if not marks[k]:
                    del marks[k]
            tops[src] = hi
        return False

    def evict_idle(self, after_ms: int) -> list[str]:
        """Drop series with no open window whose newest window with data ended `after_ms` before the
        partition's newest source watermark (their windows were all emitted already); returns their
        keys, to delete from the table.
        A replay of one of their batches after this would fold again: keep `after_ms` well above the
        time a kill and restart take (the default is an hour of event time)."""
        sf = self.sf
        w = sf.windows
        top = w.stream_time_ms
        if top == NO_TIME:
            return []
        horizon = top - after_ms
        gone = [k for k, s in sf.series.items() if not s.windows.panes and s.windows.last_data_end < horizon]
        for k in gone:
            s = sf.series.pop(k)
            sw = w.series.pop(k, None)
            w.dirty.discard(k)
            for src in sw.sources if sw is not None else ():
                st = w.sources.get(src)
                if st is not None:
                    st.series.discard(k)
            sf.guard.forget(s.metric, k)
            self.marks.pop(k, None)
            self._tops.pop(k, None)
            self.dirty.discard(k)
        return gone

    def take_dirty(self) -> list[str]:
        """State keys to write back: series the operators changed, and those whose marks moved."""
        keys = set(self.sf.take_dirty()) | {k for k in self.dirty if k in self.sf.series}
        self.dirty.clear()
        return sorted(keys)

    def export(self, key: str) -> bytes:
        """A table value: the series state and its marks, together (one write, one changelog record)."""
        return orjson.dumps({"s": orjson.Fragment(self.sf.export(key)), "x": self.marks.get(key, {})})

    def restore(self, key: str, blob: bytes, now_ms: int | None = None) -> None:
        """Install a table value written by `export` (or a bare `Stateful.export` from before marks)."""
        if blob[:5] == STATE_TAG:
            d = orjson.loads(blob)
            self.sf.restore(key, orjson.dumps(d["s"]), now_ms)
            self.marks[key] = d.get("x") or {}
            self._tops.pop(key, None)
        else:
            self.sf.restore(key, blob, now_ms)
