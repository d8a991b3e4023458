"""The batch path (`BatchMapper` + `BatchFolder`) gives what the point-by-point reference path gives.

Reference: `Stateless.log` per record, `Stateful.add` per point (with its event-time source),
`advance` after each record, the sources' watermark marks after the last record of each batch (where
the Faust path sends them). Batch path: random batch cuts, one `SeriesBatch` per series per batch,
folded by the aggregator, then the batch's marks; restarts at random points (state and marks exported to bytes and restored in a
fresh folder), and every batch's messages delivered a second time after some restarts (the replay
after a kill). Compared: enriched events (as parsed JSON), dead letters (reason, field, source,
original bytes), late event counts, every closed window's statistics and the anomalies.
"""

from __future__ import annotations

import base64
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logtide.schemas import encode
from logtide.streams.batch import BatchFolder, BatchMapper, SeriesBatch
from logtide.streams.config import StreamsConfig
from logtide.streams.pipeline import Stateful, Stateless

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)


def cfg(lateness: float, cap: int = 1000, idle: float | None = None, step: float | None = None) -> StreamsConfig:
    return StreamsConfig.model_validate({
        "window": {"size_seconds": 10, "step_seconds": step, "lateness_seconds": lateness, "group_by": ["service"],
                   "idle_timeout_seconds": idle},
        "detect": {"detector": "test_z", "params": {"warmup": 3, "z_alarm": 1.5}, "threshold": 0.5,
                   "rules": [{"metric": "log.events", "stat": "count"}, {"metric": "*", "stat": "mean"}]},
        "max_series_per_metric": cap,
    })


class Rec:
    __slots__ = ("key", "offset", "value")

    def __init__(self, key: bytes | None, value: bytes, offset: int) -> None:
        self.key, self.value, self.offset = key, value, offset


def record(i: int, t_ms: int, svc: int, error: bool, bad: int, hosts: int = 1) -> bytes:  # noqa: PLR0917
    if bad == 1:
        return b'{"@timestamp": "not a time", "logtide": {"schema": "log_event"}}'
    if bad == 2:
        return b"\xff\xfe not json"
    status = 500 if error else 200
    doc = {
        "@timestamp": (T0 + timedelta(milliseconds=t_ms)).isoformat(),
        "event": {"id": f"e{i}"},
        "logtide": {"schema": "log_event"},
        "message": f"GET /x {status}",
        "log": {"level": "error" if error else "info"},
        "service": {"name": f"s{svc}"},
        "attributes": {"status": status, "duration_ms": 5 + (i * 7) % 40},
    }
    if hosts > 1:  # several event-time sources (partition + host + file) feeding one series
        doc["host"] = {"name": f"h{i % hosts}"}
    return orjson.dumps(doc)


events = st.lists(
    st.tuples(st.integers(0, 120_000), st.integers(0, 2), st.booleans(),
              st.sampled_from([0] * 12 + [1, 2])),
    min_size=1, max_size=160,
)


def sorted_mostly(evs: list, jitter: int) -> list:
    """Time order with disorder: each event moved back by up to `jitter` positions' worth of time."""
    return sorted(evs, key=lambda e: e[0] + (hash(e) % (jitter + 1)) * 331)


def dl_view(d: Any) -> tuple:
    j = orjson.loads(encode(d))
    return (j["error"]["type"], j["error"].get("field"), j["source"]["stage"], j["source"].get("offset"),
            j["dead_letter"]["original_base64"])


def agg_view(a: Any) -> tuple:
    s = a.stats
    return (a.event.id, s.count, round(s.sum, 6), s.min, s.max, s.p50, s.p90, s.p99)


def bounds_of(recs: list[Rec], cuts: list[int]) -> list[int]:
    return sorted({0, len(recs), *[x % (len(recs) + 1) for x in cuts]})


