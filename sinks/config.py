"""The `sinks:` section: where enriched events, aggregates, anomalies and dead letters are written."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, SecretStr


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ElasticsearchConfig(_Section):
    hosts: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:9200"], min_length=1)
    username: str | None = None
    password: SecretStr | None = None
    api_key: SecretStr | None = None
    ca_file: Path | None = None
    index_prefix: str = "logtide"
    request_timeout_s: float = Field(default=30.0, gt=0)
    # Bulk requests: at most this many bytes each, this many in flight.
    max_batch_bytes: PositiveInt = 5 * 1024 * 1024
    max_concurrency: PositiveInt = 2
    # "auto" = auto_expand_replicas 0-1 (a single node stays green); a number fixes it.
    replicas: Literal["auto"] | int = Field(default="auto")
    # Days an index (or data stream backing index) is kept by the ILM policy, when the cluster has ILM.
    retention_days: PositiveInt = 30


class ClickHouseConfig(_Section):
    mode: Literal["embedded", "server"] = "embedded"
    path: Path = Path("data/clickhouse")
    host: str = "127.0.0.1"
    port: PositiveInt = 8123
    username: str = "default"
    password: SecretStr | None = None
    database: str = "logtide"
    secure: bool = False
    # Days to keep per table (logs, metrics_agg, anomalies, deadletter); off by default: replays
    # of older history would otherwise be dropped silently.
    ttl_days: dict[Literal["logs", "metrics_agg", "anomalies", "deadletter"], PositiveInt] = Field(
        default_factory=dict
    )


class SinksConfig(_Section):
    group_id: str = "logtide-sinks"
    sources: list[Literal["logs.enriched", "metrics.agg", "anomalies", "deadletter"]] = Field(
        default_factory=lambda: ["logs.enriched", "metrics.agg", "anomalies", "deadletter"], min_length=1
    )
    batch_max_records: PositiveInt = 2000
    batch_wait_ms: PositiveInt = 500
    # A target that is down is retried with backoff up to this wait between tries; every wait is
    # logged and counted. `retry_give_up_after_s` (off: wait for ever, Kafka buffers) makes the
    # sink exit with an error instead, without committing.
    retry_max_backoff_s: float = Field(default=30.0, gt=0)
    retry_give_up_after_s: float | None = Field(default=None, gt=0)
    # host:port of the sink's own /metrics (written, rejected, retries, seconds waiting per target).
    metrics_listen: str | None = None
    elasticsearch: ElasticsearchConfig | None = Field(default_factory=ElasticsearchConfig)
    clickhouse: ClickHouseConfig | None = None
