"""Validate, enrich, derive, cardinality, detect and the wired pipeline, as plain unit/property tests."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from logtide.schemas import Anomaly, DeadLetter, LogEvent, WindowAggregate, decode
from logtide.streams.cardinality import CardinalityGuard
from logtide.streams.config import StreamsConfig
from logtide.streams.derive import COUNTER, CounterRates, Point, counter_rate, series_key
from logtide.streams.enrich import Enricher, normalise_severity, status_class
from logtide.streams.pipeline import Stateful, Stateless
from logtide.streams.validate import SKEW_FLAG, SkewPolicy, validate_log
from pydantic import ValidationError

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def log_doc(ts: datetime, message: str = "hello", **extra) -> dict:
    doc = {
        "@timestamp": ts.isoformat(),
        "event": {"id": f"id-{message}-{ts.timestamp()}"},
        "logtide": {"schema": "log_event"},
        "message": message,
    }
    doc.update(extra)
    return doc


def raw(doc: dict) -> bytes:
    return orjson.dumps(doc)


# --- validate ------------------------------------------------------------------------------------


def test_invalid_input_becomes_dead_letter_with_original_bytes() -> None:
    for bad, reason in [
        (b"{not json", "invalid_json"),
        (b'{"message": "x"}', "missing_field"),
        (b"[1]", "validation"),
    ]:
        ev, skew = validate_log(bad, NOW)
        assert isinstance(ev, DeadLetter) and skew is None
        assert ev.error.type == reason
        import base64

        assert base64.b64decode(ev.dead_letter.original_base64) == bad


def test_skew_is_flagged_not_retimed() -> None:
    policy = SkewPolicy(future_s=60, past_s=3600)
    fut = NOW + timedelta(minutes=5)
    ev, skew = validate_log(raw(log_doc(fut)), NOW, policy)
    assert skew == "future" and SKEW_FLAG in ev.logtide.flags and ev.timestamp == fut
    ev, skew = validate_log(raw(log_doc(NOW - timedelta(hours=2))), NOW, policy)
    assert skew == "past"
    ev, skew = validate_log(raw(log_doc(NOW - timedelta(seconds=30))), NOW, policy)
    assert skew is None and ev.logtide.flags == []


def test_skewed_events_are_forwarded_but_not_aggregated() -> None:
    sl = Stateless(StreamsConfig(max_future_skew_seconds=10))
    r = sl.log(raw(log_doc(NOW + timedelta(hours=1))), NOW)
    assert r.event is not None and r.points == [] and r.skew == "future"


@pytest.mark.parametrize("flag", ["ts_missing", "ts_unparsed", "parse_failure"])
def test_events_without_event_time_do_not_move_stream_time(flag) -> None:
    """A replay of history with one line stamped with its ingest time: that line is forwarded but
    derives no points, so the historical lines after it are not late."""
    cfg = StreamsConfig(max_past_skew_seconds=1e9)
    sl, sf = Stateless(cfg), Stateful(cfg)
    old = NOW - timedelta(days=30)
    docs = [log_doc(old + timedelta(seconds=i), f"m{i}") for i in range(20)]
    docs.insert(5, {**log_doc(NOW, "ingest-stamped"), "logtide": {"schema": "log_event", "flags": [flag]}})
    late = untimed = 0
    for d in docs:
        r = sl.log(raw(d), NOW)
        assert r.event is not None
        if r.untimed:
            untimed += 1
            assert r.points == [] and flag in r.event.logtide.flags
        late += sum(sf.add(p) is not None for p in r.points)
    assert untimed == 1 and late == 0
    assert sf.stream_time_ms < int((old + timedelta(days=1)).timestamp() * 1000)
    aggs, _ = sf.flush()
    assert sum(a.stats.count for a in aggs if a.series.metric == "log.events") > 0


# --- enrich --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "want"),
    [
        ("ERROR", "error"),
        ("warn", "warning"),
        ("Fatal", "critical"),
        (3, "error"),
        ("6", "info"),
        ("?", "unknown"),
        (None, "unknown"),
    ],
)
def test_normalise_severity(level, want) -> None:
    assert normalise_severity(level).value == want


def test_status_class() -> None:
    assert status_class(503) == "5xx" and status_class("404") == "4xx" and status_class("x") is None
    assert status_class(999) is None


def test_enrich_full() -> None:
    cfg = StreamsConfig.model_validate(
        {
            "services": [
                {"host": "web-*", "service": "frontend", "environment": "prod"},
                {"path": "/var/log/nginx/*", "service": "nginx"},
                {"regex": r"^payments:", "service": "payments"},
            ],
            "static_labels": {"dc": "eu1", "team": "core"},
        }
    )
    enrich = Enricher(cfg)
    tz = timezone(timedelta(hours=2))
    doc = log_doc(
        datetime(2026, 11, 26, 14, 0, tzinfo=tz),
        "GET /api 502 trace_id=4BF92F3577B34DA6A3CE929D0E0E4736",
        log={"level": "ERR"},
        host={"name": "web-3"},
        labels={"team": "own"},
        http={"response": {"status_code": 502}, "request": {"duration_ms": 12.5}},
    )
    ev = enrich(decode(raw(doc), LogEvent))
    assert ev.timestamp == datetime(2026, 11, 26, 12, 0, tzinfo=UTC) and ev.timestamp.tzinfo is UTC
    assert ev.log.level == "error" and ev.attributes["log.level.original"] == "ERR"
    assert ev.service.name == "frontend" and ev.service.environment == "prod"
    assert ev.labels == {"dc": "eu1", "team": "own"}
    assert ev.attributes["http.status_class"] == "5xx" and ev.attributes["duration_ms"] == 12.5
    assert ev.trace.id == "4bf92f3577b34da6a3ce929d0e0e4736"

    ev = enrich(
        decode(
            raw(
                log_doc(
                    NOW,
                    "x",
                    log={"file": {"path": "/var/log/nginx/access.log"}},
                    attributes={"status": "200", "request_time": "0.25"},
                )
            ),
            LogEvent,
        )
    )
    assert ev.service.name == "nginx" and ev.attributes["duration_ms"] == 250.0
    ev = enrich(decode(raw(log_doc(NOW, "payments: charge ok", service={"name": "given"})), LogEvent))
    assert ev.service.name == "given"  # an event's own service wins unless override
    ev = enrich(decode(raw(log_doc(NOW, "x", event={"id": "a", "duration": 3_000_000})), LogEvent))
    assert ev.attributes["duration_ms"] == 3.0


def test_enrich_geoip_with_reader() -> None:
    class Reader:
        def get(self, ip: str):
            return (
                {
                    "country": {"iso_code": "FR"},
                    "city": {"names": {"en": "Lyon"}},
                    "location": {"latitude": 45.7, "longitude": 4.8},
                }
                if ip == "1.2.3.4"
                else None
            )

    ev = Enricher(StreamsConfig(), geo=Reader())(
        decode(raw(log_doc(NOW, "x", source={"ip": "1.2.3.4"})), LogEvent)
    )
    doc = orjson.loads(__import__("schemas").encode(ev))
    assert doc["source"]["geo"] == {
        "country_iso_code": "FR",
        "city_name": "Lyon",
        "location": {"lat": 45.7, "lon": 4.8},
    }


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValidationError):
        StreamsConfig.model_validate({"window": {"size_seconds": 60, "step_seconds": 25}})
    with pytest.raises(ValidationError):
        StreamsConfig.model_validate({"services": [{"service": "a", "host": "h", "path": "p"}]})
    with pytest.raises(ValidationError):
        StreamsConfig.model_validate({"windows": {}})


# --- derive --------------------------------------------------------------------------------------


def test_points_from_access_log() -> None:
    sl = Stateless(StreamsConfig())
    r = sl.log(
        raw(
            log_doc(
                NOW,
                "GET / 500",
                host={"name": "h1"},
                service={"name": "api"},
                attributes={"status": 500, "duration_ms": 40},
            )
        ),
        NOW,
    )
    got = {(p.metric, p.value) for p in r.points}
    assert got == {
        ("log.events", 1.0),
        ("log.error_ratio", 1.0),
        ("http.responses", 1.0),
        ("http.request.duration_ms", 40.0),
    }
    keys = {p.key for p in r.points}
    assert "log.events{host=h1,level=unknown,service=api}" in keys
    assert "http.responses{host=h1,service=api,status_class=5xx}" in keys


def test_counter_rate_and_resets() -> None:
    prev, rate, reset = counter_rate(None, 0, 100.0)
    assert rate is None
    prev, rate, reset = counter_rate(prev, 10_000, 150.0)
    assert rate == 5.0 and not reset
    prev, rate, reset = counter_rate(prev, 20_000, 20.0)  # restarted
    assert rate == 2.0 and reset
    same, rate, _ = counter_rate(prev, 15_000, 30.0)  # out of order: ignored
    assert rate is None and same == prev


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=2, max_size=50))
def test_counter_rates_integrate_to_total_increase(increments) -> None:
    """Sum of rate*dt equals the total increase, resets included (counter restarts from zero).

    A reset is only visible when the restarted counter is below the last value; the test resets then.
    """
    rates = CounterRates()
    value, total, integral = 0.0, 0.0, 0.0
    rnd = random.Random(len(increments))
    for i, inc in enumerate(increments):
        if rnd.random() < 0.2 and inc < value:
            value = inc  # reset to zero, then the increment
        else:
            value += inc
        total += inc
        out = rates.apply(Point("k", "m:rate", {}, i * 1000, value, COUNTER, "m"))
        if i == 0:
            assert out is None
            total = 0.0
        else:
            integral += out.value * 1.0
    assert math.isclose(integral, total, rel_tol=1e-9, abs_tol=1e-6)


def test_cardinality_guard_overflow() -> None:
    g = CardinalityGuard(cap=2)
    pts = [Point(series_key("m", {"u": str(i)}), "m", {"u": str(i)}, 0, 1.0) for i in range(5)]
    out = [g.admit(p).key for p in pts]
    assert out[:2] == [pts[0].key, pts[1].key]
    assert out[2:] == ["m{overflow=true}"] * 3 and g.overflowed == {"m": 3}
    assert g.admit(pts[0]).key == pts[0].key and g.series_count() == 2


def test_cardinality_guard_bounds_metric_names_and_refuses_counters_beyond_the_cap() -> None:
    g = CardinalityGuard(cap=1, max_names=2)
    a, b = Point("a", "a", {}, 0, 1.0), Point("b{x=1}", "b", {"x": "1"}, 0, 1.0)
    assert g.admit(a) is a and g.admit(b) is b
    c = Point("c", "c", {}, 0, 1.0)
    assert g.key_for("c", "c") is None and g.admit(c, n=7) is None  # a third name: refused, not folded
    assert g.refused == {"metric_names": 7} and g.refused_total == 7 and g.names_count() == 2
    assert "c" not in g.admitted and "streams.max_metric_names" in g.why(g.last_refusal, "c", 7)
    # beyond the per-name cap a gauge folds into the overflow series, a counter sample is refused
    assert g.admit(Point("b{x=2}", "b", {"x": "2"}, 0, 1.0)).key == "b{overflow=true}"
    assert g.key_for("b", "b{x=3}", COUNTER) is None
    assert g.admit(Point("b{x=3}", "b", {"x": "3"}, 0, 5.0, COUNTER)) is None
    assert g.refused == {"metric_names": 7, "counter_overflow": 1} and g.overflowed == {"b": 1}
    # an evicted series frees its slot, and its name once it has no series left
    g.forget("a", "a")
    assert g.names_count() == 1 and g.admit(c) is c and g.names_count() == 2
    # a restored series is admitted whatever the caps (a restart must not change who is admitted)
    g.remember("d", "d")
    assert g.names_count() == 3 and g.series_count() == 3


# --- stateful pipeline: windows + detect ------------------------------------------------------------


def small_cfg(**kw) -> StreamsConfig:
    base = {
        "max_future_skew_seconds": 1e9,
        "window": {"size_seconds": 10, "lateness_seconds": 2, "group_by": ["service"]},
        "detect": {
            "detector": "test_z",
            "params": {"warmup": 20},
            "threshold": 0.5,
            "rules": [{"metric": "log.error_ratio", "stat": "mean"}],
        },
    }
    base.update(kw)
    return StreamsConfig.model_validate(base)


def incident_stream(seed: int = 1, minutes: int = 20, incident_at: int = 15, every_ms: int = 100,
                    host: str | None = None):
    """One log every `every_ms` for `minutes`; ~2 % errors, 60 % errors during one minute from
    `incident_at`; from one host's file when `host` is given."""
    rnd = random.Random(seed)
    t0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    for i in range(minutes * 60_000 // every_ms):
        ts = t0 + timedelta(milliseconds=every_ms * i)
        burst = incident_at * 60 <= i * every_ms / 1000 < (incident_at + 1) * 60
        err = rnd.random() < (0.6 if burst else 0.02)
        where = {"host": {"name": host}} if host else {}
        yield raw(
            log_doc(
                ts,
                f"m{i}",
                log={"level": "error" if err else "info", "file": {"path": "/var/log/api.log"}},
                service={"name": "api"},
                event={"id": f"e{host}{i}"},
                **where,
            )
        )


def sources_at_different_speeds(chunk: int = 300) -> list[bytes]:
    """Three hosts of one service (one series fed by three sources), at 10, 2 and 0.5 lines/s, read in
    chunks in turn: the dense file lags minutes of event time behind the sparse ones."""
    streams = [list(incident_stream(seed=k, minutes=40, incident_at=30, every_ms=ms, host=f"h{k}"))
               for k, ms in enumerate((100, 500, 2000))]
    out, pos = [], [0, 0, 0]
    while any(p < len(x) for p, x in zip(pos, streams, strict=True)):
        for k, x in enumerate(streams):
            out += x[pos[k]: pos[k] + chunk]
            pos[k] += chunk
    return out


def run_pipeline(cfg: StreamsConfig, records, restart_every: int | None = None):
    """The embedded runner's path: points with their source, the source's watermark after each record."""
    sl, sf = Stateless(cfg), Stateful(cfg)
    aggs: list[WindowAggregate] = []
    anomalies: list[Anomaly] = []
    late = 0
    for i, rec in enumerate(records):  # one record a millisecond of wall clock
        r = sl.log(rec, NOW.replace(year=2026, month=11, day=26, hour=10))
        for p in r.points:
            if sf.add(p, src=r.src, now_ms=i) is not None:
                late += 1
        for src, wm in sl.take_marks():
            sf.mark(src, wm, i)
        a, n = sf.advance(i)
        aggs += a
        anomalies += n
        if restart_every and i % restart_every == restart_every - 1:
            fresh = Stateful(cfg)
            for k in sf.series:
                fresh.restore(k, sf.export(k))
            sf = fresh
    a, n = sf.flush()
    return aggs + a, anomalies + n, late


def test_pipeline_detects_error_burst_and_survives_restarts() -> None:
    # no discovery time: a restarted run's restored sources are known, so it would close windows
    # earlier than the straight run held them (same windows, other order)
    cfg = small_cfg(window={"size_seconds": 10, "lateness_seconds": 2, "group_by": ["service"],
                            "source_discovery_seconds": 0})
    aggs, anomalies, late = run_pipeline(cfg, incident_stream())
    assert late == 0
    ratio = [a for a in aggs if a.series.metric == "log.error_ratio"]
    assert len(ratio) == 120 and all(a.stats.count == 100 for a in ratio)
    assert anomalies, "error burst not detected"
    first = anomalies[0]
    assert first.window.start >= datetime(2026, 11, 26, 10, 15, tzinfo=UTC)
    assert first.window.end <= datetime(2026, 11, 26, 10, 16, tzinfo=UTC)
    assert first.value > first.band.upper and first.series.metric == "log.error_ratio"
    assert len(first.context) == 10
    # the same with state exported and restored every 777 records: identical output
    aggs2, anomalies2, _ = run_pipeline(cfg, incident_stream(), restart_every=777)
    assert [a.model_dump() for a in aggs2] == [a.model_dump() for a in aggs]
    assert [a.model_dump() for a in anomalies2] == [a.model_dump() for a in anomalies]


def test_pipeline_counts_exact_per_window() -> None:
    cfg = small_cfg()
    aggs, _, _ = run_pipeline(cfg, incident_stream(minutes=2, incident_at=99))
    events = [a for a in aggs if a.series.metric == "log.events"]
    assert sum(a.stats.count for a in events) == 1200
    assert {a.window.end - a.window.start for a in events} == {timedelta(seconds=10)}


def test_late_points_are_returned() -> None:
    sf = Stateful(small_cfg())
    t = 1_000_000_000_000
    assert sf.add(Point("m", "m", {}, t, 1.0)) is None
    assert sf.add(Point("m", "m", {}, t + 20_000, 1.0)) is None
    late = Point("m", "m", {}, t, 2.0)
    assert sf.add(late, now_ms=60_000) is late and sf.late == 1  # once the sources' discovery time is over
    assert sf.last_late is not None and sf.last_late.reason == "source_out_of_order"


def test_production_default_detector_runs_and_round_trips() -> None:
    """The registry default (`detect.detector: default`) builds, scores windows and restores from bytes:
    a run restarted from exported state every 500 records equals a straight run. Threshold 0 makes every
    scored window an anomaly, so the scores are all seen."""
    cfg = small_cfg(detect={"detector": "default", "threshold": 0.0,
                            "rules": [{"metric": "log.error_ratio", "stat": "mean"}]},
                    window={"size_seconds": 10, "lateness_seconds": 2, "group_by": ["service"],
                            "source_discovery_seconds": 0})
    aggs, anomalies, _ = run_pipeline(cfg, incident_stream(minutes=3, incident_at=99))
    aggs2, anomalies2, _ = run_pipeline(cfg, incident_stream(minutes=3, incident_at=99), restart_every=500)
    ratio = [a for a in aggs if a.series.metric == "log.error_ratio"]
    assert len(ratio) == 18 and len(anomalies) == len(ratio)
    assert all(0 <= a.score <= 1 for a in anomalies)
    assert [a.model_dump() for a in aggs2] == [a.model_dump() for a in aggs]
    assert [a.model_dump() for a in anomalies2] == [a.model_dump() for a in anomalies]


@pytest.mark.parametrize("multi_source", [False, True])
def test_combined_panes_give_the_same_aggregates_and_anomalies(multi_source: bool) -> None:
    """Map-side combining with watermark marks after each batch (the Faust path) equals folding points
    one by one with marks after each record (the embedded path), with one source or several sources
    at different speeds feeding the same series."""
    from logtide.streams.pipeline import Combiner, Mark

    cfg = small_cfg()
    records = sources_at_different_speeds() if multi_source else list(incident_stream(minutes=40, incident_at=30))
    direct_aggs, direct_anoms, direct_late = run_pipeline(cfg, records)
    assert direct_late == 0
    sl, sf = Stateless(cfg), Stateful(cfg)
    comb = Combiner(sf.spec)
    aggs, anoms = [], []
    offset = 0
    for i, rec in enumerate(records):
        r = sl.log(rec, NOW, partition=0)
        for p in r.points:
            comb.add(p, r.src)
        if i % 37 == 36:
            msgs = [m for _key, m in comb.drain()] + [Mark(s, w).to_bytes() for s, w in sl.take_marks()]
            for msg in msgs:
                assert sf.apply(msg, offset, i) == 0
                assert sf.apply(msg, offset, i) == 0  # a replayed offset is ignored
                offset += 1
            a, n = sf.advance(i)
            aggs += a
            anoms += n
    for msg in [m for _key, m in comb.drain()] + [Mark(s, w).to_bytes() for s, w in sl.take_marks()]:
        sf.apply(msg, offset, len(records))
        offset += 1
    a, n = sf.flush()
    aggs += a
    anoms += n
    assert sf.duplicates > 0

    def norm(xs):
        return sorted(
            (
                x.series.key,
                x.window.start,
                x.stats.count,
                x.stats.min,
                x.stats.max,
                x.stats.p50,
                x.stats.p99,
                round(x.stats.sum, 6),
            )
            for x in xs
        )

    assert norm(aggs) == norm(direct_aggs)
    assert {a.event.id for a in anoms} == {a.event.id for a in direct_anoms}
    assert anoms


def test_example_config_validates() -> None:
    from pathlib import Path

    from logtide.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "examples/streams.yaml")
    assert cfg.streams.window.step_ms == 10_000 and cfg.streams.window.size_ms == 60_000