def reference(c: StreamsConfig, recs: list[Rec], cuts: list[int], metrics: bool = False) -> dict:
    sl, sf = Stateless(c), Stateful(c)
    enriched, dead, late, aggs, anoms = [], [], 0, {}, []
    raw_enriched: list[bytes] = []
    from logtide.schemas import DeadLetterSource

    ends = {hi - 1 for hi in bounds_of(recs, cuts)[1:]}
    for i, r in enumerate(recs):
        src = DeadLetterSource(stage="validate", topic="raw", partition=0, offset=r.offset)
        res = sl.metric(r.value, NOW, src, 0) if metrics else sl.log(r.value, NOW, src, 0)
        if res.dead is None:
            if not metrics:
                enriched.append(orjson.loads(encode(res.event)))
                raw_enriched.append(encode(res.event))
            for p in ([res.point] if res.point is not None else []) if metrics else res.points:
                if sf.add(p, src=res.src) is not None:
                    late += 1
        else:
            dead.append(dl_view(res.dead))
        if i in ends:
            for s, wm in sl.take_marks():
                sf.mark(s, wm)
        a, n = sf.advance()
        aggs.update({x.event.id: agg_view(x) for x in a})
        anoms += [(x.event.id, round(x.score, 9)) for x in n]
    a, n = sf.flush()
    aggs.update({x.event.id: agg_view(x) for x in a})
    anoms += [(x.event.id, round(x.score, 9)) for x in n]
    return {"enriched": enriched, "enriched_bytes": raw_enriched, "dead": dead, "late": late, "aggs": aggs,
            "anoms": anoms}


def batched(c: StreamsConfig, recs: list[Rec], cuts: list[int], restarts: set[int], replays: set[int],  # noqa: PLR0917
            metrics: bool = False) -> dict:
    mapper = BatchMapper(c)
    folder = BatchFolder(Stateful(c))
    enriched, dead, late, aggs, anoms = [], [], 0, {}, []
    raw_enriched: list[bytes] = []
    bounds = bounds_of(recs, cuts)
    sent: list[bytes] = []
    for bi, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        if bi in restarts:  # a new aggregator: state and marks only from the table values
            values = {k: folder.export(k) for k in folder.sf.series}
            folder = BatchFolder(Stateful(c))
            for k, v in values.items():
                folder.restore(k, v)
            if bi in replays:  # and the points topic delivers everything again
                for data in sent:
                    refused = folder.sf.guard.refused_total
                    n = folder.fold(SeriesBatch.from_bytes(data))
                    # skipped; or, over a cardinality cap, refused again (no state remembers a refusal)
                    assert n is None or (n == 0 and folder.sf.guard.refused_total > refused)
        out = (mapper.metrics if metrics else mapper.logs)(recs[lo:hi], "raw", 0, NOW)
        enriched += [orjson.loads(v) for _, v in out.enriched]
        raw_enriched += [v for _, v in out.enriched]
        dead += [dl_view(d) for d in out.dead]
        for m in out.series:
            data = m.to_bytes()
            sent.append(data)
            n = folder.fold(SeriesBatch.from_bytes(data))
            assert n is not None
            late += n
        for s, wm in out.marks:  # after the batch's points, as the reader sends them
            folder.sf.mark(s, wm)
        a, n = folder.sf.advance()
        aggs.update({x.event.id: agg_view(x) for x in a})
        anoms += [(x.event.id, round(x.score, 9)) for x in n]
    a, n = folder.sf.flush()
    aggs.update({x.event.id: agg_view(x) for x in a})
    anoms += [(x.event.id, round(x.score, 9)) for x in n]
    return {"enriched": enriched, "enriched_bytes": raw_enriched, "dead": dead, "late": late, "aggs": aggs,
            "anoms": anoms}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evs=events, jitter=st.integers(0, 60), lateness=st.sampled_from([0.0, 2.0, 5.0, 30.0]),
       cuts=st.lists(st.integers(0, 200), max_size=12), restarts=st.sets(st.integers(0, 12), max_size=4),
       replays=st.sets(st.integers(0, 12), max_size=4), step=st.sampled_from([None, None, 5.0, 2.0]),
       hosts=st.sampled_from([1, 2, 3]), cap=st.sampled_from([1000, 1000, 1, 2]))
def test_batch_path_equals_point_by_point(evs, jitter, lateness, cuts, restarts, replays, step, hosts, cap) -> None:  # noqa: PLR0917
    """Tumbling and hopping windows, one or several sources per series, events out of order by up to
    ~20 s, late ones included; with a small cap, series folded into overflow series."""
    c = cfg(lateness, cap=cap, step=step)
    recs = [Rec(b"k", record(i, *e, hosts=hosts), i) for i, e in enumerate(sorted_mostly(evs, jitter))]
    want, got = reference(c, recs, cuts), batched(c, recs, cuts, restarts, replays)
    assert got["enriched"] == want["enriched"]
    assert got["enriched_bytes"] == want["enriched_bytes"]  # byte for byte what `schemas.encode` writes
    assert sorted(got["dead"], key=repr) == sorted(want["dead"], key=repr)
    assert got["late"] == want["late"]
    assert got["aggs"] == want["aggs"]
    assert sorted(got["anoms"]) == sorted(want["anoms"])


