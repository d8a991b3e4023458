"""Anomaly records for alert tests, built through the real schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from logtide.schemas import (
    Anomaly,
    AnomalySeverity,
    AnomalyStatus,
    Band,
    Detector,
    Episode,
    EventInfo,
    Series,
    Window,
)

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def anomaly(
    service: str = "checkout",
    metric: str = "log.error_ratio",
    *,
    at: float = 0.0,
    episode: str | None = "ep1",
    resolved: bool = False,
    severity: str = "warning",
    start: float | None = None,
) -> Anomaly:
    """A record `at` seconds after T0 (window of 60 s ending there)."""
    end = T0 + timedelta(seconds=at)
    ep_start = T0 + timedelta(seconds=at - 60 if start is None else start)
    labels = {"service": service}
    return Anomaly(
        timestamp=end,
        event=EventInfo(id=f"{episode}-{at}-{resolved}", kind="alert"),
        logtide=Anomaly.meta(),
        labels={**labels, "stat": "mean"},
        message=f"{metric}{{service={service}}} mean=0.5 is above the expected band",
        series=Series(metric=metric, key=f"{metric}{{service={service}}}", labels=labels),
        window=Window(start=end - timedelta(seconds=60), end=end, size_seconds=60, step_seconds=60),
        value=0.5, expected=0.02, band=Band(lower=0.0, upper=0.05), score=0.9,
        severity=AnomalySeverity(severity),
        detector=Detector(name="default", threshold=0.5),
        status=AnomalyStatus.resolved if resolved else AnomalyStatus.firing,
        episode=None if episode is None else Episode(id=episode, start=ep_start, end=end if resolved else None),
    )