def test_faust_app_builds_from_config(tmp_path) -> None:
    """The worker's wiring (topics, table, agents, metrics) builds without a broker."""
    from logtide.config import parse_config
    from logtide.streams_command import build_app

    cfg = parse_config({"topics": {"prefix": "x.", "partitions": 3, "replication_factor": 2},
                        "streams": {"app_id": "wire", "metrics_port": 0}})
    sapp = build_app(cfg, state_dir=tmp_path)
    assert {a.name for a in sapp.app.agents.values()} == {"aggregate"}  # raw topics: the batch reader
    assert sapp.reader.group_id == "wire-raw"
    assert sapp.t_points.get_topic_name() == "wire-points"
    # internal topics follow the topics section: one partition count, the configured replication
    assert sapp.t_points.partitions == 3 and sapp.table.partitions == 3
    assert sapp.t_points.replicas == 2 and sapp.app.conf.topic_replication_factor == 2
    assert sapp.table.changelog_topic.get_topic_name() == "wire-series-changelog"
    assert sapp.app.conf.store.scheme == "rocksdb"
    from prometheus_client import generate_latest

    sapp.metrics.dead_letters.labels("invalid_json").inc()
    assert b'logtide_streams_dead_letters_total{reason="invalid_json"} 1.0' in generate_latest(sapp.metrics.registry)


