"""The streams worker's own Prometheus metrics (served on `streams.metrics_port`).

Every drop by policy is counted here (dead letters by reason, late events, clock skew, cardinality
overflow), next to throughput, consumer lag, series count and processing latency.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class StreamsMetrics:
    """One set of collectors per worker (own registry, so several apps in one test process coexist)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.events_in = Counter("logtide_streams_events_in", "Records consumed.", ["topic"], registry=r)
        self.events_out = Counter("logtide_streams_events_out", "Records produced.", ["topic"], registry=r)
        self.consumer_lag = Gauge(
            "logtide_streams_consumer_lag", "High watermark minus position.", ["topic", "partition"], registry=r
        )
        self.dead_letters = Counter(
            "logtide_streams_dead_letters", "Records sent to the dead-letter topic.", ["reason"], registry=r
        )
        self.late_events = Counter(
            "logtide_streams_late_events", "Events behind the watermark by more than the allowed lateness "
            "(dead-lettered), by reason.", ["reason"], registry=r,
        )
        self.clock_skew = Counter(
            "logtide_streams_clock_skew_events", "Events flagged for clock skew.", ["direction"], registry=r
        )
        self.untimed = Counter(
            "logtide_streams_untimed_events",
            "Events forwarded but kept out of windows: no real event time (ts_missing, ts_unparsed, "
            "parse_failure).", ["topic"], registry=r,
        )
        self.series = Gauge("logtide_streams_series", "Series held by this worker (live series).", registry=r)
        self.series_evicted = Counter(
            "logtide_streams_series_evicted", "Idle series whose state was dropped (windows emitted first).",
            registry=r,
        )
        self.series_overflow = Counter(
            "logtide_streams_series_overflow", "Events folded into an overflow series.", ["metric"], registry=r
        )
        self.metric_names = Gauge(
            "logtide_streams_metric_names",
            "Live metric names held by this worker, summed over its points partitions (the cap is per partition).",
            registry=r,
        )
        self.cardinality_refused = Counter(
            "logtide_streams_cardinality_refused", "Events kept out of windows by the cardinality caps "
            "(dead-lettered): metric_names (too many names), counter_overflow (a counter series beyond the "
            "per-metric cap).", ["reason"], registry=r,
        )
        self.windows_closed = Counter("logtide_streams_windows_closed", "Aggregates emitted.", registry=r)
        self.anomalies = Counter("logtide_streams_anomalies", "Anomalies emitted.", ["severity"], registry=r)
        self.duplicates = Counter(
            "logtide_streams_replayed_points", "Replayed points skipped (already in state).", registry=r
        )
        self.resent = Counter(
            "logtide_streams_resent_events", "Raw records a shipper sent again (an id among its partition's "
            "recent records): forwarded, kept out of windows.", ["topic"], registry=r,
        )
        self.processing = Histogram(
            "logtide_streams_processing_seconds", "Time to process one batch, per agent.", ["agent"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=r,
        )
        self.event_lag = Histogram(
            "logtide_streams_event_lag_seconds", "Wall clock minus Kafka record timestamp at processing.",
            ["agent"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60), registry=r,
        )
