"""Which anomaly records a reader wants (`anomalies tail`, `subscribe`): pure, on the decoded JSON.

Filters work on the plain document rather than the validated model, so `tail --json` can pass
records through byte for byte and still filter them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
STATUSES = ("firing", "resolved")


def service_of(doc: dict[str, Any]) -> str | None:
    """The ECS `service.name`, else the series' `service` label (records written before it was set)."""
    svc = doc.get("service")
    if isinstance(svc, dict) and isinstance(svc.get("name"), str):
        return svc["name"]
    for labels in (doc.get("labels"), (doc.get("series") or {}).get("labels")):
        if isinstance(labels, dict) and isinstance(labels.get("service"), str):
            return labels["service"]
    return None


def status_of(doc: dict[str, Any]) -> str:
    """`status` when the record has one; a record without it reports a firing anomaly."""
    st = doc.get("status")
    return st if isinstance(st, str) else "firing"


@dataclass(frozen=True)
class AnomalyFilter:
    """`services`: any of these (empty = all); `min_severity`: this one and above; `status`: exactly."""

    services: frozenset[str] = frozenset()
    min_severity: str | None = None
    status: str | None = None

    @classmethod
    def of(
        cls, service: str | Iterable[str] | None = None, severity: str | None = None, status: str | None = None
    ) -> AnomalyFilter:
        services = frozenset([service] if isinstance(service, str) else service or ())
        if severity is not None and severity not in SEVERITY_RANK:
            raise ValueError(f"severity {severity!r}: use one of {', '.join(SEVERITY_RANK)}")
        if status is not None and status not in STATUSES:
            raise ValueError(f"status {status!r}: use one of {', '.join(STATUSES)}")
        return cls(services, severity, status)

    def matches(self, doc: Any) -> bool:
        if not isinstance(doc, dict):
            return False
        if self.services and service_of(doc) not in self.services:
            return False
        if self.min_severity is not None:
            rank = SEVERITY_RANK.get(doc.get("severity"), -1)  # type: ignore[arg-type]
            if rank < SEVERITY_RANK[self.min_severity]:
                return False
        return self.status is None or status_of(doc) == self.status
