"""Detect: run each aggregated series through its detector; high scores become `Anomaly` events.

One detector per series (built from `detectors/` by name), fed one statistic of each closed window
(the rule's stat: the mean of an error ratio, the p90 of a latency, the count of events). The anomaly
carries what its receiver needs to judge it without a query: the value, what was expected and the
band, the score and severity, the window, and the last few points of the series.

Episodes: the first flagged window of a series opens an episode (id from the series and that window),
every flagged window until it ends carries the same id, and once the series has stayed inside its band
for `resolve_after_windows` consecutive windows one `resolved` record closes it. The band is the one
the detector gave when the episode opened (a detector that adapts during an incident widens its
current band, which would end the episode while the incident goes on); after
`episode_max_quiet_windows` windows without a flag the episode closes anyway (a lasting level shift).
The episode is part of the series' detector state, so it survives restarts and rebalances.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections import deque
from datetime import UTC, datetime
from typing import Any, Protocol

from logtide.schemas import (
    Anomaly,
    AnomalySeverity,
    AnomalyStatus,
    Band,
    ContextPoint,
    Detector,
    Episode,
    EventInfo,
    Host,
    Service,
    WindowAggregate,
    stable_id,
)
from logtide.streams.config import DetectConfig, DetectRule


class ScoreLike(Protocol):
    score: float
    expected: float
    lower: float
    upper: float


class DetectorLike(Protocol):
    """What streams needs of a detector (the `detectors/` interface)."""

    def update(self, ts: float, value: float) -> ScoreLike: ...

    def to_bytes(self) -> bytes: ...


def build_detector(name: str, params: dict[str, Any]) -> DetectorLike:
    """A fresh detector from the registry in `detectors/` ('default' is its production default)."""
    from logtide import detectors

    return detectors.build(detectors.DEFAULT if name == "default" else name, dict(params) or None)


def restore_detector(blob: bytes) -> DetectorLike:
    from logtide import detectors

    return detectors.from_bytes(blob)


def _finite(x: float, fallback: float) -> float:
    return x if math.isfinite(x) else fallback


class SeriesDetector:
    """A series' detector, its recent context, the windows pooled until they hold enough events
    (``DetectRule.min_events``: sum of the statistic times the events, and the events) and its open
    episode; plain data.

    `episode` is None or [episode id, start ms, end ms of the last flagged window, consecutive windows
    back in band, peak severity, band lower, band upper (the band when the episode opened), windows
    since the last flagged one].
    `first_ms` is the end of the first window seen: the baseline's age.
    """

    __slots__ = ("context", "det", "episode", "first_ms", "pooled")

    def __init__(self, det: DetectorLike, context: int, points: list[list[float]] | None = None,
                 pooled: list[float] | None = None, episode: list[Any] | None = None,
                 *, first_ms: int | None = None) -> None:
        self.det = det
        self.context: deque[tuple[int, float]] = deque(
            ((int(t), float(v)) for t, v in (points or [])), maxlen=context or 1
        )
        self.first_ms = first_ms  # end of the first window seen: the baseline's age
        self.pooled = [float(v) for v in pooled] if pooled else [0.0, 0.0]
        self.episode = list(episode) if episode else None

    def to_plain(self) -> list[Any]:
        """[detector, context, pooled, episode, first_ms] (older layouts restore: two items, or three
        with the pool, or four with the episode)."""
        return [self.det.to_bytes().decode("utf-8"), [list(p) for p in self.context], list(self.pooled),
                self.episode, self.first_ms]

    @classmethod
    def from_plain(cls, d: list[Any], context: int) -> SeriesDetector:
        return cls(restore_detector(d[0].encode("utf-8")), context, d[1], d[2] if len(d) > 2 else None,
                   d[3] if len(d) > 3 else None, first_ms=d[4] if len(d) > 4 else None)


_PROM_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def is_metric_series(metric: str) -> bool:
    """A series from metric samples (Prometheus names) rather than derived from logs (dotted names)."""
    return _PROM_NAME.fullmatch(metric) is not None


def relative_change(metric: str, value: float, expected: float) -> float:
    """The move relative to the series' scale: its expected value, or 1 for a `_ratio` (0-1) series."""
    scale = 1.0 if metric.endswith("_ratio") else abs(expected)
    return abs(value - expected) / scale if scale > 0 else math.inf