def sample(i: int, t_ms: int, host: int, counter: bool, value: float, bad: bool) -> bytes:  # noqa: PLR0917
    if bad:
        return b'{"@timestamp": "2026-01-05T10:00:00Z", "metric": {"name": "x", "value": "NaN"}}'
    return orjson.dumps({
        "@timestamp": (T0 + timedelta(milliseconds=t_ms)).isoformat(),
        "metric": {"name": "reqs" if counter else "cpu", "value": value, "type": "counter" if counter else "gauge"},
        "host": {"name": f"h{host}"}, "service": {"name": "svc"},
        "event": {"id": f"m{i}", "kind": "metric"}, "logtide": {"schema": "metric_sample"},
    })


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(smp=st.lists(st.tuples(st.integers(0, 90_000), st.integers(0, 1), st.booleans(),
                              st.floats(0, 1000, allow_nan=False), st.sampled_from([False] * 15 + [True])),
                    min_size=1, max_size=120),
       jitter=st.integers(0, 30), cuts=st.lists(st.integers(0, 150), max_size=10),
       restarts=st.sets(st.integers(0, 10), max_size=3), replays=st.sets(st.integers(0, 10), max_size=3),
       caps=st.sampled_from([(1000, 1000), (1, 1000), (1000, 1), (1, 1)]))
def test_metric_samples_batch_path_equals_point_by_point(smp, jitter, cuts, restarts, replays, caps) -> None:  # noqa: PLR0917
    """Gauges (combined per pane) and counters (rates need every sample, in order) from metrics.raw;
    with cardinality caps, the same series overflow (gauges) or are refused (counters, further names)."""
    c = StreamsConfig.model_validate({
        "window": {"size_seconds": 10, "lateness_seconds": 2, "group_by": ["service", "host"],
                   "idle_timeout_seconds": None},
        "detect": {"detector": "test_z", "params": {"warmup": 3, "z_alarm": 1.5}},
        "max_series_per_metric": caps[0], "max_metric_names": caps[1],
    })
    recs = [Rec(None, sample(i, *e), i) for i, e in enumerate(sorted_mostly(smp, jitter))]
    want = reference(c, recs, cuts, metrics=True)
    got = batched(c, recs, cuts, restarts, replays, metrics=True)
    assert got["dead"] == want["dead"] and got["late"] == want["late"]
    assert got["aggs"] == want["aggs"]
    assert sorted(got["anoms"]) == sorted(want["anoms"])


def test_a_raising_operator_dead_letters_the_record_with_stage() -> None:
    """One record an operator raises on becomes a dead letter (stage, reason); the others go on."""
    c = cfg(5.0)
    mapper = BatchMapper(c)
    boom = mapper.stateless.enrich

    def enrich(ev):
        if ev.event.id == "e1":
            raise RuntimeError("enricher broke")
        return boom(ev)

    mapper.stateless.enrich = enrich
    mapper.fast.enabled = False  # the reference operators (the fast lane hands them what it is unsure of)
    recs = [Rec(None, record(i, i * 1000, 0, False, 0), 100 + i) for i in range(3)]
    out = mapper.logs(recs, "raw", 2, NOW)
    assert [orjson.loads(v)["event"]["id"] for _, v in out.enriched] == ["e0", "e2"]
    assert out.errors == 1 and len(out.dead) == 1
    d = out.dead[0]
    assert d.error.type == "operator_error" and "enricher broke" in d.error.message
    assert (d.source.stage, d.source.partition, d.source.offset) == ("log_operators", 2, 101)
    assert base64.b64decode(d.dead_letter.original_base64) == recs[1].value
    assert sum(s.panes[0][3].count for s in out.series if s.metric == "log.events") == 2