async def test_worker_keeps_state_copies_only_of_partitions_it_owned_throughout(tmp_path) -> None:
    """A partition's in-memory state survives a rebalance only when the worker owned it before and after:
    a copy made while it was not owned (messages read before its revocation) would be stale, and a newly
    assigned partition is read from the recovered table instead."""
    from faust.types import TP

    from logtide.config import parse_config
    from logtide.streams_command import build_app

    sapp = build_app(parse_config({"streams": {"app_id": "own", "metrics_port": 0}}), state_dir=tmp_path)
    pts = sapp.t_points.get_topic_name()
    await sapp._on_assigned(sapp.app, {TP(pts, 0), TP(pts, 1), TP("other", 2)})
    assert sapp.owned == {0, 1}
    kept, gone, stale = object(), object(), object()
    sapp.folders.update({0: kept, 1: gone})
    await sapp._on_revoked(sapp.app, {TP(pts, 1)})
    assert sapp.owned == {0} and set(sapp.folders) == {0}
    sapp.folders[2] = stale  # as the old agent made one from messages of a partition it did not own
    await sapp._on_assigned(sapp.app, {TP(pts, 0), TP(pts, 1), TP(pts, 2)})
    assert sapp.folders == {0: kept} and sapp.owned == {0, 1, 2}


