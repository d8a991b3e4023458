"""Configuration of the stream operators (the `streams` section of the logtide YAML file).

Validated at start like every other section: unknown keys are errors, so a typo in a rule or a window
setting is reported with its key path instead of silently falling back to a default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ServiceRule(_Section):
    """Map events to a `service.name`: match one of host (glob), log file path (glob) or message regex.

    Rules are tried in order; the first match wins. An event that already names its service keeps it
    unless `override` is set.
    """

    service: str = Field(min_length=1)
    host: str | None = None
    path: str | None = None
    regex: str | None = None
    environment: str | None = None
    override: bool = False

    @model_validator(mode="after")
    def _one_matcher(self) -> ServiceRule:
        given = [m for m in (self.host, self.path, self.regex) if m is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of host, path or regex")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex does not compile: {exc}") from None
        return self


class WindowConfig(_Section):
    """Event-time windows: tumbling when `step_seconds` is unset, hopping otherwise.

    `size_seconds` must be a whole multiple of `step_seconds` (windows are built from step-wide panes
    merged at close, which is what makes hopping windows cheap with a mergeable sketch).
    """

    size_seconds: PositiveFloat = 60.0
    step_seconds: PositiveFloat | None = None
    lateness_seconds: float = Field(default=10.0, ge=0)
    group_by: list[str] = Field(
        default_factory=lambda: ["service", "host"],
        description="Series dimensions of metrics derived from logs: service, host and any label name. "
        "Metric samples keep their full label set (see `metrics.aggregate` for sum/max/avg by).",
    )
    relative_accuracy: float = Field(default=0.01, gt=0, lt=0.5, description="Quantile sketch accuracy.")
    idle_timeout_seconds: float | None = Field(
        default=300.0,
        ge=0,
        description=(
            "Wall-clock seconds after which a source (a Kafka partition's host + file) that has sent "
            "nothing stops holding the watermark back (null: never; a gone source then holds its "
            "series' windows open). Under `logtide streams` only time during which its raw partition "
            "was read to the end counts, so a source is never idle for want of a reader."
        ),
    )
    max_source_jump_seconds: float = Field(
        default=120.0,
        ge=0,
        description=(
            "An event further ahead of its own source's watermark than this is flagged clock_skew and "
            "kept out of the watermark until the next event of the source confirms the jump (a gap)."
        ),
    )
    source_discovery_seconds: float = Field(
        default=10.0,
        ge=0,
        description=(
            "Wall-clock seconds no window closes after a source is seen for the first time, so that "
            "sources read alongside it (the files of a backfill) join the series they share first."
        ),
    )
    zero_fill_windows: int = Field(
        default=60,
        ge=0,
        description="Zero-count windows emitted at most this many steps after a series' last data.",
    )

    @model_validator(mode="after")
    def _multiple(self) -> WindowConfig:
        step = self.step_seconds or self.size_seconds
        size_ms, step_ms = round(self.size_seconds * 1000), round(step * 1000)
        if step_ms > size_ms:
            raise ValueError("step_seconds cannot exceed size_seconds")
        if size_ms % step_ms:
            raise ValueError("size_seconds must be a whole multiple of step_seconds")
        return self

    @property
    def size_ms(self) -> int:
        return round(self.size_seconds * 1000)

    @property
    def step_ms(self) -> int:
        return round((self.step_seconds or self.size_seconds) * 1000)

    @property
    def lateness_ms(self) -> int:
        return round(self.lateness_seconds * 1000)

    @property
    def idle_ms(self) -> int | None:
        return None if self.idle_timeout_seconds is None else round(self.idle_timeout_seconds * 1000)

    @property
    def discovery_ms(self) -> int:
        return round(self.source_discovery_seconds * 1000)

    @property
    def jump_ms(self) -> int:
        return round(self.max_source_jump_seconds * 1000)


Stat = Literal["count", "sum", "min", "max", "mean", "p50", "p90", "p99"]


class DetectRule(_Section):
    """Which statistic of which metric's windows a detector watches (metric is a glob).

    ``min_events``: a window over fewer events is not scored on its own but pooled with the next
    ones until they hold that many (a minute with one FATAL line is not an error ratio of 1)."""

    metric: str
    stat: Stat = "mean"
    min_events: int = Field(default=0, ge=0)
    zero_fill: bool | None = Field(
        default=None,
        description=(
            "Emit windows without events (count 0) while the series' sources are alive, so detectors see "
            "drops to zero (default: on when stat is count)."
        ),
    )

    @property
    def fills_zeros(self) -> bool:
        return self.stat == "count" if self.zero_fill is None else self.zero_fill


def _default_rules() -> list[DetectRule]:
    return [
        DetectRule(metric="log.error_ratio", stat="mean", min_events=20),
        DetectRule(metric="http.request.duration_ms", stat="p90"),
        DetectRule(metric="log.events", stat="count"),
        DetectRule(metric="*", stat="mean"),
    ]


class MetricDetectConfig(_Section):
    """Detection on metric series (Prometheus-named ones, not the series derived from logs).

    Warm-up is counted in time: a series can alert once it has `warmup_seconds` of windows behind it
    (at least `min_warmup_windows`), whatever the step. Until it has `young_seconds` of history its
    anomalies say the baseline is young (label `baseline: young`). Severity follows the size of the
    move relative to the series' scale (its expected value; 1 for `_ratio` series): below
    `warning_relative_change` an anomaly is only `info`, below `critical_relative_change` at most `warning`.
    """

    warmup_seconds: float = Field(default=600.0, gt=0)
    min_warmup_windows: PositiveInt = 20
    young_seconds: float = Field(default=3600.0, ge=0)
    warning_relative_change: float = Field(default=0.05, ge=0)
    critical_relative_change: float = Field(default=0.25, ge=0)


class DetectConfig(_Section):
    """The detector each aggregated series runs through, and when a score becomes an anomaly."""

    enabled: bool = True
    detector: str = Field(default="default", description="A name registered in detectors/.")
    params: dict[str, Any] = Field(default_factory=dict, description="Detector configuration overrides.")
    threshold: float = Field(default=0.5, ge=0, le=1)
    critical_score: float = Field(default=0.8, ge=0, le=1)
    context_points: int = Field(default=10, ge=0, le=1000)
    resolve_after_windows: PositiveInt = Field(
        default=3,
        description=(
            "A flagged series' episode resolves after this many consecutive windows inside the band it had "
            "when the episode opened."
        ),
    )
    episode_max_quiet_windows: PositiveInt = Field(
        default=60, description="An episode with no flagged window for this many windows resolves anyway."
    )
    rules: list[DetectRule] = Field(default_factory=_default_rules)
    metrics: MetricDetectConfig = Field(default_factory=MetricDetectConfig)


AggregateOp = Literal["sum", "max", "min", "avg"]


class AggregateRule(_Section):
    """`op by (labels) (metric)` over the closed windows of label-true series, as a recording rule would.

    `metric` is a glob over derived series names (e.g. `node_cpu_seconds:rate1m`). `op` defaults to
    sum for rates (`:rate` in the name); for anything else it must be given: gauges are never
    averaged implicitly. The result is named `<by joined with _>:<metric>` (`all` when `by` is
    empty), with `:<op>` appended unless the op is sum.
    """

    metric: str = Field(min_length=1)
    op: AggregateOp | None = None
    by: list[str] = Field(default_factory=list)
    stat: Literal["count", "sum", "min", "max", "mean", "p50", "p90", "p99"] = "mean"
    name: str | None = Field(default=None, description="Output metric name (default: see above).")

    @model_validator(mode="after")
    def _op(self) -> AggregateRule:
        if self.op is None:
            if ":rate" not in self.metric:
                raise ValueError("give op (sum, max, min or avg): only rates default to sum")
            self.op = "sum"
        return self

    def output_name(self, metric: str) -> str:
        if self.name:
            return self.name
        out = f"{'_'.join(self.by) or 'all'}:{metric}"
        return out if self.op == "sum" else f"{out}:{self.op}"


class MetricsConfig(_Section):
    """Metric series: label-true by default (the full label set is the series); these add views."""

    aggregate: list[AggregateRule] = Field(default_factory=list)
    histogram_quantiles: list[float] = Field(
        default_factory=lambda: [0.5, 0.9, 0.99],
        description="Quantiles computed from each histogram's bucket rates per window (histogram_quantile).",
    )
    stale_closes_windows: bool = Field(
        default=True, description="A staleness marker emits the series' window holding it at once."
    )


class DeriveConfig(_Section):
    """Metrics derived from logs (per service and level counts, error ratio, status classes, latency)."""

    enabled: bool = True
    latency_fields: list[str] = Field(
        default_factory=lambda: ["http.request.duration_ms", "event.duration", "attributes.duration_ms"]
    )


class StreamsConfig(_Section):
    """The `streams` section: operators, windows, detection, and the Faust worker around them."""

    app_id: str = "logtide-streams"
    max_future_skew_seconds: float = Field(default=300.0, ge=0)
    max_past_skew_seconds: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Keep events older than this (wall clock) out of the windows (null: history is judged "
            "against its own source's timeline, not the wall clock)."
        ),
    )
    late_report_seconds: PositiveFloat = Field(
        default=30.0, description="At most one warning per this many seconds summing up late events."
    )
    services: list[ServiceRule] = Field(default_factory=list)
    static_labels: dict[str, str] = Field(default_factory=dict)
    trace_id_patterns: list[str] = Field(
        default_factory=lambda: [r"\btrace[_-]?id[=:\s\"]+([0-9a-fA-F]{16,32})\b", r"\btraceparent[=:\s\"]+00-([0-9a-f]{32})-"]
    )
    geoip_db: Path | None = Field(default=None, description="MaxMind GeoLite2-City .mmdb path (optional).")
    derive: DeriveConfig = Field(default_factory=DeriveConfig)
    window: WindowConfig = Field(default_factory=WindowConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    detect: DetectConfig = Field(default_factory=DetectConfig)
    series_evict_after_seconds: float | None = Field(
        default=3600.0, ge=0,
        description=(
            "Drop a series' state (windows, counters, detector) once it has no open window and its newest "
            "event is this far behind its partition's newest event time; null keeps every series."
        ),
    )
    max_series_per_metric: PositiveInt = Field(
        default=10_000,
        description=("Cardinality cap per metric (per partition of the points topic): gauge series beyond it "
                     "fold into the metric's {overflow=\"true\"} series, counter samples are dead-lettered."),
    )
    max_metric_names: PositiveInt = Field(
        default=10_000,
        description=("Cap on distinct metric names (per partition of the points topic); points of further "
                     "names are dead-lettered (cardinality_overflow) until idle names are evicted."),
    )
    # Faust worker
    state_dir: Path = Path("./data/streams")
    store: str = Field(
        default="rocksdb://",
        description="Faust table store: rocksdb:// (RocksDB through rocksdict), rocksdict:// (alias) or memory://.",
    )
    partitions: PositiveInt | None = Field(
        default=None, description="Partitions of internal topics (points, changelog); null: topics.partitions."
    )
    batch_size: PositiveInt = Field(default=1000, description="Points messages per aggregate-agent batch.")
    raw_batch_size: PositiveInt = Field(
        default=10_000,
        description="Most raw records mapped per cycle (bigger batches combine better and commit less often).",
    )
    batch_within_seconds: PositiveFloat = Field(
        default=0.25, description="Longest wait to fill a batch (bigger batches combine better; adds latency)."
    )
    compression: Literal["lz4", "zstd", "gzip"] | None = Field(
        default=None, description="Compression of what the batch reader produces (none: least CPU on one host)."
    )
    session_timeout_seconds: PositiveFloat = Field(
        default=30.0, description="Kafka group session timeout: how soon a dead worker's partitions move."
    )
    commit_interval_seconds: PositiveFloat = 1.0
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="asyncio",
        description="The worker's event loop: uvloop (libuv, measured in bench/bench_streams.py) or asyncio's own.",
    )
    metrics_port: int = Field(default=9108, ge=0, le=65535, description="Prometheus /metrics; 0 disables.")
    web_port: int = Field(default=6066, ge=0, le=65535)

    @model_validator(mode="after")
    def _patterns(self) -> StreamsConfig:
        for p in self.trace_id_patterns:
            try:
                if re.compile(p).groups < 1:
                    raise ValueError(f"trace_id_patterns: {p!r} needs one capture group")
            except re.error as exc:
                raise ValueError(f"trace_id_patterns: {p!r} does not compile: {exc}") from None
        return self
