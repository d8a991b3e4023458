"""ClickHouse tables for logtide's topics.

ReplacingMergeTree keyed on the stable event id makes replays and retries idempotent: a duplicate
delivery collapses into one row at merge time, and `FINAL` (or `argMax`) reads it once already.
The same DDL runs on a ClickHouse server (clickhouse-connect) and in the embedded engine (chdb).
No TTL by default: a TTL would silently drop replayed history older than it. `ttl_days` (from
`sinks.clickhouse.ttl_days` in the config) sets one per table, on creation and, for a table that
exists, with `ALTER TABLE ... MODIFY TTL` (idempotent). Ordering keys start with what the
dashboards filter on: service (logs) or metric/series, then time. The dead-letter table leaves its time
out of the key: a dead letter is stamped when a stage refused the record, so the same refusal made again
(a redelivery, a rerun of `logtide run`) carries the same id and a later time, and must still collapse.
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
    message String,
    status LowCardinality(String) DEFAULT 'firing',
    episode_id String DEFAULT ''
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
ORDER BY (stage, error_type, id)
""",
}


# The time column a table's TTL counts from.
TTL_COLUMN = {"logs": "ts", "metrics_agg": "window_end", "anomalies": "ts", "deadletter": "ts"}


def ttl_clause(table: str, days: int) -> str:
    return f"TTL toDateTime({TTL_COLUMN[table]}) + INTERVAL {int(days)} DAY"


def ddl(database: str = DATABASE, ttl_days: dict[str, int] | None = None) -> list[str]:
    """Statements that create the database and every table (with the TTLs asked for); safe to run again."""
    ttl_days = ttl_days or {}
    unknown = set(ttl_days) - set(TABLES)
    if unknown:
        raise ValueError(f"ttl_days names unknown tables: {sorted(unknown)}")
    stmts = [f"CREATE DATABASE IF NOT EXISTS {database}"]
    for table, text in TABLES.items():
        create = text.format(db=database).strip()
        if table in ttl_days:
            create += "\n" + ttl_clause(table, ttl_days[table])
            stmts += [create, f"ALTER TABLE {database}.{table} MODIFY {ttl_clause(table, ttl_days[table])}"]
        else:
            stmts.append(create)
        stmts += [f"ALTER TABLE {database}.{table} {change}" for change in ADDED_COLUMNS.get(table, ())]
    return stmts


# Columns added after a table's first release: tables made by an older logtide gain them in place.
ADDED_COLUMNS = {
    "anomalies": (
        "ADD COLUMN IF NOT EXISTS status LowCardinality(String) DEFAULT 'firing'",
        "ADD COLUMN IF NOT EXISTS episode_id String DEFAULT ''",
    ),
}