def test_messages_left_uncommitted_never_reach_the_consumers_commit_list() -> None:
    """Faust's own ack after the batch must not record a message the agent did not fold."""
    from types import SimpleNamespace

    from faust.types.tuples import ConsumerMessage
    from logtide.streams.faust_compat import leave_uncommitted

    class Consumer:
        def __init__(self) -> None:
            self.acked: list[int] = []

        def ack(self, message: ConsumerMessage) -> bool:
            self.acked.append(message.offset)
            return True

    def msg(offset: int) -> ConsumerMessage:
        m = ConsumerMessage("t", 0, offset, 0.0, 0, None, None, b"v", None)
        m.incref()
        return m

    consumer, skipped, folded = Consumer(), msg(7), msg(8)
    leave_uncommitted([SimpleNamespace(message=skipped)])
    assert skipped.ack(consumer) is False and folded.ack(consumer) is True
    assert consumer.acked == [8]

    # a message fetched in an earlier group generation is told apart (Faust reads it again after a rebalance)
    from logtide.streams.faust_compat import fetched_before_rebalance

    app = SimpleNamespace(consumer_generation_id=5)
    old_msg = ConsumerMessage("t", 0, 9, 0.0, 0, None, None, b"v", None, generation_id=4)
    new_msg = ConsumerMessage("t", 0, 9, 0.0, 0, None, None, b"v", None, generation_id=5)
    assert fetched_before_rebalance(app, SimpleNamespace(message=old_msg))
    assert not fetched_before_rebalance(app, SimpleNamespace(message=new_msg))


