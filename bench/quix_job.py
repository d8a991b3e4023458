"""The streams job written with Quix Streams, for bench_streams.py (runs in `.venv/quix`, see quix_venv.py).

The same job as the logtide worker, in Quix's own terms:

  raw --apply(operators, per record)--> logs.enriched.quix
      \\--sink(CombiningSink)--> points.quix (one message per series per checkpoint and raw partition)
  points.quix --tumbling_window(PaneMerge).final()--apply(detect, stateful)--> metrics.agg.quix
                                                                           \\--> anomalies.quix

- Operators: ours (`map_record`): the plain-dict lane `streams.fast_log`, the pydantic reference where
  the lane declines, per record (Quix calls a function per record; the worker runs the same code in
  a loop over a batch).
- Map-side combining, the same as `streams.batch.BatchMapper`: the points of a raw partition's records
  are combined per (series, pane, event-time source) with the mapper's own cells (`_combine`,
  `_combine_n`, `_agg`), into the same `SeriesBatch` messages. The batch is what Quix handed on
  between two checkpoints (commit_interval 0.5 s) instead of one getmany. The buffer is flushed by a
  Sink because a sink is the one place Quix lets a step hold records past their processing: its
  `flush()` runs at every checkpoint before the producer flush and the offset commit
  (Checkpoint.commit steps 1, 3, 4), so nothing buffered can be committed unsent; a failed flush
  aborts the checkpoint and the records are read again. Shutdown and revocation commit through the
  same path. With backpressure the buffer is dropped and the consumer seeks back (on_paused).
- Windows: Quix's tumbling window, the custom aggregator `PaneMerge` merging the partials' `Agg`
  (count, sum, min, max and the same DDSketch `streams.windowing.Sketch`), so p50/p90/p99 are
  computed as ours; closed per series (Quix's closing_strategy="key": a series' newest timestamp,
  with the same grace as our lateness). Here each series has one source (its raw key is its
  service/host), so that is our per-source watermark; "partition" would close on the newest time of
  any series in the points partition, and the partials of raw partitions read at different speeds
  came late there (196 of 342 windows short in a run). Output: the same `WindowAggregate` record
  (schema, fields, id) our worker writes.
- Detection: the same `Detection.observe` per series, its state in Quix state; anomalies as ours.

What it cannot do the same way (said in the bench's docstring too):
- Exactness under kill -9: Quix at-least-once (its default, used here) replays what was processed
  after the last commit, and the combined partials of a replayed checkpoint are produced again and
  folded again (double counts). Our worker cuts replays at the same offsets and skips them (batch
  intents + per-source marks). Quix's exactly-once mode would cover its own producer, not the sink's.
- Event time: Quix closes a series' windows on the newest timestamp of that series (or of its
  partition); ours close on the slowest of the series' sources' watermarks, with idleness, so a
  series fed by several sources (not in this input) would lose the slower sources' points in Quix.
  Late points are dropped by Quix (a warning), dead-lettered by ours. A series' last windows close
  in Quix only when a newer point of that series comes.
- Counter samples (rates) and cross-series views are not in this job (the bench's input is logs), so
  the Quix side has no rate logic; shipper resends are not deduplicated (the input has none).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]

from logtide.schemas import EventInfo, Series, Stats, Topics, Window, WindowAggregate, encode, stable_id  # noqa: E402
from logtide.streams.batch import SeriesBatch, _Acc, _add_point, _agg, _combine, _combine_n  # noqa: E402  (the mapper's own cells)
from logtide.streams.derive import Point  # noqa: E402
from logtide.streams.fast_log import FastLog  # noqa: E402
from logtide.streams.pipeline import Stateless  # noqa: E402
from logtide.streams.windowing import Agg, WindowSpec  # noqa: E402

# What `map_record` hands on: (enriched bytes, event-time source, time ms, fast-lane series or None,
# latency value or None, reference-lane points or None)
Mapped = tuple[bytes, str, int, Any, float | None, list[Point] | None]


def map_record(fast: FastLog, sl: Stateless, raw: bytes, now: datetime, partition: int | None) -> Mapped | None:
    """Validate, enrich and derive one raw log record as the worker's mapper does (None: a dead letter)."""
    try:
        f = fast(raw, now, partition) if fast.usable else None
        if f is not None:
            data, _skew, _untimed, esrc, ts, combo, latency, _id = f
            return data, esrc, ts, combo, latency, None
        r = sl.log(raw, now, None, partition)
        if r.dead is not None:
            return None
        return r.event.model_dump_json(by_alias=True, exclude_none=True).encode(), r.src, 0, None, None, r.points
    except Exception:  # an operator raising on one record: out, never a crash loop (the worker dead-letters it)
        return None


