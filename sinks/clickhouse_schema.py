"""ClickHouse tables for logtide's topics.

ReplacingMergeTree keyed on the stable event id makes replays and retries idempotent: a duplicate
delivery collapses into one row at merge time, and `FINAL` (or `argMax`) reads it once already.
The same DDL runs on a ClickHouse server (clickhouse-connect) and in the embedded engine (chdb).
No TTL is set: a TTL would silently drop replayed history older than it; add one per deployment
with `ALTER TABLE ... MODIFY TTL` when retention matters more than replays.
"""

from __future__ import annotations

DATABASE = "logtide"

TABLES: dict[str, str] = {
    "logs": """
CREATE TABLE IF NOT EXISTS {db}.logs (
    id String,
    ts DateTime64(6, 'UTC'),
    ingested DateTime64(6, 'UTC'),
    host LowCardinality(String),
    service LowCardinality(String),
    level LowCardinality(String),
    file String,
    offset UInt64,
    message String,
    trace_id String,
    http_status UInt16,
    flags Array(LowCardinality(String)),
    labels Map(LowCardinality(String), String)
) ENGINE = ReplacingMergeTree(ingested)
PARTITION BY toDate(ts)
ORDER BY (service, ts, id)
""",
    "metrics_agg": """
CREATE TABLE IF NOT EXISTS {db}.metrics_agg (
    id String,
    metric LowCardinality(String),
    series String,
    labels Map(LowCardinality(String), String),
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    size_seconds Float64,
    count UInt64,
    sum Float64,
    min Float64,
    max Float64,
    mean Float64,
    p50 Float64,
    p90 Float64,
    p99 Float64
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(window_end)
ORDER BY (metric, series, window_end, id)
""",
    "anomalies": """
CREATE TABLE IF NOT EXISTS {db}.anomalies (
    id String,
    ts DateTime64(3, 'UTC'),
    metric LowCardinality(String),
    series String,
    labels Map(LowCardinality(String), String),
    value Float64,
    expected Float64,
    lower Float64,
    upper Float64,
    score Float64,
    severity LowCardinality(String),
    detector LowCardinality(String),
    message String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (metric, series, ts, id)
""",
    "deadletter": """
CREATE TABLE IF NOT EXISTS {db}.deadletter (
    id String,
    ts DateTime64(3, 'UTC'),
    stage LowCardinality(String),
    topic String,
    error_type LowCardinality(String),
    error_message String,
    field String,
    original String,
    original_size UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (stage, error_type, ts, id)
""",
}


def ddl(database: str = DATABASE) -> list[str]:
    """Statements that create the database and every table; safe to run again."""
    return [f"CREATE DATABASE IF NOT EXISTS {database}"] + [
        t.format(db=database).strip() for t in TABLES.values()
    ]