def test_stall_fence_holds_table_writes_after_the_loop_stood_still() -> None:
    from logtide.streams.faust_app import StallFence

    f = StallFence(threshold=3.0, hold=4.5)
    assert f.wait(0.0) == 0  # no tick yet: nothing known
    for t in (0.0, 0.5, 1.0, 1.5):
        assert not f.tick(t)
    assert f.wait(1.7) == 0  # ticking: write now
    # frozen from 1.5 to 9.0 (SIGSTOP past the session timeout): the agent may run before the timer does
    assert f.wait(9.0) == 4.5 and f.stalls == 1
    assert not any(f.tick(9.0 + 0.5 * i) for i in range(7))  # the same stall, seen once; ticking again
    assert f.wait(12.0) == 1.5 and f.wait(13.5) == 0
    assert f.tick(20.0) and f.stalls == 2  # the timer finds the next one first
    assert f.wait(20.1) == pytest.approx(4.4)


def test_an_occupied_port_is_a_clear_error() -> None:
    """Two workers on one host: the second one's metrics/web port clash is reported, not a traceback."""
    import socket

    from logtide.streams.faust_app import PortInUse, check_port_free

    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PortInUse, match=f"streams.metrics_port {port} is already in use"):
            check_port_free(port, "metrics_port")
    check_port_free(0, "web_port")  # 0 disables: never checked