@dataclass(slots=True)
class PartitionCombiner:
    """The points of one raw partition's records since the last checkpoint, combined per series, pane and
    event-time source exactly as `BatchMapper._map` combines a batch (equivalence: tests/streams/
    test_bench_quix_combine.py)."""

    spec: WindowSpec
    lo: int = -1
    hi: int = -1
    accs: dict[str, _Acc] = field(default_factory=dict)
    groups: dict[tuple[int, int, str], list[Any]] = field(default_factory=dict)

    def add(self, offset: int, m: Mapped | None) -> None:
        """One record's outcome (None: it was dead-lettered; it still counts in the offset range)."""
        if self.lo < 0:
            self.lo = offset
        self.hi = offset
        if m is None:
            return
        _data, esrc, ts, combo, latency, points = m
        step = self.spec.step_ms
        accs = self.accs
        if combo is not None:
            pane = ts - ts % step
            gk = (id(combo), pane, esrc)  # `groups` keeps combo alive: its id stays its own
            g = self.groups.get(gk)
            if g is None:
                self.groups[gk] = [combo, pane, esrc, 1, ts, ts]
            else:
                g[3] += 1
                if ts < g[4]:
                    g[4] = ts
                elif ts > g[5]:
                    g[5] = ts
            if latency is not None:
                key, metric, labels = combo.latency
                acc = accs.get(key)
                if acc is None:
                    acc = accs[key] = _Acc(metric, labels)
                _combine(acc.panes, (pane, esrc), ts, latency)
            return
        for p in points or ():
            _add_point(accs, p, esrc, step)

    def drain(self, src: str) -> list[SeriesBatch]:
        """The combined messages (`src`: "topic:partition"); the combiner is empty afterwards."""
        accs = self.accs
        for combo, pane, esrc, n, t_lo, t_hi in self.groups.values():
            pk = (pane, esrc)
            for key, metric, labels, v in combo.consts:
                acc = accs.get(key)
                if acc is None:
                    acc = accs[key] = _Acc(metric, labels)
                _combine_n(acc.panes, pk, t_lo, t_hi, v, n)
        alpha = self.spec.alpha
        out = []
        for key, acc in accs.items():
            panes = sorted(((p, c[0], c[1], _agg(c, alpha), es) for (p, es), c in acc.panes.items()),
                           key=lambda x: x[2])
            out.append(SeriesBatch(key, acc.metric, acc.labels, src, self.lo, self.hi, panes, acc.points))
        self.accs, self.groups, self.lo, self.hi = {}, {}, -1, -1
        return out


def window_aggregate(key: str, start_ms: int, end_ms: int, *, metric: str, labels: dict[str, str], agg: Agg,
                     spec: WindowSpec) -> WindowAggregate:
    """A closed window as the record our worker writes (`Stateful.aggregate` for a gauge series)."""
    end = datetime.fromtimestamp(end_ms / 1000, UTC)
    return WindowAggregate(
        timestamp=end,
        event=EventInfo(id=stable_id("window_aggregate", key, start_ms, end_ms), kind="metric"),
        logtide=WindowAggregate.meta(),
        labels=dict(labels),
        series=Series(metric=metric, key=key, labels=dict(labels)),
        window=Window(start=datetime.fromtimestamp(start_ms / 1000, UTC), end=end,
                      size_seconds=spec.size_ms / 1000, step_seconds=spec.step_ms / 1000),
        stats=Stats(**agg.stats()),
    )


