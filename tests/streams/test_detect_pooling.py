"""Ratios over too few events are pooled before they are scored (``DetectRule.min_events``)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import orjson
from logtide.streams.config import StreamsConfig
from logtide.streams.pipeline import Stateful, Stateless

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def cfg(min_events: int) -> StreamsConfig:
    return StreamsConfig.model_validate({
        "max_future_skew_seconds": 1e9,
        "window": {"size_seconds": 60, "lateness_seconds": 2, "group_by": ["service"]},
        "detect": {"detector": "default", "threshold": 0.5,
                   "rules": [{"metric": "log.error_ratio", "stat": "mean", "min_events": min_events}]},
    })


def quiet_service(seed: int = 3, minutes: int = 600):
    """A quiet service: 0-3 log lines a minute, one in fifty an error; every error is a lone line."""
    rnd = random.Random(seed)
    i = 0
    for m in range(minutes):
        for k in range(rnd.choice((0, 1, 1, 2, 3))):
            ts = T0 + timedelta(minutes=m, seconds=10 * k + 1)
            err = rnd.random() < 0.02
            doc = {"@timestamp": ts.isoformat(), "event": {"id": f"e{i}"}, "logtide": {"schema": "log_event"},
                   "message": f"m{i}", "log": {"level": "fatal" if err else "info"}, "service": {"name": "batch"}}
            i += 1
            yield orjson.dumps(doc)


def run(c: StreamsConfig, seed: int = 1, minutes: int = 1000) -> tuple[list, list, Stateful]:
    sl, sf = Stateless(c), Stateful(c)
    aggs, anomalies = [], []
    for rec in quiet_service(seed, minutes):
        for p in sl.log(rec, T0).points:
            sf.add(p)
        a, n = sf.advance()
        aggs += a
        anomalies += n
    a, n = sf.flush()
    return aggs + a, anomalies + n, sf


def test_lone_error_lines_in_quiet_minutes_are_not_anomalies_once_pooled() -> None:
    _, raw_anomalies, _ = run(cfg(0))
    assert any(a.value == 1.0 for a in raw_anomalies)  # scored alone, a lone FATAL line is a ratio of 1
    aggs, anomalies, sf = run(cfg(20))  # the same minutes, pooled to 20 events
    assert not anomalies
    assert sf.detection.pooled_windows > 0
    ratio_windows = [a for a in aggs if a.series.metric == "log.error_ratio"]
    assert sf.detection.pooled_windows < len(ratio_windows)  # pooled windows are scored once they fill


def test_pooled_state_survives_export_and_restore() -> None:
    c = cfg(20)
    sl, sf = Stateless(c), Stateful(c)
    out = []
    for i, rec in enumerate(quiet_service(minutes=300)):
        for p in sl.log(rec, T0).points:
            sf.add(p)
        _, n = sf.advance()
        out += [a.model_dump() for a in n]
        if i % 37 == 36:
            fresh = Stateful(c)
            for k in sf.series:
                fresh.restore(k, sf.export(k))
            fresh.detection.pooled_windows = sf.detection.pooled_windows
            sf = fresh
    sl2, ref = Stateless(c), Stateful(c)
    expect = []
    for rec in quiet_service(minutes=300):
        for p in sl2.log(rec, T0).points:
            ref.add(p)
        _, n = ref.advance()
        expect += [a.model_dump() for a in n]
    assert out == expect