# --- fast validation path ------------------------------------------------------------------------

def _nested(n: int) -> list:
    out: list = []
    for _ in range(n):
        out = [out]
    return out


_json_leaf = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=8)
_json = st.recursive(_json_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                     max_leaves=12)
_field_values = {
    "@timestamp": st.sampled_from(["2026-11-26T12:00:00+00:00", "2026-11-26T12:00:00", "2026-11-26 12:00:00Z",
                                   "nope", "2026-11-26T12:00:00.123456-05:00"]) | _json,
    "event": st.fixed_dictionaries({"id": st.text(max_size=4)}) | _json,
    "logtide": st.sampled_from([{"schema": "log_event"}, {"schema": "metric_sample"},
                                {"schema": "log_event", "flags": ["ts_missing"]}, {"schema": "log_event", "x": 1}])
    | _json,
    "message": st.text(max_size=8) | _json,
    "log": st.sampled_from([{"level": "ERROR"}, {"level": 3}, {"file": {"path": "/x"}, "offset": -1}]) | _json,
    "attributes": st.dictionaries(st.text(max_size=6), _json, max_size=3) | _json,
    "labels": st.dictionaries(st.text(max_size=4), st.text(max_size=4) | _json, max_size=2),
    "extra": _json,
    "deep": st.integers(0, 40).map(_nested),
}