def recount(raw: list[tuple[int, bytes]], windows: list[bytes], cfg: Any) -> tuple[int, int, int]:
    """The Quix windows against a brute-force recount of the input (`raw`: (partition, value) records)
    with the reference operators: (windows equal, windows differing, recounted windows Quix did not emit).
    Equal: the same count, min, max and p50/p90/p99 (the same sketch buckets), sums within 1e-9."""
    sl = Stateless(cfg)
    now = datetime.now(UTC)
    size = cfg.window.size_ms
    values: dict[tuple[str, int], list[float]] = {}
    for part, v in raw:
        for p in sl.log(v, now, None, part).points:
            values.setdefault((p.key, p.ts_ms - p.ts_ms % size), []).append(p.value)
    equal = 0
    seen = set()
    for w in windows:
        d = orjson.loads(w)
        k = (d["series"]["key"], int(datetime.fromisoformat(d["window"]["start"]).timestamp() * 1000))
        seen.add(k)
        xs = values.get(k)
        if not xs:
            continue
        agg = Agg(cfg.window.relative_accuracy)
        for x in xs:
            agg.add(x)
        want, got = agg.stats(), d["stats"]
        want["sum"], want["mean"] = math.fsum(xs), math.fsum(xs) / len(xs)
        equal += all(math.isclose(got[f], want[f], rel_tol=1e-9, abs_tol=1e-9) for f in want)
    return equal, len(windows) - equal, len(values.keys() - seen)


