"""The `shipper` configuration section: what to read, how to parse it and where it goes.

Validated at start like every other section (`extra="forbid"`, so a typo is an error, not a silent
default). Defaults follow Filebeat/Vector where users already have expectations.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from logtide.shippers.relabel import RelabelRule
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _check_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
    return value


class MultilineConfig(_Section):
    """How lines group into one event (stack traces, tracebacks, indented continuations).

    `start`: a line matching `pattern` begins a new event; other lines continue the current one.
    `continuation`: a line matching `pattern` continues the previous event; others begin one.
    `negate` inverts the match, as in Filebeat.
    """

    mode: Literal["start", "continuation"] = "start"
    pattern: str
    negate: bool = False
    flush_timeout_s: PositiveFloat = 2.0
    max_lines: PositiveInt = 500
    max_bytes: int = Field(default=256 << 10, ge=1024, le=8 << 20)

    _re = field_validator("pattern")(_check_regex)


class ParserConfig(_Section):
    """How one line becomes fields. `regex` needs `pattern` with named groups."""

    type: Literal["plain", "json", "logfmt", "access_log", "syslog", "regex"] = "plain"
    pattern: str | None = None
    timestamp_field: str | None = Field(
        default=None, description="Field holding the event time (default: the parser's usual one)."
    )
    timestamp_formats: list[str] = Field(
        default_factory=list,
        description="strptime formats or iso8601, rfc3164, clf, apache_error, unix, unix_ms, auto; tried in "
        "order, nothing else (list auto last for a lenient guess). Default per parser: see shippers/README.md.",
    )
    timezone: str = Field(default="UTC", description="Zone of timestamps that carry none (IANA name).")
    year: int | Literal["now", "file_mtime"] = Field(
        default="now",
        description="Year of timestamps that carry none (rfc3164, formats without %Y): the current time's, "
        "the file's modification time's, or this year. A date over a day after the reference is last year's.",
    )
    level_field: str | None = None
    message_field: str | None = None
    host_field: str | None = Field(
        default=None, description="Parsed field that names the host the line is about (sets host.name)."
    )
    service_field: str | None = Field(
        default=None, description="Parsed field that names the service (sets service.name)."
    )

    _re = field_validator("pattern")(_check_regex)

    @field_validator("timestamp_formats")
    @classmethod
    def _formats(cls, value: list[str]) -> list[str]:
        from logtide.shippers.parsers.timestamps import NAMED, is_known_format

        for fmt in value:
            if not is_known_format(fmt):
                raise ValueError(f"unknown timestamp format {fmt!r}: a strptime format (with %) or one of "
                                 f"{', '.join(sorted(NAMED))}")  # fmt: skip
        return value

    @model_validator(mode="after")
    def _regex_needs_pattern(self) -> ParserConfig:
        if self.type == "regex":
            if not self.pattern:
                raise ValueError("parser type regex needs a pattern")
            if not re.compile(self.pattern).groupindex:
                raise ValueError("the regex pattern needs named groups, e.g. (?P<message>.*)")
        return self

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from dateutil import tz

        if tz.gettz(value) is None:
            raise ValueError(f"unknown time zone {value!r}")
        return value


class ServiceConfig(_Section):
    name: str
    environment: str | None = None
    version: str | None = None


class LogInputConfig(_Section):
    """One group of files that share a parser."""

    id: str | None = Field(
        default=None, description="Name used in metrics and event.dataset (default: first path)."
    )
    paths: list[str] = Field(min_length=1)
    exclude: list[str] = Field(default_factory=list, description="Glob patterns (full path or file name).")
    parser: ParserConfig = Field(default_factory=ParserConfig)
    multiline: MultilineConfig | None = None
    start_position: Literal["beginning", "end"] = Field(
        default="end",
        description="Where to start in files found at startup with no checkpoint; files appearing later are "
        "always read from the beginning.",
    )
    ignore_older_s: PositiveFloat | None = Field(
        default=None, description="Skip files not modified for this long."
    )
    include_compressed: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    fields: dict[str, Any] = Field(default_factory=dict, description="Static fields, added to attributes.")
    service: ServiceConfig | None = None
    topic: str | None = None

    @property
    def name(self) -> str:
        return self.id or self.paths[0]


class HostMetricsConfig(_Section):
    enabled: bool = False
    interval_s: PositiveFloat = 10.0
    labels: dict[str, str] = Field(default_factory=dict)


class BasicAuthConfig(_Section):
    username: str
    password: str | None = Field(default=None, description="Use ${VAR} or ${file:/path}, never the text.")


class TLSConfig(_Section):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False


class PrometheusScrapeConfig(_Section):
    """One scrape target, with Prometheus' names and defaults where it has them."""

    url: str
    interval_s: PositiveFloat = 15.0
    timeout_s: PositiveFloat | None = Field(default=None, description="Default: 5 s, or the interval if shorter.")
    labels: dict[str, str] = Field(default_factory=dict, description="Target labels added to every sample.")
    job: str | None = Field(default=None, description="The `job` label (default: prometheus).")
    honor_labels: bool = Field(
        default=False, description="Scraped labels win over target labels (else kept as exported_<name>)."
    )
    honor_timestamps: bool = True
    names: list[str] = Field(default_factory=list, description="Metric name globs to keep (empty: all).")
    metric_relabel_configs: list[RelabelRule] = Field(default_factory=list)
    basic_auth: BasicAuthConfig | None = None
    bearer_token: str | None = None
    bearer_token_file: Path | None = None
    tls: TLSConfig | None = None

    @model_validator(mode="after")
    def _timeout(self) -> PrometheusScrapeConfig:
        if self.timeout_s is None:
            self.timeout_s = min(5.0, self.interval_s)
        if self.timeout_s > self.interval_s:
            raise ValueError("timeout_s cannot exceed interval_s")
        if self.bearer_token and self.bearer_token_file:
            raise ValueError("give bearer_token or bearer_token_file, not both")
        return self


