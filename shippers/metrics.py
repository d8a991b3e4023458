"""The shipper's own Prometheus metrics (one registry per shipper, so tests can run several)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class ShipperMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.lines_read = Counter(
            "logtide_shipper_lines_read", "Lines read from files", ["input"], registry=r
        )
        self.bytes_read = Counter(
            "logtide_shipper_bytes_read", "Bytes read from files", ["input"], registry=r
        )
        self.events_sent = Counter(
            "logtide_shipper_events_sent", "Events acknowledged by the output", ["input"], registry=r
        )
        self.bytes_sent = Counter(
            "logtide_shipper_bytes_sent", "Encoded bytes acknowledged by the output", ["input"], registry=r
        )
        self.batches = Counter(
            "logtide_shipper_batches", "Batches acknowledged by the output", ["input"], registry=r
        )
        self.retries = Counter(
            "logtide_shipper_send_retries", "Sends retried after an error", ["input"], registry=r
        )
        self.send_errors = Counter(
            "logtide_shipper_send_errors", "Send attempts that failed", ["input", "error"], registry=r
        )
        self.parse_failures = Counter(
            "logtide_shipper_parse_failures", "Lines shipped with a parse_failure flag", ["input"], registry=r
        )
        self.flagged = Counter(
            "logtide_shipper_flagged_lines", "Lines shipped with a flag", ["input", "flag"], registry=r
        )
        self.skipped_files = Counter(
            "logtide_shipper_skipped_files",
            "Files skipped (binary, compressed, too old)",
            ["input", "reason"],
            registry=r,
        )
        self.file_errors = Counter(
            "logtide_shipper_file_errors", "Files that could not be opened or read", ["input"], registry=r
        )
        self.rotations = Counter(
            "logtide_shipper_file_events",
            "Truncations, renames, deletions seen",
            ["input", "kind"],
            registry=r,
        )
        self.bytes_behind = Gauge(
            "logtide_shipper_bytes_behind", "Bytes between the read position and the end of the file",
            ["input", "path"], registry=r,
        )  # fmt: skip
        self.open_files = Gauge("logtide_shipper_open_files", "Files held open by harvesters", registry=r)
        self.inflight_bytes = Gauge(
            "logtide_shipper_inflight_bytes", "Encoded bytes awaiting ack", registry=r
        )
        self.checkpoint_age = Gauge(
            "logtide_shipper_checkpoint_age_seconds",
            "Seconds since the registry was last written",
            registry=r,
        )
        self.metric_samples = Counter(
            "logtide_shipper_metric_samples", "Metric samples sent", ["source"], registry=r
        )
        self.scrape_errors = Counter(
            "logtide_shipper_scrape_errors", "Failed Prometheus scrapes", ["url"], registry=r
        )
        self._last_checkpoint = time.time()
        self.checkpoint_age.set_function(lambda: time.time() - self._last_checkpoint)

    def totals(self) -> dict[str, float]:
        """Sums over every input of the counters the minute's log line reports."""
        out = {}
        for key, counter in (("lines", self.lines_read), ("events", self.events_sent),
                             ("bytes", self.bytes_sent), ("retries", self.retries)):  # fmt: skip
            out[key] = sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))
        return out

    def checkpointed(self) -> None:
        self._last_checkpoint = time.time()

    def serve(self, listen: str) -> tuple[str, int]:
        """Start the /metrics HTTP server (a daemon thread); returns the bound address."""
        host, _, port = listen.rpartition(":")
        server, _thread = start_http_server(int(port), addr=host or "0.0.0.0", registry=self.registry)
        self._server = server
        return server.server_address[0], server.server_address[1]

    def close(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.shutdown()
            server.server_close()
