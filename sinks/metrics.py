"""The sink's own Prometheus metrics (one registry per runner, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.written = Counter("logtide_sink_written", "Documents acknowledged by a target", ["target"], registry=r)
        self.rejected = Counter(
            "logtide_sink_rejected", "Documents a target refused for good (dead-lettered)", ["target"], registry=r
        )
        self.retries = Counter(
            "logtide_sink_retries", "Writes retried after the target was unavailable", ["target", "reason"],
            registry=r,
        )  # fmt: skip
        self.unavailable_seconds = Gauge(
            "logtide_sink_unavailable_seconds", "Seconds the current write has waited for its target (0: fine)",
            ["target"], registry=r,
        )  # fmt: skip
        self.dead_letters = Counter(
            "logtide_sink_dead_letters", "Records sent to the dead-letter topic", ["reason"], registry=r
        )
        self.committed = Counter("logtide_sink_committed_batches", "Batches whose offsets were committed", registry=r)
