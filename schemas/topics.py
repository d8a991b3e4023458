"""Topic names: the only way stages address each other."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "logtide."

LOGS_RAW = "logs.raw"
METRICS_RAW = "metrics.raw"
LOGS_ENRICHED = "logs.enriched"
METRICS_AGG = "metrics.agg"
ANOMALIES = "anomalies"
DEADLETTER = "deadletter"
ALERTS = "alerts"  # every notification attempt (AlertNotification)
ALERTS_NFLOG = "alerts.nflog"  # compacted: the notification log, keyed by group/receiver
ALERTS_SILENCES = "alerts.silences"  # compacted: silences, keyed by id

ALL = (LOGS_RAW, METRICS_RAW, LOGS_ENRICHED, METRICS_AGG, ANOMALIES, DEADLETTER)


@dataclass(frozen=True)
class Topics:
    """Fully qualified topic names for one prefix."""

    prefix: str = DEFAULT_PREFIX

    def name(self, short: str) -> str:
        return f"{self.prefix}{short}"

    @property
    def logs_raw(self) -> str:
        return self.name(LOGS_RAW)

    @property
    def metrics_raw(self) -> str:
        return self.name(METRICS_RAW)

    @property
    def logs_enriched(self) -> str:
        return self.name(LOGS_ENRICHED)

    @property
    def metrics_agg(self) -> str:
        return self.name(METRICS_AGG)

    @property
    def anomalies(self) -> str:
        return self.name(ANOMALIES)

    @property
    def deadletter(self) -> str:
        return self.name(DEADLETTER)

    @property
    def alerts(self) -> str:
        return self.name(ALERTS)

    @property
    def alerts_nflog(self) -> str:
        return self.name(ALERTS_NFLOG)

    @property
    def alerts_silences(self) -> str:
        return self.name(ALERTS_SILENCES)

    def all(self) -> list[str]:
        return [self.name(t) for t in ALL]
