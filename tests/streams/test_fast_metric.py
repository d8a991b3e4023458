"""The metric-sample lane (`streams.fast_metric.FastMetric`) decides every sample it takes exactly as
the reference (`Stateless.metric`: pydantic `MetricSample`, skew, `Deriver.from_sample`, source clocks)
would, and `BatchMapper.metrics` hands on the same messages with the lane on as with it off.

Samples are drawn around the contract's edges: fields missing, None, of another type (bools, numeric
strings, big and negative-zero numbers, ints beyond 64 bits), unknown keys, `timestamp` for
`@timestamp`, metric types in other spellings, names that do and do not read as rates for every type,
labels that collide with the `host`/`service` labels the series gets (and `instance`), flags that make
a sample untimed, stale or skewed, timestamps in many spellings and offsets (and not timestamps),
around the skew limits; then raw-byte damage (cut, a byte replaced, a key given twice, numbers no
double holds). For each sequence one `Stateless` runs the reference on every sample; another runs the
lane and the reference only where the lane declines, as the batch mapper does. Compared per sample:
the dead letter, the point (key, metric, labels in order, time, value, kind), skew, untimed, the
event-time source and the event id; at the end, the sources' watermark marks.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from logtide.schemas import DeadLetterSource, encode
from logtide.shippers.events import metric_event
from logtide.streams.batch import BatchMapper
from logtide.streams.config import StreamsConfig
from logtide.streams.fast_metric import FastMetric
from logtide.streams.pipeline import Stateless

NOW = datetime(2026, 1, 5, 11, 0, tzinfo=UTC)
T0 = NOW - timedelta(hours=1)

CONFIGS = [
    {},
    {"window": {"size_seconds": 90, "group_by": ["service", "host", "env"], "max_source_jump_seconds": 60},
     "max_past_skew_seconds": 7200.0},
    {"window": {"size_seconds": 3600}, "max_future_skew_seconds": 0.5, "static_labels": {"env": "prod"}},
]

text = st.text(alphabet=st.sampled_from("abcXYZ019 -_./:=\u00e9\u2028\x00\""), max_size=8)
number = st.one_of(st.integers(-5, 700), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False, allow_infinity=False),
                   st.sampled_from([0.0, -0.0, 1e308, -1e-320, 2.0**53 + 1, 2**53 + 1, 2**63 + 1, 1.5]))
scalar = st.one_of(st.none(), st.booleans(), number, text, st.sampled_from(["1.5", "NaN", "inf", "gauge", "1"]))
json_value = st.recursive(scalar, lambda c: st.one_of(st.lists(c, max_size=3),
                                                      st.dictionaries(text, c, max_size=3)), max_leaves=6)
MISSING = object()
NAMES = ["node_cpu_seconds_total", "node_load1", "x_created", "http_seconds_bucket", "http_seconds_sum",
         "http_seconds_count", "go_gc_duration_seconds", "rpc_total", "a"]
TYPES = ["gauge", "counter", "histogram", "summary", "untyped"]


def ts_text(valid: bool = True) -> st.SearchStrategy:
    def spell(dt: datetime, offset_min: int, form: int) -> Any:
        local = dt.astimezone(timezone(timedelta(minutes=offset_min)))
        if form == 0:
            return local.isoformat()
        if form == 1:
            return local.isoformat(timespec="milliseconds")
        if form == 2:
            return dt.isoformat().replace("+00:00", "Z")
        if form == 3:
            return local.isoformat(sep=" ", timespec="microseconds")
        if form == 4:
            return local.replace(tzinfo=None).isoformat()  # naive: the model refuses it
        if form == 5:
            return int(dt.timestamp())  # a number: the model reads it as epoch seconds
        if form == 6:
            return str(int(dt.timestamp() * 1000))
        return local.isoformat() + "x"

    near = st.integers(-4000_000, 8000_000).map(lambda ms: NOW + timedelta(milliseconds=ms * 10))
    edges = st.sampled_from([300, 300.001, 299.999, 0.5, 0.499, 0.501, -7200, -7200.001, -7199.999, 1e6]).map(
        lambda s: NOW + timedelta(seconds=s))  # around the skew limits of the configurations
    return st.builds(
        spell,
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC))
        | near | near | edges,
        st.sampled_from([0, 0, 0, 60, -330, 14 * 60 - 1, -(23 * 60 + 59)]),
        st.sampled_from([0, 1, 1, 1, 2, 3] if valid else [4, 5, 6, 7]),
    )


def opt(d: dict[str, Any], key: str, strategy: st.SearchStrategy, draw: st.DrawFn) -> None:
    if draw(st.booleans()):
        d[key] = draw(strategy)


PATHS = [("@timestamp",), ("event",), ("event", "id"), ("event", "original"), ("event", "ingested"),
         ("event", "kind"), ("event", "duration"), ("event", "dataset"), ("logtide",), ("logtide", "schema"),
         ("logtide", "version"), ("logtide", "flags"), ("logtide", "parse_error"), ("logtide", "schema_"),
         ("labels",), ("labels", "job"), ("metric",), ("metric", "name"), ("metric", "value"), ("metric", "value"),
         ("metric", "type"), ("metric", "unit"), ("metric", "x"), ("host",), ("host", "name"), ("host", "ip"),
         ("host", "hostname"), ("service",), ("service", "name"), ("service", "version"), ("timestamp",),
         ("message",), ("event", "x")]


# the values each field is most likely to be got wrong with (besides the general ones)
EDGES: dict[tuple[str, ...], list[Any]] = {
    ("metric", "name"): ["", 1, "x"],
    ("metric", "value"): [True, False, "1.5", "NaN", 2**64 - 1, -0.0, [1], 7],
    ("metric", "type"): ["Gauge", "COUNTER", " gauge", 1, "counter"],
    ("metric", "unit"): [1, "s"],
    ("logtide", "flags"): [[1], ["stale", None], "stale", [], ["stale"], ["ts_missing"]],
    ("logtide", "version"): [True, 1.0, "1", -1, 2**64 - 1],
    ("logtide", "schema"): ["log_event", "metric_sample", "Metric_sample"],
    ("logtide", "parse_error"): [1, "x"],
    ("labels",): [[], {"a": 1}, {"a": None}, "x", {"instance": "i:1", "host": "h"}, {}],
    ("labels", "job"): [1, "", ["x"]],
    ("host",): ["h", {"name": 1}, {"name": "h", "x": 1}, {"hostname": "h"}],
    ("host", "ip"): [[1], "10.0.0.1", []],
    ("host", "name"): [1, ""],
    ("service",): ["s", {"name": None}, {"name": "s", "x": 1}],
    ("event",): [[], "e", {"kind": "metric"}],
    ("event", "id"): [1, ""],
    ("event", "kind"): ["Metric", 1, "metric"],
    ("event", "ingested"): ["2026-01-05T10:00:00", "x", 5, "2026-01-05T10:00:00.5-02:00"],
    ("event", "duration"): [True, 1.0, "1", -1, 2**64 - 1],
    ("event", "original"): [1, ""],
    ("@timestamp",): [5, 1.5e9, "2026-01-05", "2026-01-05T10:00:00+25:00", None],
}


@st.composite
def sample(draw: st.DrawFn, i: int = 0) -> bytes:
    """A sample of the model's shape, then zero to two mutations (missing, None, another type), then
    sometimes damage to the bytes themselves."""
    ev: dict[str, Any] = {"id": f"m{i}"}
    opt(ev, "original", text | st.none(), draw)
    opt(ev, "ingested", ts_text() | st.none(), draw)
    opt(ev, "dataset", st.sampled_from(["prometheus", "host", None]), draw)
    opt(ev, "kind", st.sampled_from(["metric", "event", "alert"]), draw)
    opt(ev, "duration", st.integers(0, 10**12) | st.none(), draw)
    meta: dict[str, Any] = {"schema": "metric_sample"}
    opt(meta, "version", st.integers(0, 3), draw)
    opt(meta, "flags", st.lists(st.sampled_from(["stale", "ts_missing", "clock_skew", "parse_failure", "x"]),
                                max_size=2), draw)
    opt(meta, "parse_error", text | st.none(), draw)
    metric: dict[str, Any] = {"name": draw(st.sampled_from(NAMES)), "value": draw(number)}
    opt(metric, "type", st.sampled_from(TYPES), draw)
    opt(metric, "unit", st.sampled_from(["seconds", "bytes", None]), draw)
    d: dict[str, Any] = {"@timestamp": draw(ts_text()), "event": ev, "logtide": meta, "metric": metric}
    opt(d, "labels", st.dictionaries(st.sampled_from(["job", "instance", "cpu", "host", "service", "le", "env"]),
                                     st.sampled_from(["node", "n1:9100", "0", "web-1", "+Inf", ""]), max_size=4), draw)
    opt(d, "host", st.none() | st.fixed_dictionaries(
        {"name": st.sampled_from(["web-1", "db-2"])},
        optional={"hostname": st.none() | text, "ip": st.none() | st.lists(st.just("10.0.0.1"), max_size=2)}), draw)
    opt(d, "service", st.none() | st.fixed_dictionaries(
        {"name": st.sampled_from(["api", "node"])},
        optional={"environment": st.none() | text, "version": st.none() | text}), draw)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2]))):
        path = draw(st.sampled_from(PATHS))
        parent = d
        for k in path[:-1]:
            parent = parent.get(k) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            edges = EDGES.get(path)
            if edges and draw(st.booleans()):
                value = draw(st.sampled_from(edges))
            else:
                value = draw(st.sampled_from([MISSING, None]) | json_value | ts_text(valid=False)
                             | st.sampled_from([*TYPES, "", True, {"name": "x"}, "2026-01-05T10:00:00Z"]))
            if value is MISSING:
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = value
    raw = orjson.dumps(d)
    damage = draw(st.sampled_from([None] * 10 + ["cut", "byte", "twice", "big", "inf"]))
    if damage == "cut":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif damage == "byte":
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([draw(st.sampled_from([0x00, 0x22, 0x7b, 0x5d, 0xff, 0x31, 0x2c]))]) + raw[at + 1:]
    elif damage == "twice":  # a key given twice: the last one counts (for both parsers)
        raw = raw.replace(b'"metric":{', b'"metric":{"value":"x","name":1,', 1).replace(
            b'"labels":{', b'"labels":{"job":"first",', 1)
    elif damage == "big":
        raw = raw.replace(b'"value":', b'"value":18446744073709551616' + b"0" * draw(st.integers(0, 3)) + b',"u":', 1)
    elif damage == "inf":
        raw = raw.replace(b'"value":', b'"value":1e400,"u":', 1)
    return raw


def outcome(sl: Stateless, raw: bytes, partition: int, fast: FastMetric | None) -> tuple[tuple, bool]:
    if fast is not None:
        f = fast(raw, NOW, partition)
        if f is not None:
            p, skew, untimed, src, eid = f
            pt = None if p is None else (p.key, p.metric, list(p.labels.items()), p.ts_ms, repr(p.value), p.kind,
                                         p.ident)
            return ("sample", pt, skew, untimed, src, eid), True
    r = sl.metric(raw, NOW, DeadLetterSource(stage="validate", topic="raw", partition=partition, offset=1), partition)
    if r.dead is not None:
        d = orjson.loads(encode(r.dead))
        d.pop("@timestamp")  # when it was written
        return ("dead", d), False
    p = r.point
    pt = None if p is None else (p.key, p.metric, list(p.labels.items()), p.ts_ms, repr(p.value), p.kind, p.ident)
    return ("sample", pt, r.skew, r.untimed, r.src, r.sample.event.id), False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), which=st.integers(0, len(CONFIGS) - 1), n=st.integers(1, 8))
def test_the_lane_decides_every_sample_it_takes_as_the_reference(data: st.DataObject, which: int, n: int) -> None:
    cfg = StreamsConfig.model_validate(CONFIGS[which])
    ref, lane = Stateless(cfg), Stateless(cfg)
    fast = FastMetric(lane)
    for i in range(n):
        raw = data.draw(sample(i))
        partition = i % 2
        want, _ = outcome(ref, raw, partition, None)
        got, taken = outcome(lane, raw, partition, fast)
        assert got == want, raw
        event("lane" if taken else f"reference: {want[0]}")
    assert sorted(lane.take_marks()) == sorted(ref.take_marks())


HOST = {"name": "node-1", "hostname": "node-1", "ip": ["10.0.0.5"]}


def scraped(i: int, ts: datetime) -> bytes:
    """What the shipper's Prometheus scraper writes (`shippers.events.metric_event`), of every kind."""
    name, kind, labels = [
        ("node_cpu_seconds_total", "counter", {"cpu": str(i % 4), "mode": "idle"}),
        ("node_load1", "gauge", {}),
        ("go_gc_duration_seconds", "summary", {"quantile": "0.5"}),
        ("go_gc_duration_seconds_count", "summary", {}),
        ("http_request_duration_seconds_bucket", "histogram", {"le": "0.1", "handler": "/"}),
        ("process_start_time_seconds", "untyped", {}),
    ][i % 6]
    enc = metric_event(HOST, name, float(i * 3 + 1), kind, None, {"job": "node", "instance": "node-1:9100", **labels},
                       ts.isoformat(timespec="milliseconds"), dataset="prometheus",
                       flags=["stale"] if i % 17 == 16 else None)
    assert enc is not None
    return enc


