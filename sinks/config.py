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


class ClickHouseConfig(_Section):
    mode: Literal["embedded", "server"] = "embedded"
    path: Path = Path("data/clickhouse")
    host: str = "127.0.0.1"
    port: PositiveInt = 8123
    username: str = "default"
    password: SecretStr | None = None
    database: str = "logtide"
    secure: bool = False


class SinksConfig(_Section):
    group_id: str = "logtide-sinks"
    sources: list[Literal["logs.enriched", "metrics.agg", "anomalies", "deadletter"]] = Field(
        default_factory=lambda: ["logs.enriched", "metrics.agg", "anomalies", "deadletter"], min_length=1
    )
    batch_max_records: PositiveInt = 2000
    batch_wait_ms: PositiveInt = 500
    elasticsearch: ElasticsearchConfig | None = Field(default_factory=ElasticsearchConfig)
    clickhouse: ClickHouseConfig | None = None
