"""The event contracts every stage speaks.

Field names follow the Elastic Common Schema where one exists, so that Kibana and ECS-aware tools
read our documents as they are. Every event carries a stable `event.id` (the Elasticsearch `_id`
and the ClickHouse dedup key) and `logtide.schema`/`logtide.version`, so a consumer can tell what
it holds before it trusts it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, NonNegativeInt, model_validator

SCHEMA_VERSION = 1


class _Part(BaseModel):
    """A nested ECS group: unknown keys are rejected so typos surface as errors."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", allow_inf_nan=False)


class Severity(StrEnum):
    """Normalised log levels (syslog order, lowest number most severe)."""

    emergency = "emergency"
    alert = "alert"
    critical = "critical"
    error = "error"
    warning = "warning"
    notice = "notice"
    info = "info"
    debug = "debug"
    trace = "trace"
    unknown = "unknown"


class LogFile(_Part):
    path: str


class LogInfo(_Part):
    level: str | None = None
    logger: str | None = None
    file: LogFile | None = None
    offset: NonNegativeInt | None = Field(default=None, description="Byte offset of the line in its file.")


class Host(_Part):
    name: str
    hostname: str | None = None
    ip: list[str] | None = None


class Service(_Part):
    name: str
    environment: str | None = None
    version: str | None = None


class Trace(_Part):
    id: str


class EventInfo(_Part):
    id: str = Field(description="Stable id: the same source record always gets the same id.")
    original: str | None = Field(default=None, description="The record as read, before parsing.")
    ingested: AwareDatetime | None = None
    dataset: str | None = None
    kind: Literal["event", "metric", "alert", "pipeline_error"] = "event"
    duration: int | None = Field(default=None, description="Nanoseconds, as in ECS.")


class Meta(_Part):
    """Which contract a document follows, and the processing flags it picked up on the way."""

    schema_: str = Field(alias="schema")
    version: int = SCHEMA_VERSION
    flags: list[str] = Field(
        default_factory=list,
        description=(
            "Processing flags, e.g. parse_failure, invalid_utf8, truncated, ts_missing, ts_unparsed, "
            "clock_skew."
        ),
    )
    parse_error: str | None = None


class _Event(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", allow_inf_nan=False)
    KIND: ClassVar[str]

    timestamp: AwareDatetime = Field(alias="@timestamp")
    event: EventInfo
    logtide: Meta
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _schema_matches(self) -> _Event:
        if self.logtide.schema_ != self.KIND:
            raise ValueError(f"logtide.schema is {self.logtide.schema_!r}, expected {self.KIND!r}")
        return self

    @classmethod
    def meta(cls, flags: list[str] | None = None) -> Meta:
        """The `logtide` block for a new event of this kind."""
        return Meta(schema=cls.KIND, flags=flags or [])

    @property
    def id(self) -> str:
        return self.event.id


class LogEvent(_Event):
    """One log record. ECS groups not modelled here (http, url, source, user_agent, ...) pass through."""

    model_config = ConfigDict(populate_by_name=True, extra="allow", allow_inf_nan=False)
    KIND: ClassVar[str] = "log_event"

    message: str
    log: LogInfo | None = None
    host: Host | None = None
    service: Service | None = None
    trace: Trace | None = None
    tags: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="Fields a parser extracted that have no ECS home."
    )


class MetricType(StrEnum):
    """The kind a sample's source declared (Prometheus' types). For histograms and summaries every
    sample of the family (`_bucket`/`_sum`/`_count`, quantiles) carries the family's kind."""

    gauge = "gauge"
    counter = "counter"
    histogram = "histogram"
    summary = "summary"
    untyped = "untyped"


class Metric(_Part):
    name: str = Field(min_length=1)
    value: float
    type: MetricType = MetricType.gauge
    unit: str | None = None


