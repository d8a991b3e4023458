"""Metric series as Prometheus users read them: label-true keys, kinds, rates, histograms, staleness, rules.

Pure operators only (no servers); the comparison with a real Prometheus is in
tests/integration/test_prometheus_compare.py.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import orjson
import pytest
from logtide.schemas import MetricSample
from logtide.shippers.events import metric_event
from logtide.streams.config import AggregateRule, StreamsConfig
from logtide.streams.derive import COUNTER, GAUGE, STALE, Deriver, duration_suffix, rate_name
from logtide.streams.histogram import bucket_index, histogram_quantile
from logtide.streams.pipeline import Stateful, Stateless

HOST = {"name": "box", "hostname": "box"}
NOW = datetime(2026, 1, 1, tzinfo=UTC)
T0 = int(NOW.timestamp() * 1000)


def raw(name: str, value: float, t_ms: int, kind: str = "gauge", stale: bool = False, **labels: str) -> bytes:
    ts = datetime.fromtimestamp(t_ms / 1000, UTC).isoformat()
    enc = metric_event(HOST, name, value, kind, None, labels, ts, dataset="prometheus",
                       flags=["stale"] if stale else None)  # fmt: skip
    assert enc is not None
    return enc


def sample(*a, **kw) -> MetricSample:
    return MetricSample.model_validate(orjson.loads(raw(*a, **kw)))


def cfg(**kw) -> StreamsConfig:
    base = {"max_future_skew_seconds": 1e9, "window": {"size_seconds": 60, "lateness_seconds": 0},
            "detect": {"enabled": False}}  # fmt: skip
    base.update(kw)
    return StreamsConfig.model_validate(base)


def run(records: list[bytes], c: StreamsConfig | None = None) -> list:
    c = c or cfg()
    sl, sf = Stateless(c), Stateful(c)
    aggs = []
    for r in records:
        res = sl.metric(r, NOW)
        assert res.dead is None, res.dead
        if res.point is not None:
            assert sf.add(res.point) is None
        aggs += sf.advance()[0]
    return aggs + sf.flush()[0]


def test_histogram_quantile_is_prometheus_method() -> None:
    b = [(0.1, 3.0), (1.0, 5.0), (math.inf, 6.0)]
    assert histogram_quantile(0.5, b) == pytest.approx(0.1)
    assert histogram_quantile(0.75, b) == pytest.approx(0.1 + 0.9 * 1.5 / 2)
    assert histogram_quantile(0.99, b) == 1.0  # rank in +Inf: the highest finite bound
    assert histogram_quantile(0.25, list(reversed(b))) == pytest.approx(0.05)  # any order
    assert histogram_quantile(0.5, [(0.1, 3.0), (1.0, 2.0), (math.inf, 6.0)]) == pytest.approx(0.1)  # monotonic
    assert math.isnan(histogram_quantile(0.5, [(0.1, 1.0), (1.0, 2.0)]))  # no +Inf
    assert math.isnan(histogram_quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]))
    assert histogram_quantile(-1, b) == -math.inf and histogram_quantile(2, b) == math.inf
    assert bucket_index(0.5, [0.1, 1.0, math.inf]) == 1


def test_names_follow_recording_rule_conventions() -> None:
    assert rate_name("node_cpu_seconds_total", 60) == "node_cpu_seconds:rate1m"
    assert rate_name("http_request_duration_seconds_bucket", 30) == "http_request_duration_seconds_bucket:rate30s"
    assert [duration_suffix(s) for s in (60, 90, 3600, 0.5)] == ["1m", "90s", "1h", "500ms"]


def test_every_label_is_kept_and_kinds_come_from_the_source() -> None:
    d = Deriver(["service", "host"], 60)
    a = d.from_sample(sample("node_cpu_seconds_total", 5, T0, "counter", cpu="0", mode="idle", instance="n:1"))
    b = d.from_sample(sample("node_cpu_seconds_total", 5, T0, "counter", cpu="1", mode="idle", instance="n:1"))
    assert a.key != b.key and a.kind == COUNTER and a.metric == "node_cpu_seconds:rate1m"
    assert a.labels == {"cpu": "0", "mode": "idle", "instance": "n:1"}
    g = d.from_sample(sample("system_load1", 1, T0))
    assert g.kind == GAUGE and g.labels == {"host": "box"}  # no instance: the shipper's host names the source
    q = d.from_sample(sample("go_gc_duration_seconds", 0.1, T0, "summary", quantile="0.5"))
    assert q.kind == GAUGE and q.labels["quantile"] == "0.5" and q.metric == "go_gc_duration_seconds"
    for name in ("go_gc_duration_seconds_sum", "go_gc_duration_seconds_count"):
        assert d.from_sample(sample(name, 1, T0, "summary")).kind == COUNTER
    h = d.from_sample(sample("x_bucket", 3, T0, "histogram", le="0.5"))
    assert h.kind == COUNTER and h.metric == "x_bucket:rate1m" and h.labels["le"] == "0.5"
    assert d.from_sample(sample("x_total", 3, T0, "untyped")).kind == GAUGE  # untyped reads as a gauge
    s = d.from_sample(sample("node_cpu_seconds_total", 0, T0, "counter", stale=True, cpu="0", mode="idle",
                             instance="n:1"))  # fmt: skip
    assert s.kind == STALE and s.key == a.key


def cpu_scrapes(minutes: int, cpus: int = 2, step_s: int = 10, start_ms: int = T0) -> list[bytes]:
    """node_cpu_seconds_total of an idle-ish box: per CPU, idle 0.9 s/s, user 0.1 s/s."""
    out = []
    for i in range(minutes * 60 // step_s + 1):
        t = start_ms + i * step_s * 1000 + 3_000  # scrape phase 3 s
        for cpu in range(cpus):
            for mode, r in (("idle", 0.9), ("user", 0.1)):
                out.append(raw("node_cpu_seconds_total", 1000 + r * i * step_s, t, "counter",
                               cpu=str(cpu), mode=mode, job="node", instance="n:9100"))  # fmt: skip
    return out


def test_counter_rates_stay_per_series_and_sum_by_rule_gives_cpu_count() -> None:
    c = cfg(metrics={"aggregate": [{"metric": "node_cpu_seconds:rate1m"},
                                   {"metric": "node_cpu_seconds:rate1m", "by": ["mode"]},
                                   {"metric": "node_cpu_seconds:rate1m", "by": ["mode"], "op": "max"}]})  # fmt: skip
    aggs = run(cpu_scrapes(5), c)
    per = [a for a in aggs if a.series.metric == "node_cpu_seconds:rate1m" and a.stats.count == 6]
    assert {a.series.labels["mode"] for a in per} == {"idle", "user"}
    assert {a.series.labels["cpu"] for a in per} == {"0", "1"}
    for a in per:
        assert a.stats.mean == pytest.approx(0.9 if a.series.labels["mode"] == "idle" else 0.1)
    total = [a for a in aggs if a.series.metric == "all:node_cpu_seconds:rate1m" and a.stats.count == 4]
    assert total and all(a.stats.mean == pytest.approx(2.0) for a in total)  # CPU count, not a mean of 1/4
    by_mode = [a for a in aggs if a.series.metric == "mode:node_cpu_seconds:rate1m"]
    assert {a.series.labels["mode"]: a.stats.mean for a in by_mode if a.stats.count == 2}["idle"] == pytest.approx(1.8)
    mx = [a for a in aggs if a.series.metric == "mode:node_cpu_seconds:rate1m:max"]
    assert mx and {a.series.labels["mode"]: a.stats.mean for a in mx}["user"] == pytest.approx(0.1)


def test_gauges_are_never_averaged_implicitly() -> None:
    with pytest.raises(ValueError, match="give op"):
        AggregateRule(metric="node_memory_MemFree_bytes", by=["instance"])
    assert AggregateRule(metric="x:rate1m").op == "sum"


def test_histogram_buckets_give_quantiles_per_window() -> None:
    recs = []
    bounds = ["0.1", "0.5", "+Inf"]
    per_s = [2.0, 3.0, 4.0]  # cumulative observations per second below each bound
    for i in range(13):
        t = T0 + i * 10_000 + 1_000
        for le, r in zip(bounds, per_s, strict=True):
            recs.append(raw("req_seconds_bucket", r * i * 10, t, "histogram", le=le, job="api"))
    aggs = run(recs)
    q = {a.series.labels["quantile"]: a.stats.mean for a in aggs
         if a.series.metric == "req_seconds:histogram_quantile_rate1m" and a.window.start.timestamp() * 1000 == T0 + 60_000}  # fmt: skip
    assert set(q) == {"0.5", "0.9", "0.99"}
    assert q["0.5"] == pytest.approx(histogram_quantile(0.5, [(0.1, 2.0), (0.5, 3.0), (math.inf, 4.0)]))
    assert q["0.9"] == pytest.approx(0.5)


def test_counter_windows_read_as_prometheus_increase_with_resets_and_staleness() -> None:
    recs = [raw("req_total", 100 + 10 * i, T0 + i * 10_000, "counter", job="a") for i in range(8)]  # +1/s
    recs.append(raw("req_total", 0, T0 + 75_000, "counter", stale=True, job="a"))  # the target went down
    recs += [raw("req_total", 20 * (i - 9), T0 + i * 10_000, "counter", job="a") for i in range(9, 20)]  # +2/s
    c = cfg(window={"size_seconds": 60, "lateness_seconds": 0, "idle_timeout_seconds": None})
    sl, sf = Stateless(c), Stateful(c)
    seen = []
    for r in recs:
        sf.add(sl.metric(r, NOW).point)
        seen += sf.advance()[0]
        if b'"stale"' in r:  # the window holding the last samples is emitted at once
            assert [a.window.end.timestamp() * 1000 - T0 for a in seen] == [60_000, 120_000]
    seen += sf.flush()[0]
    by_start = {int(a.window.start.timestamp() * 1000) - T0: a.stats for a in seen}
    # samples at 0..50 s: increase over 50 s extrapolated to the 60 s window, as increase(x[60s])
    assert by_start[0].sum == pytest.approx(60.0) and by_start[0].mean == pytest.approx(1.0)
    # the series ended at 70 s: like Prometheus, extrapolated by half an interval only (10 s + 5 s)
    assert by_start[60_000].count == 2 and by_start[60_000].sum == pytest.approx(15.0)
    assert by_start[120_000].mean == pytest.approx(2.0)  # after the restart: the reset is not a drop
    assert all(st.min >= 0 for st in by_start.values())
    assert sf.counter_resets >= 1


def test_counters_beyond_the_cap_are_refused_never_one_rate_across_counters() -> None:
    """Two counters of very different size beyond the per-metric cap. Folded into one overflow series
    (as before), every switch between them was read as a reset: 13 resets and a rate of ~460/s from two
    counters of 1/s and 2/s. Refused instead: the admitted counter's rate stays exact, no overflow
    window, the refused samples counted."""
    recs = []
    for i in range(13):
        t = T0 + i * 10_000 + 1_000
        recs.append(raw("req_total", 100 + 10 * i, t, "counter", job="a"))  # admitted: 1/s
        recs.append(raw("req_total", 5000 + 10 * i, t, "counter", job="b"))  # beyond the cap: 1/s
        recs.append(raw("req_total", 20 * i, t + 5_000, "counter", job="c"))  # beyond the cap: 2/s
    c = cfg(max_series_per_metric=1, window={"size_seconds": 60, "lateness_seconds": 0, "idle_timeout_seconds": None})
    sl, sf = Stateless(c), Stateful(c)
    aggs = []
    for r in recs:
        assert sf.add(sl.metric(r, NOW).point) is None  # refused is not late
        aggs += sf.advance()[0]
    aggs += sf.flush()[0]
    assert {a.series.key for a in aggs} == {"req:rate1m{host=box,job=a}"}
    assert all(a.stats.mean == pytest.approx(1.0) for a in aggs if a.stats.count == 6)
    assert sf.guard.refused == {"counter_overflow": 26} and not sf.guard.overflowed
    assert sf.counter_resets == 0


def test_prometheus_extrapolation_rules() -> None:
    from logtide.streams.prom_rate import extrapolated_increase

    # samples 5..55 s in [0, 60): gaps of 5 s < 1.1 * 10 s extend to both edges
    assert extrapolated_increase(5_000, 55_000, 100.0, 50.0, 6, 0, 60_000) == pytest.approx(60.0)
    # a counter that started inside the window is not extrapolated below zero
    assert extrapolated_increase(5_000, 55_000, 0.0, 50.0, 6, 0, 60_000) == pytest.approx(55.0)
    # first sample 30 s from the start: half an interval (5 s) there; the 10 s to the end in full
    assert extrapolated_increase(30_000, 50_000, 100.0, 20.0, 3, 0, 60_000) == pytest.approx(20.0 * 35 / 20)
    assert extrapolated_increase(5_000, 5_000, 1.0, 0.0, 1, 0, 60_000) is None


def test_detection_on_metrics_warms_up_in_time_and_grades_by_scale() -> None:
    import random

    rng = random.Random(7)
    c = cfg(window={"size_seconds": 10, "lateness_seconds": 0}, detect={"enabled": True})
    sl, sf = Stateless(c), Stateful(c)
    assert sf.detection.metric_warmup == 60  # 600 s at a 10 s step: alerts possible after 10 minutes
    anomalies = []
    for i in range(130):
        t = T0 + i * 10_000 + 500
        cpu = 0.96 if i in (90, 91) else 0.08 + rng.gauss(0, 0.01)  # a burst at 15 min
        mem = 8e9 * (1.008 if i >= 100 else 1.0) * (1 + rng.gauss(0, 1e-4))  # a 0.8 % step
        for name, v in (("system_cpu_utilization_ratio", cpu), ("system_memory_used_bytes", mem)):
            sf.add(sl.metric(raw(name, v, t), NOW).point)
        anomalies += sf.advance()[1]
    cpu_an = [a for a in anomalies if a.series.metric == "system_cpu_utilization_ratio"]
    assert cpu_an, "a CPU burst from 8 % to 96 % after the warm-up raised nothing"
    first = min(a.window.end for a in cpu_an)
    assert (first.timestamp() * 1000 - T0) / 1000 == 910  # the window holding the burst
    assert cpu_an[0].severity.value == "critical" and cpu_an[0].labels["baseline"] == "young"
    assert "young baseline" in cpu_an[0].message
    mem_an = [a for a in anomalies if a.series.metric == "system_memory_used_bytes"]
    assert all(a.severity.value == "info" for a in mem_an)  # 0.8 % is never critical


def test_no_metric_alert_before_the_warm_up_time() -> None:
    c = cfg(window={"size_seconds": 10, "lateness_seconds": 0}, detect={"enabled": True})
    sl, sf = Stateless(c), Stateful(c)
    anomalies = []
    for i in range(59):  # 590 s: under the 600 s warm-up
        v = 0.96 if i == 40 else 0.08 + 0.001 * (i % 3)
        sf.add(sl.metric(raw("system_cpu_utilization_ratio", v, T0 + i * 10_000 + 500), NOW).point)
        anomalies += sf.advance()[1]
    assert anomalies == []


def test_buckets_of_one_histogram_share_a_partition_key() -> None:
    from logtide.streams.pipeline import Combiner

    c = cfg()
    sl, comb = Stateless(c), Combiner(Stateful(c).spec)
    for le in ("0.1", "1", "+Inf"):
        comb.add(sl.metric(raw("h_bucket", 1, T0, "histogram", le=le, job="a"), NOW).point)
    comb.add(sl.metric(raw("h_sum", 1, T0, "histogram", job="a"), NOW).point)
    keys = [k for k, _ in comb.drain()]
    assert keys[:3] == ["h_bucket:rate1m{host=box,job=a}"] * 3 and keys[3] == "h_sum:rate1m{host=box,job=a}"