@st.composite
def _records(draw) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=40))
    if kind == 1:
        return orjson.dumps(draw(_json))
    base = orjson.loads(raw(log_doc(NOW)))
    for name, strat in _field_values.items():
        choice = draw(st.integers(0, 3))
        if choice == 0:
            base.pop(name, None)
        elif choice == 1:
            base[name] = draw(strat)
    return orjson.dumps(base)


@settings(max_examples=600, deadline=None)
@given(_records())
def test_fast_validation_path_accepts_exactly_what_the_reference_accepts(data: bytes) -> None:
    """`fast_decode` (the worker's path) against `schemas.decode` (the reference)."""
    from logtide.schemas import encode
    from logtide.streams.validate import fast_decode

    ref = decode(data, LogEvent)
    fast = fast_decode(data, LogEvent)
    if isinstance(ref, DeadLetter):
        assert fast is None
        ev, _ = validate_log(data, NOW, SkewPolicy(1e12, 1e12))
        assert isinstance(ev, DeadLetter) and ev.error == ref.error
    else:
        assert fast is not None and encode(fast) == encode(ref)


def test_fast_validation_path_rejects_what_only_the_depth_walk_sees() -> None:
    from logtide.streams.validate import fast_decode

    deep = log_doc(NOW, attributes={"a": _nested(40)})
    assert fast_decode(raw(deep), LogEvent) is None
    assert decode(raw(deep), LogEvent).error.type == "too_deep"
    shallow = log_doc(NOW, message="{" * 100)  # braces inside strings only loosen the bound
    assert fast_decode(raw(shallow), LogEvent) is not None


