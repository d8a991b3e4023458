"""Anomaly records for the tail and subscriber tests, built with the real model (as detect builds them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from logtide.schemas import (
    Anomaly,
    AnomalySeverity,
    Band,
    Detector,
    EventInfo,
    Host,
    Series,
    Service,
    Window,
    encode,
    stable_id,
)


def make_anomaly(service: str, severity: str, end: datetime, value: float = 325.76663876635376) -> Anomaly:
    key = f"log.error_ratio{{host=web-1,service={service}}}"
    start = end - timedelta(seconds=60)
    return Anomaly(
        timestamp=end,
        event=EventInfo(id=stable_id("anomaly", key, start.isoformat()), kind="alert", dataset="logtide.anomalies"),
        logtide=Anomaly.meta(),
        labels={"service": service, "host": "web-1", "stat": "mean"},
        message=f"{key} mean={value:.4g} is above the expected band",
        service=Service(name=service),
        host=Host(name="web-1"),
        series=Series(metric="log.error_ratio", key=key, labels={"service": service, "host": "web-1"}),
        window=Window(start=start, end=end, size_seconds=60, step_seconds=60),
        value=value,
        expected=12.5,
        band=Band(lower=10.0, upper=15.0),
        score=0.9 if severity == "critical" else 0.6,
        severity=AnomalySeverity(severity),
        detector=Detector(name="default", threshold=0.5),
    )


def anomaly_set(base: datetime) -> list[tuple[int, Anomaly]]:
    """(partition, anomaly): two services, both severities, over two partitions."""
    out = []
    for i in range(8):
        svc = "checkout" if i % 2 == 0 else "search"
        sev = "critical" if i % 4 < 2 else "warning"
        out.append((i % 2, make_anomaly(svc, sev, base + timedelta(minutes=i))))
    return out


def as_records(items: list[tuple[int, Anomaly]]) -> list[tuple[int, int, bytes, bytes]]:
    return [(p, int(a.timestamp.timestamp() * 1000), a.series.key.encode(), encode(a)) for p, a in items]


NOW = datetime.now(UTC).replace(microsecond=0)
