"""Event documents (as on the wire) to ClickHouse rows: pure, so it is tested without a server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _num(value: Any) -> float:
    """A finite float or ValueError: ClickHouse would refuse the whole insert for one bad value."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r:.40}")
    return float(value)


def _ts(value: str | None) -> str:
    # ClickHouse's JSONEachRow reads ISO 8601 with best-effort parsing enabled by the writers.
    return value or "1970-01-01T00:00:00Z"


def log_row(doc: dict[str, Any]) -> dict[str, Any]:
    log = doc.get("log") or {}
    event = doc.get("event") or {}
    status = ((doc.get("http") or {}).get("response") or {}).get("status_code") or 0
    return {
        "id": event["id"],
        "ts": _ts(doc.get("@timestamp")),
        "ingested": _ts(event.get("ingested") or doc.get("@timestamp")),
        "host": (doc.get("host") or {}).get("name", ""),
        "service": (doc.get("service") or {}).get("name", ""),
        "level": log.get("level") or "",
        "file": (log.get("file") or {}).get("path", ""),
        "offset": log.get("offset") or 0,
        "message": doc.get("message", ""),
        "trace_id": (doc.get("trace") or {}).get("id", ""),
        "http_status": int(status) if isinstance(status, int | float | str) and str(status).isdigit() else 0,
        "flags": (doc.get("logtide") or {}).get("flags", []),
        "labels": doc.get("labels") or {},
    }


def aggregate_row(doc: dict[str, Any]) -> dict[str, Any]:
    series, window, stats = doc["series"], doc["window"], doc["stats"]
    return {
        "id": doc["event"]["id"],
        "metric": series["metric"],
        "series": series["key"],
        "labels": series.get("labels") or {},
        "window_start": _ts(window["start"]),
        "window_end": _ts(window["end"]),
        "size_seconds": _num(window["size_seconds"]),
        "count": int(_num(stats["count"])),
        **{k: _num(stats[k]) for k in ("sum", "min", "max", "mean", "p50", "p90", "p99")},
    }


def anomaly_row(doc: dict[str, Any]) -> dict[str, Any]:
    series = doc["series"]
    return {
        "id": doc["event"]["id"],
        "ts": _ts(doc["@timestamp"]),
        "metric": series["metric"],
        "series": series["key"],
        "labels": series.get("labels") or {},
        "value": _num(doc["value"]),
        "expected": _num(doc["expected"]),
        "lower": _num(doc["band"]["lower"]),
        "upper": _num(doc["band"]["upper"]),
        "score": _num(doc["score"]),
        "severity": doc["severity"],
        "detector": doc["detector"]["name"],
        "message": doc.get("message", ""),
        "status": doc.get("status") or "firing",  # records from before episodes carry none
        "episode_id": (doc.get("episode") or {}).get("id") or "",
    }


def deadletter_row(doc: dict[str, Any]) -> dict[str, Any]:
    err, src = doc["error"], doc["source"]
    return {
        "id": doc["event"]["id"],
        "ts": _ts(doc["@timestamp"]),
        "stage": src["stage"],
        "topic": src.get("topic") or "",
        "error_type": err["type"],
        "error_message": err["message"],
        "field": err.get("field") or "",
        "original": (doc.get("event") or {}).get("original") or "",
        "original_size": doc["dead_letter"]["original_size"],
    }


ROW_BUILDERS: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "log_event": ("logs", log_row),
    "window_aggregate": ("metrics_agg", aggregate_row),
    "anomaly": ("anomalies", anomaly_row),
    "dead_letter": ("deadletter", deadletter_row),
}


def to_row(doc: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(table, row) for a document of a kind ClickHouse stores, else None."""
    builder = ROW_BUILDERS.get((doc.get("logtide") or {}).get("schema", ""))
    if builder is None:
        return None
    table, fn = builder
    return table, fn(doc)
