"""The anomaly record as a subscriber reads it: every field described in the JSON Schema, service and
host at their ECS places, full precision in the data and a rounded human message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from logtide.schemas import Series, Stats, Window, WindowAggregate, encode, stable_id
from logtide.schemas.json_schema import render_all
from logtide.streams.config import DetectConfig, DetectRule
from logtide.streams.detect import Detection

from tests.streams.zdetector import register

register()


def test_every_anomaly_field_is_described() -> None:
    schema = orjson.loads(render_all()["anomaly.schema.json"])
    missing = [name for name, prop in schema["properties"].items() if not prop.get("description")]
    assert not missing, f"anomaly fields without a description: {missing}"
    for part in ("Band", "Window", "Series", "ContextPoint", "Detector"):
        props = schema["$defs"][part]["properties"]
        assert all(p.get("description") for p in props.values()), part
    assert "window" in schema["properties"]["@timestamp"]["description"]


def _agg(i: int, value: float, labels: dict[str, str]) -> WindowAggregate:
    end = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i + 1)
    key = "log.error_ratio{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"
    return WindowAggregate(
        timestamp=end,
        event=EventInfoFor(key, i),
        logtide=WindowAggregate.meta(),
        labels=labels,
        series=Series(metric="log.error_ratio", key=key, labels=labels),
        window=Window(start=end - timedelta(minutes=1), end=end, size_seconds=60, step_seconds=60),
        stats=Stats(count=1, sum=value, min=value, max=value, mean=value, p50=value, p90=value, p99=value),
    )


def EventInfoFor(key: str, i: int):
    from logtide.schemas import EventInfo

    return EventInfo(id=stable_id("agg", key, i), kind="metric")


def test_anomaly_has_ecs_service_and_host_and_rounds_only_the_message() -> None:
    det = Detection(DetectConfig(detector="test_z", params={"warmup": 5}, threshold=0.5,
                                 rules=[DetectRule(metric="log.error_ratio", stat="mean")]))  # fmt: skip
    sd = det.new()
    labels = {"service": "checkout", "host": "web-1"}
    for i in range(10):
        assert det.observe(sd, _agg(i, 1.0 + (i % 3) * 0.01, labels)) is None
    spike = 325.76663876635376
    a = det.observe(sd, _agg(10, spike, labels))
    assert a is not None
    doc = orjson.loads(encode(a))
    assert doc["service"] == {"name": "checkout"} and doc["host"] == {"name": "web-1"}
    assert doc["value"] == spike  # full precision in the data
    assert "mean=325.8 " in doc["message"]  # 4 significant digits for people
    assert doc["@timestamp"] == doc["window"]["end"]
    # a series without those labels has neither field
    sd2 = det.new()
    for i in range(10):
        det.observe(sd2, _agg(i, 1.0 + (i % 3) * 0.01, {"region": "eu"}))
    b = det.observe(sd2, _agg(10, spike, {"region": "eu"}))
    assert b is not None and b.service is None and b.host is None