def _utc_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class Detection:
    """Detection policy: which stat per metric, threshold, severity, and the Anomaly it builds."""

    def __init__(self, cfg: DetectConfig, step_seconds: float = 60.0) -> None:
        self.cfg = cfg
        self._rule_cache: dict[str, DetectRule | None] = {}
        self.pooled_windows = 0  # windows with too few events, pooled with the next ones
        m = cfg.metrics
        self.metric_warmup = max(m.min_warmup_windows, math.ceil(m.warmup_seconds / step_seconds))

    def rule_for(self, metric: str) -> DetectRule | None:
        """The first rule matching the metric (None: this metric is not watched)."""
        if metric not in self._rule_cache:
            self._rule_cache[metric] = next((r for r in self.cfg.rules if fnmatch.fnmatchcase(metric, r.metric)), None)
        return self._rule_cache[metric]

    def stat_for(self, metric: str) -> str | None:
        """The statistic the first matching rule watches (None: this metric is not watched)."""
        rule = self.rule_for(metric)
        return rule.stat if rule else None

    def new(self, metric: str | None = None) -> SeriesDetector:
        """A detector for a series; a metric series' warm-up is counted in time (unless params set one)."""
        params = self.cfg.params
        if metric is not None and is_metric_series(metric) and "warmup" not in params:
            try:
                det = build_detector(self.cfg.detector, {**params, "warmup": self.metric_warmup})
            except (TypeError, ValueError):  # a detector without a warm-up setting
                det = build_detector(self.cfg.detector, params)
            return SeriesDetector(det, self.cfg.context_points)
        return SeriesDetector(build_detector(self.cfg.detector, params), self.cfg.context_points)

    def restore(self, plain: list[Any]) -> SeriesDetector:
        return SeriesDetector.from_plain(plain, self.cfg.context_points)

    def observe(self, sd: SeriesDetector, agg: WindowAggregate) -> Anomaly | None:
        """Feed one closed window: a firing Anomaly when the score reaches the threshold, a resolved
        one when an open episode has stayed inside its band long enough, otherwise None."""
        rule = self.rule_for(agg.series.metric)
        if rule is None:
            return None
        stat = rule.stat
        value = float(getattr(agg.stats, stat))
        if rule.min_events:
            # too few events for the statistic to mean anything alone: pool with the next windows
            n = agg.stats.count
            pool = sd.pooled
            if pool[1] + n < rule.min_events:
                if n and math.isfinite(value):
                    pool[0] += value * n
                    pool[1] += n
                self.pooled_windows += 1
                return None
            if pool[1]:
                value = (pool[0] + value * n) / (pool[1] + n)
                sd.pooled = [0.0, 0.0]
        end = agg.window.end
        t = end.timestamp()
        if sd.first_ms is None:
            sd.first_ms = int(t * 1000)
        s = sd.det.update(t, value)
        context = list(sd.context)
        sd.context.append((int(t * 1000), value))
        score = min(1.0, max(0.0, _finite(s.score, 0.0)))
        expected = _finite(s.expected, value)
        lower, upper = _finite(s.lower, expected), _finite(s.upper, expected)
        start_ms, end_ms = int(agg.window.start.timestamp() * 1000), int(t * 1000)
        ep = sd.episode
        if score < self.cfg.threshold:
            if ep is None:
                return None
            ep[7] += 1
            ep[3] = ep[3] + 1 if ep[5] <= value <= ep[6] else 0
            if ep[3] < self.cfg.resolve_after_windows and ep[7] < self.cfg.episode_max_quiet_windows:
                return None
            sd.episode = None
            return self._resolved(
                agg, stat=stat, value=value, expected=expected, lower=lower, upper=upper, score=score,
                ep=ep, context=context,
            )
        severity = AnomalySeverity.critical if score >= self.cfg.critical_score else AnomalySeverity.warning
        direction = "above" if value > upper else "below" if value < lower else "outside"
        labels = {**agg.labels, "stat": stat}
        note = ""
        metric = agg.series.metric
        if is_metric_series(metric):
            m = self.cfg.metrics
            change = relative_change(metric, value, expected)
            if change < m.warning_relative_change:
                severity = AnomalySeverity.info
            elif change < m.critical_relative_change:
                severity = AnomalySeverity.warning
            age_s = t - sd.first_ms / 1000
            if age_s < m.young_seconds:
                labels["baseline"] = "young"
                note = f"; young baseline: {age_s:.0f} s of history"
        if ep is None:
            ep = sd.episode = [stable_id("episode", agg.series.key, start_ms), start_ms, end_ms, 0, severity.value,
                               min(lower, upper), max(lower, upper), 0]
        ep[2], ep[3], ep[7] = max(ep[2], end_ms), 0, 0
        if severity == AnomalySeverity.critical:
            ep[4] = severity.value
        return Anomaly(
            timestamp=end,
            event=EventInfo(
                id=stable_id("anomaly", agg.series.key, stat, agg.window.start.isoformat(), agg.window.end.isoformat()),
                kind="alert",
                dataset="logtide.anomalies",
            ),
            logtide=Anomaly.meta(),
            labels=labels,
            message=(
                f"{agg.series.key} {stat}={value:.4g} is {direction} the expected band "
                f"[{lower:.4g}, {upper:.4g}] (expected {expected:.4g}, score {score:.2f}{note})"
            ),
            **ecs_places(agg.labels),
            series=agg.series,
            window=agg.window,
            value=value,
            expected=expected,
            band=Band(lower=min(lower, upper), upper=max(lower, upper)),
            score=score,
            severity=severity,
            detector=Detector(name=self.cfg.detector, threshold=self.cfg.threshold),
            context=[
                ContextPoint(timestamp=datetime.fromtimestamp(ts / 1000, UTC), value=v) for ts, v in context
            ],
            status=AnomalyStatus.firing,
            episode=Episode(id=ep[0], start=_utc_ms(ep[1])),
        )

    def _resolved(
        self,
        agg: WindowAggregate,
        *,
        stat: str,
        value: float,
        expected: float,
        lower: float,
        upper: float,
        score: float,
        ep: list[Any],
        context: list[tuple[int, float]],
    ) -> Anomaly:
        """The record that closes an episode (same id; severity is the episode's peak)."""
        start, end = _utc_ms(ep[1]), _utc_ms(ep[2])
        return Anomaly(
            timestamp=agg.window.end,
            event=EventInfo(id=stable_id("anomaly-resolved", ep[0]), kind="alert", dataset="logtide.anomalies"),
            logtide=Anomaly.meta(),
            labels={**agg.labels, "stat": stat},
            message=(
                f"{agg.series.key} {stat} is back inside its band [{ep[5]:.4g}, {ep[6]:.4g}] "
                f"for {ep[3]} windows "
                f"(episode {start:%H:%M:%S}-{end:%H:%M:%S} resolved)"
            ),
            series=agg.series,
            window=agg.window,
            value=value,
            expected=expected,
            band=Band(lower=min(lower, upper), upper=max(lower, upper)),
            score=score,
            severity=AnomalySeverity(ep[4]),
            detector=Detector(name=self.cfg.detector, threshold=self.cfg.threshold),
            context=[ContextPoint(timestamp=_utc_ms(ts), value=v) for ts, v in context],
            status=AnomalyStatus.resolved,
            episode=Episode(id=ep[0], start=start, end=end),
            **ecs_places(agg.labels),
        )


def ecs_places(labels: dict[str, str]) -> dict[str, Any]:
    """`service` and `host` of an anomaly at their ECS places, from the series labels that name them."""
    out: dict[str, Any] = {}
    if labels.get("service"):
        out["service"] = Service(name=labels["service"])
    if labels.get("host"):
        out["host"] = Host(name=labels["host"])
    return out