class ShipperConfig(_Section):
    """The whole `shipper` section."""

    inputs: list[LogInputConfig] = Field(default_factory=list)
    host_metrics: HostMetricsConfig = Field(default_factory=HostMetricsConfig)
    prometheus_scrapes: list[PrometheusScrapeConfig] = Field(default_factory=list)
    state_dir: Path = Path("/var/lib/logtide/shipper")
    topic: str | None = Field(default=None, description="Log topic (default: <topics.prefix>logs.raw).")
    metrics_topic: str | None = Field(
        default=None, description="Metric topic (default: <prefix>metrics.raw)."
    )
    host_name: str | None = Field(default=None, description="Reported host name (default: the machine's).")
    max_line_bytes: int = Field(default=256 << 10, ge=64, le=16 << 20)
    long_lines: Literal["truncate", "split"] = "truncate"
    max_open_files: PositiveInt = 1024
    read_chunk_bytes: int = Field(default=256 << 10, ge=4096, le=16 << 20)
    max_inflight_bytes: int = Field(
        default=2 << 20,
        ge=256 << 10,
        description="Encoded bytes awaiting acknowledgement, all files together. Small is fast: a few read "
        "chunks keep one partition's pipeline full, and memory stays low.",
    )
    fingerprint_bytes: int = Field(default=1024, ge=16, le=1 << 20)
    rescan_interval_s: PositiveFloat = 10.0
    close_inactive_s: PositiveFloat = 300.0
    close_removed_after_s: float = Field(
        default=5.0,
        ge=0,
        description="After a file is renamed away or deleted, keep reading this long once idle.",
    )
    checkpoint_interval_s: PositiveFloat = 0.5
    shutdown_timeout_s: PositiveFloat = 15.0
    retry_initial_s: PositiveFloat = 0.2
    retry_max_s: PositiveFloat = 30.0
    metrics_listen: str | None = Field(default=None, description="host:port of the shipper's own /metrics.")
    watch_debounce_ms: PositiveInt = 200

    @field_validator("metrics_listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            _host, sep, port = value.rpartition(":")
            if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ValueError("expected host:port")
        return value