def test_a_record_the_fast_lane_raises_on_takes_the_reference_path() -> None:
    """An exception inside the plain-dict lane never loses or dead-letters a record: the reference
    operators decide it, with the same outcome (and the source clock moved once)."""
    c = cfg(5.0)
    recs = [Rec(None, record(i, i * 1000, 0, False, 0), 100 + i) for i in range(3)]
    want = BatchMapper(c).logs(recs, "raw", 2, NOW)
    mapper = BatchMapper(c)
    decide = mapper.fast._decide

    def broken(d, now, partition):
        if d["event"]["id"] == "e1":
            raise RuntimeError("fast lane broke")
        return decide(d, now, partition)

    mapper.fast._decide = broken
    got = mapper.logs(recs, "raw", 2, NOW)
    assert got.enriched == want.enriched and not got.dead and got.errors == 0
    assert [s.to_bytes() for s in got.series] == [s.to_bytes() for s in want.series]
    assert got.marks == want.marks


def test_replayed_batch_is_skipped_per_series_and_source() -> None:
    c = cfg(5.0)
    mapper, folder = BatchMapper(c), BatchFolder(Stateful(c))
    recs = [Rec(None, record(i, i * 100, i % 2, False, 0), i) for i in range(50)]
    first = mapper.logs(recs[:20], "raw", 0, NOW).series
    other_source = mapper.logs(recs[:20], "raw", 1, NOW).series
    assert all(folder.fold(m) is not None for m in first)
    assert all(folder.fold(m) is None for m in first)  # the replay
    assert all(folder.fold(m) is not None for m in other_source)  # same offsets, other partition
    assert folder.duplicates == len(first)


def test_overflow_series_marks_stay_bounded_and_replays_are_skipped() -> None:
    """Many series folded into one overflow series: its marks hold the newest batch's series only (as
    bounded as its state), and every message delivered again is still skipped."""
    c = cfg(5.0, cap=1)
    mapper, folder = BatchMapper(c), BatchFolder(Stateful(c))
    sent = []
    for b in range(20):  # 20 batches, each with 10 services of its own (200 series in all)
        recs = [Rec(None, record(b * 100 + i, b * 1000 + i, 0, False, 0), b * 100 + i) for i in range(10)]
        recs = [Rec(None, r.value.replace(b'"s0"', f'"b{b}x{i}"'.encode()), r.offset) for i, r in enumerate(recs)]
        for m in mapper.logs(recs, "raw", 0, NOW).series:
            sent.append(m.to_bytes())
            assert folder.fold(m) is not None
    over = [k for k in folder.marks if "overflow=true" in k]
    assert over and all(len(folder.marks[k]) <= 10 for k in over)
    values = {k: folder.export(k) for k in folder.sf.series}
    folder = BatchFolder(Stateful(c))  # a restart, then everything delivered again
    for k, v in values.items():
        folder.restore(k, v)
    assert all(folder.fold(SeriesBatch.from_bytes(d)) is None for d in sent)


def test_idle_series_are_evicted_after_their_windows_and_state_stays_bounded() -> None:
    """Series that went quiet are dropped once their windows were emitted (bounded state); busy ones
    and ones with an open window are kept."""
    c = cfg(0.0, idle=5.0)
    mapper, folder = BatchMapper(c), BatchFolder(Stateful(c))
    early = [Rec(None, record(i, i * 100, 1, False, 0), i) for i in range(10)]  # service s1: first second only
    busy = [Rec(None, record(100 + i, 30_000 + i * 1000, 0, False, 0), 100 + i) for i in range(60)]  # s0
    for batch in (early, busy):
        out = mapper.logs(batch, "raw", 0, NOW)
        for m in out.series:
            folder.fold(m)
        for s, wm in out.marks:
            folder.sf.mark(s, wm)
        folder.sf.advance()
    before = set(folder.sf.series)
    assert any("s1" in k for k in before)
    assert folder.evict_idle(1 << 40) == []  # not idle for that long
    gone = folder.evict_idle(3_000)  # s1's last window ended ~80 s before the source's watermark
    assert gone and all("service=s1" in k for k in gone)
    assert set(folder.sf.series) == before - set(gone)
    assert all(k not in folder.marks and k not in folder.sf.windows.series for k in gone)
    assert all(folder.sf.series[k].windows.panes or "s0" in k for k in folder.sf.series)
    assert folder.evict_idle(3_000) == []  # s0 has an open window: kept