def test_the_lane_takes_the_shippers_samples_and_declines_what_it_must_not_decide() -> None:
    """Not vacuous: scraped samples of every kind (staleness markers and a source-clock outlier among
    them) take the lane with the reference's outcome; coercions and invalid samples do not."""
    cfg = StreamsConfig.model_validate(CONFIGS[1])
    ref, lane = Stateless(cfg), Stateless(cfg)
    fast = FastMetric(lane)
    times = [T0 + timedelta(seconds=15 * (i // 6)) for i in range(240)]
    times[100] += timedelta(minutes=50)  # one sample stamped far ahead: an outlier of its source
    outcomes = []
    for i, t in enumerate(times):
        raw = scraped(i, t)
        want, _ = outcome(ref, raw, 0, None)
        got, taken = outcome(lane, raw, 0, fast)
        assert taken and got == want
        outcomes.append(got)
    assert lane.take_marks() == ref.take_marks()
    assert any(o[2] == "ahead_of_source" for o in outcomes) and any(o[1][5] == 2 for o in outcomes)  # outlier, stale
    ok = orjson.loads(scraped(0, T0))
    for broken in ({**ok, "metric": {**ok["metric"], "value": "1.5"}},  # the model coerces it: the reference does
                   {**ok, "metric": {**ok["metric"], "value": True}},
                   {**ok, "metric": {**ok["metric"], "type": "Counter"}},
                   {**ok, "labels": {"job": 1}}, {**ok, "timestamp": ok["@timestamp"]}):
        assert fast(orjson.dumps(broken), NOW, 0) is None
    assert fast(b'{"@timestamp": 5}', NOW, 0) is None and fast(b"not json", NOW, 0) is None


def test_the_lane_follows_a_reload_of_the_skew_limits() -> None:
    """A reload replaces `Stateless.policy` (`streams.reload`): the lane's per-spelling skew decisions
    follow it."""
    from logtide.streams.reload import apply_stateless

    old, new = (StreamsConfig.model_validate(c) for c in ({}, {"max_future_skew_seconds": 1.0}))
    ref, lane = Stateless(old), Stateless(old)
    fast = FastMetric(lane)
    raw = scraped(1, NOW + timedelta(seconds=60))
    assert outcome(lane, raw, 0, fast)[0][2] is None
    for sl in (ref, lane):
        apply_stateless(sl, new)
    want, _ = outcome(ref, raw, 0, None)
    got, taken = outcome(lane, raw, 0, fast)
    assert taken and got == want and got[2] == "future" and got[1] is None


class Rec:
    __slots__ = ("key", "offset", "value")

    def __init__(self, key: bytes | None, value: bytes, offset: int) -> None:
        self.key, self.value, self.offset = key, value, offset


def mapped_view(out: Any) -> tuple:
    dead = []
    for d in out.dead:
        j = orjson.loads(encode(d))
        j.pop("@timestamp")
        dead.append(j)
    return ([s.to_bytes() for s in out.series], out.marks, sorted(out.skew.items()), out.untimed, out.resent,
            out.errors, dead)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), which=st.integers(0, len(CONFIGS) - 1), n=st.integers(1, 30),
       cuts=st.lists(st.integers(0, 30), max_size=4))
def test_the_batch_mapper_hands_on_the_same_with_the_lane_as_without(data: st.DataObject, which: int, n: int,
                                                                     cuts: list[int]) -> None:
    """Series messages byte for byte (gauges combined per pane, counters and staleness markers one by one,
    labels in the same order), marks, skew and untimed counts, resent samples, dead letters."""
    cfg = StreamsConfig.model_validate(CONFIGS[which])
    recs = []
    for i in range(n):
        if data.draw(st.integers(0, 3)) == 0:
            raw = scraped(data.draw(st.integers(0, 40)), T0 + timedelta(seconds=data.draw(st.integers(0, 600))))
        else:
            raw = data.draw(sample(data.draw(st.integers(0, 6))))  # ids repeat: resent samples
        recs.append(Rec(None, raw, i))
    ref, lane = BatchMapper(cfg), BatchMapper(cfg)
    ref.fast_metric.enabled = False
    bounds = sorted({0, n, *[c % (n + 1) for c in cuts]})
    for lo, hi in itertools.pairwise(bounds):
        want = mapped_view(ref.metrics(recs[lo:hi], "metrics.raw", lo % 2, NOW))
        got = mapped_view(lane.metrics(recs[lo:hi], "metrics.raw", lo % 2, NOW))
        assert got == want


def test_a_sample_the_lane_raises_on_takes_the_reference_path() -> None:
    """An exception inside the lane never loses or dead-letters a sample: the reference decides it,
    with the same outcome, and its source clock moved once (the same marks)."""
    cfg = StreamsConfig.model_validate(CONFIGS[0])
    recs = [Rec(None, scraped(i, T0 + timedelta(seconds=15 * i)), 100 + i) for i in range(6)]
    want = BatchMapper(cfg).metrics(recs, "metrics.raw", 2, NOW)
    mapper = BatchMapper(cfg)
    decide = mapper.fast_metric._decide

    def broken(s, now, partition):
        if s.event.id == orjson.loads(recs[3].value)["event"]["id"]:
            raise RuntimeError("lane broke")
        return decide(s, now, partition)

    mapper.fast_metric._decide = broken
    got = mapper.metrics(recs, "metrics.raw", 2, NOW)
    assert mapped_view(got) == mapped_view(want) and not got.dead and got.errors == 0
    assert len(want.marks) == 1 and sum(len(s.points) + len(s.panes) for s in got.series) == 6


def test_the_lane_decides_skew_against_each_batchs_clock() -> None:
    """Skew is cached per timestamp spelling for one batch clock only: the same spelling read again
    under a later clock is decided again, as the reference does."""
    cfg = StreamsConfig.model_validate({})
    ref, lane = Stateless(cfg), Stateless(cfg)
    fast = FastMetric(lane)
    raw = scraped(1, NOW + timedelta(seconds=400))
    for now in (NOW, NOW + timedelta(seconds=200), NOW):  # 400 s ahead (> 300 s: future), then 200 s
        want = ref.metric(raw, now, None, 0)
        got = fast(raw, now, 0)
        assert got is not None and (got[1], got[0]) == (want.skew, want.point)
    assert [fast(raw, n, 0)[1] for n in (NOW, NOW + timedelta(seconds=200))] == ["future", None]