class MetricSample(_Event):
    """One observation of one series (host metric or Prometheus sample)."""

    KIND: ClassVar[str] = "metric_sample"

    metric: Metric
    host: Host | None = None
    service: Service | None = None


class Series(_Part):
    """Which series a value belongs to; `key` is canonical and used for partitioning and state."""

    metric: str = Field(description="Metric name, e.g. log.error_ratio, http.request.duration_ms, log.events.")
    key: str = Field(
        description="Canonical series id `metric{label=value,...}` (labels sorted); the Kafka record key."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="The dimensions the series is grouped by (e.g. service, host)."
    )


class Window(_Part):
    """An event-time window `[start, end)`."""

    start: AwareDatetime = Field(description="Window start, inclusive (event time, UTC).")
    end: AwareDatetime = Field(description="Window end, exclusive (event time, UTC).")
    size_seconds: float = Field(gt=0, description="Window length in seconds.")
    step_seconds: float = Field(
        gt=0, description="Seconds between window starts (equal to size_seconds for tumbling windows)."
    )


class Stats(_Part):
    count: NonNegativeInt
    sum: float
    min: float
    max: float
    mean: float
    p50: float
    p90: float
    p99: float


class WindowAggregate(_Event):
    """A closed event-time window of one series."""

    KIND: ClassVar[str] = "window_aggregate"

    series: Series
    window: Window
    stats: Stats


class Band(_Part):
    """The range of values the detector considered normal for this window."""

    lower: float = Field(description="Lower edge of the normal band, same unit as `value`, full precision.")
    upper: float = Field(description="Upper edge of the normal band, same unit as `value`, full precision.")


class Detector(_Part):
    """Which detector judged the value, and the score at which it reports."""

    name: str = Field(description="Detector name from the registry in `detectors/` ('default' = production default).")
    threshold: float = Field(ge=0, le=1, description="Score at or above which an anomaly is reported.")


class ContextPoint(_Part):
    """One earlier value of the same series (the same statistic, at a window end)."""

    timestamp: AwareDatetime = Field(alias="@timestamp", description="End of that earlier window (UTC).")
    value: float = Field(description="The statistic's value in that window, full precision.")


class AnomalySeverity(StrEnum):
    info = "info"
    warning = "warning"
    critical = "critical"


class AnomalyStatus(StrEnum):
    firing = "firing"
    resolved = "resolved"


class Episode(_Part):
    """One incident of one series: the same id from its first flagged window to its resolve."""

    id: str = Field(description="Stable episode id, shared by every record of the episode.")
    start: AwareDatetime = Field(description="Start of the first flagged window.")
    end: AwareDatetime | None = Field(
        default=None, description="End of the last flagged window; set on the resolved record."
    )