def test_zero_fill_follows_the_rule_and_late_events_are_reported_rate_limited() -> None:
    """Count rules get zero-count windows unless the rule says otherwise; late events are summed up in
    one warning line per series, source and reason, at most once per `late_report_seconds`."""
    t = 1_000_000_000_000

    def windows(rules):
        sf = Stateful(small_cfg(detect={"enabled": False, "rules": rules}))
        for ts in (t, t + 35_000):
            sf.add(Point("log.events", "log.events", {}, ts, 1.0), src="s", now_ms=0)
        sf.mark("s", t + 60_000, 20_000)
        return [a.stats.count for a in sf.advance(20_000)[0]]

    assert windows([{"metric": "log.events", "stat": "count"}]) == [1, 0, 0, 1, 0]
    assert windows([{"metric": "log.events", "stat": "count", "zero_fill": False}]) == [1, 1]
    sf = Stateful(small_cfg())
    sf.add(Point("m", "m", {}, t + 60_000, 1.0), src="s", now_ms=0)
    sf.mark("s", t + 60_000, 0)
    for now in (20_000, 21_000):
        assert sf.add(Point("m", "m", {}, t, 1.0), src="s", now_ms=now) is not None
    report = sf.late_report(21_000)
    assert report is not None and "2 source_out_of_order in m from source 's'" in report
    assert sf.add(Point("m", "m", {}, t, 1.0), src="s", now_ms=22_000) is not None
    assert sf.late_report(22_000) is None  # rate-limited
    assert "1 source_out_of_order" in (sf.late_report(60_000) or "")


def test_late_dead_letter_with_no_watermark_yet_does_not_crash() -> None:
    from logtide.streams.pipeline import late_dead_letter
    from logtide.streams.windowing import NO_TIME, Late

    p = Point("m", "m", {}, 1_000_000_000_000, 1.0)
    for wm in (NO_TIME, NO_TIME + 10_000, -(1 << 61)):
        dl = late_dead_letter(p.to_bytes(), Late("window_closed", wm, NO_TIME, "src"), 10_000)
        assert dl.error.type == "late_event" and dl.error.message.startswith("window_closed")
