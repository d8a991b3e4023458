"""Anomaly episodes: one id from the first flagged window to the resolve, and old records still decode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from logtide.schemas import (
    Anomaly,
    AnomalyStatus,
    EventInfo,
    Series,
    Stats,
    Window,
    WindowAggregate,
    decode,
    encode,
)
from logtide.streams.config import DetectConfig
from logtide.streams.detect import Detection, SeriesDetector

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def agg(i: int, value: float) -> WindowAggregate:
    start, end = T0 + timedelta(seconds=10 * i), T0 + timedelta(seconds=10 * (i + 1))
    return WindowAggregate(
        timestamp=end,
        event=EventInfo(id=f"w{i}", kind="metric"),
        logtide=WindowAggregate.meta(),
        labels={"service": "checkout"},
        series=Series(metric="log.error_ratio", key="log.error_ratio{service=checkout}", labels={"service": "checkout"}),
        window=Window(start=start, end=end, size_seconds=10, step_seconds=10),
        stats=Stats(count=10, sum=value * 10, min=value, max=value, mean=value, p50=value, p90=value, p99=value),
    )


def run(values: list[float], restart_every: int | None = None) -> list[Anomaly]:
    det = Detection(
        DetectConfig(detector="test_z", params={"warmup": 20}, threshold=0.5, resolve_after_windows=3,
                     rules=[{"metric": "log.error_ratio", "stat": "mean"}])
    )
    sd, out = det.new(), []
    for i, v in enumerate(values):
        a = det.observe(sd, agg(i, v))
        if a is not None:
            out.append(a)
        if restart_every and i % restart_every == 0:
            sd = det.restore(orjson.loads(orjson.dumps(sd.to_plain())))
    return out


NORMAL = [0.02 + 0.001 * (i % 5) for i in range(30)]


def test_episode_has_one_id_and_resolves_after_n_windows_in_band() -> None:
    # 30 normal windows, 4 bad ones, a normal one, 2 bad again (same episode), then normal
    values = NORMAL + [0.6] * 4 + [0.021] + [0.6] * 2 + [0.021] * 6
    out = run(values)
    firing = [a for a in out if a.status == AnomalyStatus.firing]
    resolved = [a for a in out if a.status == AnomalyStatus.resolved]
    assert len(firing) == 6 and len(resolved) == 1
    ids = {a.episode.id for a in out}
    assert len(ids) == 1, "one stable id from the first flagged window to the resolve"
    r = resolved[0]
    assert r.episode.start == firing[0].window.start
    assert r.episode.end == firing[-1].window.end
    # resolved on the 3rd in-band window after the last flagged one
    assert r.window.end == firing[-1].window.end + timedelta(seconds=30)
    assert r.severity == max((a.severity for a in firing), key=["info", "warning", "critical"].index)
    assert r.event.id != firing[0].event.id
    # a later incident is a new episode
    out2 = run(values + [0.6] * 2)
    assert len({a.episode.id for a in out2}) == 2


def test_episode_state_survives_restarts() -> None:
    values = NORMAL + [0.6] * 4 + [0.021] * 2 + [0.6] + [0.021] * 5
    plain = [a.model_dump() for a in run(values)]
    assert [a.model_dump() for a in run(values, restart_every=3)] == plain
    assert any(a["status"] == "resolved" for a in plain)


def test_state_saved_before_episodes_restores() -> None:
    det = Detection(DetectConfig(detector="test_z"))
    sd = det.new()
    old = sd.to_plain()[:2]  # the two-item layout written before episodes
    assert SeriesDetector.from_plain(old, 10).episode is None


def test_old_anomaly_records_still_decode() -> None:
    a = run([*NORMAL, 0.6])[0]
    doc = orjson.loads(encode(a))
    doc.pop("status")
    doc.pop("episode")
    old = decode(orjson.dumps(doc), Anomaly)
    assert old.status == AnomalyStatus.firing and old.episode is None
    assert old.episode_id == old.event.id