class Anomaly(_Event):
    """Public contract on the `anomalies` topic: other teams subscribe to it. One record per window in
    which a series' statistic scored at or above the detector's threshold; the Kafka key is
    `series.key`. Numbers are kept at full precision; only `message` rounds them.

    A flagged window is a `firing` record; when the series has stayed inside its band for the
    configured number of windows, one `resolved` record closes the episode (same `episode.id`).
    Records written before episodes existed have neither field and read as firing, episode unset.
    """

    KIND: ClassVar[str] = "anomaly"

    timestamp: AwareDatetime = Field(
        alias="@timestamp",
        description="The end of the window the value was computed over (event time, UTC): when the anomaly "
        "happened, not when it was detected or sent.",
    )
    event: EventInfo = Field(
        description="event.id: stable id of this detection (series, statistic, window): the same detection "
        "always has the same id, so a replay or a retry never makes a duplicate. event.kind is 'alert', "
        "event.dataset 'logtide.anomalies'."
    )
    logtide: Meta = Field(
        description="Which contract the record follows: logtide.schema is 'anomaly', logtide.version the "
        "schema version (a reader checks both before trusting the rest)."
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="The series' labels, plus `stat` (the statistic watched: mean, p90, count, ...) and, for "
        "anomalies found by `logtide replay --process`, `replay` (the replay id).",
    )
    message: str = Field(
        description="One human-readable sentence; numbers rounded to 4 significant digits (the fields keep "
        "full precision)."
    )
    service: Service | None = Field(
        default=None,
        description="ECS service: the service the series belongs to (its `service` label), when known.",
    )
    host: Host | None = Field(
        default=None, description="ECS host: the host the series belongs to (its `host` label), when known."
    )
    series: Series = Field(description="The series the value belongs to.")
    window: Window | None = Field(default=None, description="The event-time window the value summarises.")
    value: float = Field(description="The observed statistic (labels.stat) in the window, full precision.")
    expected: float = Field(description="What the detector expected for this window, full precision.")
    band: Band = Field(description="The normal band around `expected`; `value` lies outside or at its edge.")
    score: float = Field(
        ge=0, le=1, description="Anomaly score in [0, 1] (1 = most anomalous); reported when >= detector.threshold."
    )
    severity: AnomalySeverity = Field(
        description="'critical' when the score reaches the configured critical score, else 'warning'; a "
        "metric series' move that is small relative to its scale is 'info'."
    )
    detector: Detector = Field(description="Which detector scored the value, and its threshold.")
    context: list[ContextPoint] = Field(
        default_factory=list,
        description="The series' previous values (same statistic, earlier windows), oldest first, for a "
        "sparkline without a query.",
    )
    status: AnomalyStatus = Field(
        default=AnomalyStatus.firing,
        description="'firing' for a flagged window; 'resolved' for the record that closes the episode.",
    )
    episode: Episode | None = Field(
        default=None, description="The incident this record belongs to (absent on records older than episodes)."
    )

    @property
    def episode_id(self) -> str:
        """The episode this record belongs to (its own id for records older than episodes)."""
        return self.episode.id if self.episode is not None else self.event.id


class AlertStatus(StrEnum):
    firing = "firing"
    resolved = "resolved"


class Delivery(_Part):
    """One attempt to hand a notification to a receiver (the notification log's record of it)."""

    receiver: str
    integration: str = Field(description="webhook, slack, pagerduty or alertmanager.")
    group_key: str
    attempt: int = Field(ge=0)
    outcome: Literal["sent", "failed", "retrying", "dead_letter", "suppressed"]
    reason: str | None = Field(default=None, description="HTTP status, error text or suppression reason.")
    content_hash: str | None = None


class AlertNotification(_Event):
    """A notification about one alert group, Alertmanager-like; `delivery` says what became of it."""

    KIND: ClassVar[str] = "alert"

    status: AlertStatus
    severity: AnomalySeverity
    fingerprint: str = Field(description="Stable key of the alert group.")
    summary: str
    description: str = ""
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    annotations: dict[str, str] = Field(default_factory=dict)
    anomaly_ids: list[str] = Field(default_factory=list)
    delivery: Delivery | None = None


class ErrorInfo(_Part):
    type: str = Field(description="Machine-readable reason, e.g. invalid_json, validation, too_large.")
    message: str
    field: str | None = Field(default=None, description="Dotted path of the offending field, if any.")


class DeadLetterSource(_Part):
    stage: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    expected_schema: str | None = None


class DeadLetterInfo(_Part):
    original_base64: str = Field(description="The exact bytes received (possibly capped), base64.")
    original_size: NonNegativeInt
    truncated: bool = False


class DeadLetter(_Event):
    """What could not be decoded or validated, kept with the reason and the original bytes."""

    KIND: ClassVar[str] = "dead_letter"

    error: ErrorInfo
    source: DeadLetterSource
    dead_letter: DeadLetterInfo


MODELS: dict[str, type[_Event]] = {
    m.KIND: m for m in (LogEvent, MetricSample, WindowAggregate, Anomaly, AlertNotification, DeadLetter)
}
