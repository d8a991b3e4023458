"""The alert process's Prometheus metrics: every attempt and every suppression is counted."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class AlertMetrics:
    """One set per engine, on its own registry (several engines in one test process coexist)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.attempts = Counter("logtide_alerts_attempts", "Delivery attempts by outcome (sent, failed, "
                                "retrying, dead_letter).", ["receiver", "integration", "outcome"], registry=r)
        self.suppressed = Counter("logtide_alerts_suppressed", "Alerts or notifications held back, by reason "
                                  "(silenced, inhibited, flapping: per flush that decided it; grouped: records "
                                  "folded into a known alert; rate_limited, queue_full: per delivery).",
                                  ["reason"], registry=r)
        self.anomalies = Counter("logtide_alerts_anomalies", "Anomaly records read, by status.", ["status"],
                                 registry=r)
        self.dead_letters = Counter("logtide_alerts_dead_letters", "Malformed anomaly records.", registry=r)
        self.groups = Gauge("logtide_alerts_groups", "Aggregation groups held.", registry=r)
        self.breaker_open = Gauge("logtide_alerts_breaker_open", "1 while a receiver's circuit is open.",
                                  ["receiver"], registry=r)