def run(bootstrap: str, prefix: str, group: str, state_dir: str, lateness: str = "5.0") -> None:
    """The job under Quix Streams (runs until SIGTERM)."""
    from bench_streams import WINDOW_S, quix_topics, streams_section
    from logtide.streams.config import StreamsConfig
    from logtide.streams.detect import Detection
    from quixstreams import Application, message_context
    from quixstreams.dataframe.windows.aggregations import Aggregator
    from quixstreams.sinks import BaseSink

    cfg = StreamsConfig.model_validate(streams_section(group, lateness=float(lateness)))
    w = cfg.window
    spec = WindowSpec(w.size_ms, w.step_ms, w.lateness_ms, w.relative_accuracy)
    assert spec.size_ms == spec.step_ms == WINDOW_S * 1000, "the Quix side runs tumbling windows"
    topics = Topics(prefix)
    names = quix_topics(prefix)
    sl = Stateless(cfg)
    fast = FastLog(sl)
    detection = Detection(cfg.detect, spec.step_ms / 1000)
    # the producer and fetch settings of the worker's raw reader (streams/raw_reader.py)
    producer_cfg = {"linger.ms": 5, "batch.size": 1 << 20, "message.max.bytes": 8 << 20,
                    "compression.type": cfg.compression or "none", "enable.idempotence": True}
    app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                      state_dir=state_dir, commit_interval=0.5, loglevel="WARNING",
                      producer_extra_config=producer_cfg,
                      consumer_extra_config={"max.partition.fetch.bytes": 4 << 20, "fetch.max.bytes": 32 << 20})
    raw = app.topic(topics.logs_raw, value_deserializer="bytes", key_deserializer="bytes")
    enriched = app.topic(names["enriched"], value_serializer="bytes", key_serializer="bytes")
    points = app.topic(names["points"], value_deserializer="bytes", key_deserializer="str")
    aggs = app.topic(names["agg"], value_serializer="bytes", key_serializer="str")
    anomalies = app.topic(names["anomalies"], value_serializer="bytes", key_serializer="str")

    class CombiningSink(BaseSink):
        """Each raw partition's points, combined (`combine`, a step of the record's own chain); sent at
        every checkpoint before the offsets are committed (see the module docstring for why a sink).
        It is also the chain's terminal step, whose `add` has nothing left to do: combining happens
        before the enriched record is produced, in one chain, because a branch point would make Quix
        copy (pickle) every record's outcome for the second branch."""

        def __init__(self) -> None:
            super().__init__()
            self.buffers: dict[tuple[str, int], PartitionCombiner] = {}
            self.producer = app.get_producer()
            self.failed: list[str] = []

        def combine(self, m: Mapped | None) -> None:
            ctx = message_context()
            b = self.buffers.get((ctx.topic, ctx.partition))
            if b is None:
                b = self.buffers[(ctx.topic, ctx.partition)] = PartitionCombiner(spec)
            b.add(ctx.offset, m)

        def add(self, value: Any, key: Any, timestamp: int, headers: Any, topic: str,  # noqa: PLR0917
                partition: int, offset: int) -> None:  # (BaseSink.add's signature)
            return None

        def flush(self) -> None:
            buffers, self.buffers = self.buffers, {}
            produce = self.producer.produce
            for (topic, partition), b in buffers.items():
                for sb in b.drain(f"{topic}:{partition}"):
                    produce(points.name, sb.to_bytes(), sb.key.encode(), on_delivery=self._delivered)
            left = self.producer.flush(30)
            if left or self.failed:  # the checkpoint is aborted: the records are read and combined again
                why, self.failed = self.failed[:1], []
                raise RuntimeError(f"combined points not delivered: {left} left, {why}")

        def _delivered(self, err: Any, _msg: Any) -> None:
            if err is not None:
                self.failed.append(str(err))

        def on_paused(self) -> None:
            self.buffers.clear()  # the consumer seeks back to the last commit: they are read again

    class PaneMerge(Aggregator):
        """Window state [metric, labels, Agg.to_plain()]: the partials' panes merged, as our folder does."""

        def initialize(self) -> None:
            return None

        def agg(self, old: list[Any] | None, new: list[Any], timestamp: int) -> list[Any]:
            if old is None:
                return new
            a = Agg.from_plain(old[2])
            a.merge(Agg.from_plain(new[2]))
            return [old[0], old[1], a.to_plain()]

        def result(self, value: list[Any] | None) -> list[Any] | None:
            return value

    def operators(v: bytes) -> Mapped | None:
        return map_record(fast, sl, v, datetime.now(UTC), message_context().partition)

    combiner = CombiningSink()
    sdf = app.dataframe(raw).apply(operators)
    sdf = sdf.update(combiner.combine)  # every record, dead ones too: a batch's offset range as the mapper's
    sdf = sdf.filter(lambda m: m is not None).apply(lambda m: m[0]).to_topic(enriched)
    sdf.sink(combiner)

    def panes(data: bytes) -> list[list[Any]]:
        sb = SeriesBatch.from_bytes(data)
        # (counter samples, sb.points, do not occur in this job: see the module docstring)
        return [[sb.metric, sb.labels, agg.to_plain(), hi] for _pane, _lo, hi, agg, _src in sb.panes]

    pts = app.dataframe(points).apply(panes, expand=True)
    pts = pts.set_timestamp(lambda value, key, ts, headers: value[3])
    pts = pts.apply(lambda p: p[:3])
    windows = pts.tumbling_window(spec.size_ms, grace_ms=spec.lateness_ms).agg(w=PaneMerge()).final()

    def detect(value: dict[str, Any], key: str, _ts: int, _headers: Any, state: Any) -> tuple[bytes, bytes | None]:
        metric, labels, plain = value["w"]
        agg = window_aggregate(key, value["start"], value["end"], metric=metric, labels=labels,
                               agg=Agg.from_plain(plain), spec=spec)
        if not cfg.detect.enabled or detection.stat_for(metric) is None:
            return encode(agg), None
        plain_det = state.get("d")
        sd = detection.restore(plain_det) if plain_det is not None else detection.new(metric)
        anomaly = detection.observe(sd, agg)
        state.set("d", sd.to_plain())
        return encode(agg), encode(anomaly) if anomaly is not None else None

    out = windows.apply(detect, stateful=True, metadata=True)
    out.apply(lambda r: r[0]).to_topic(aggs)
    out.filter(lambda r: r[1] is not None).apply(lambda r: r[1]).to_topic(anomalies)
    app.run()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "bench"))
    run(*sys.argv[1:6])
