"""One valid record of every contract, shared by unit and integration tests."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from logtide.schemas import (
    AlertNotification,
    Anomaly,
    DeadLetter,
    LogEvent,
    MetricSample,
    WindowAggregate,
    stable_id,
)

T0 = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)
SERIES = {"metric": "http.requests", "key": "svc=web|host=a", "labels": {"service": "web", "host": "a"}}
WINDOW = {
    "start": "2026-11-26T11:59:00Z",
    "end": "2026-11-26T12:00:00Z",
    "size_seconds": 60,
    "step_seconds": 10,
}


def samples() -> dict[type, dict]:
    return {
        LogEvent: {
            "@timestamp": T0.isoformat(),
            "message": '127.0.0.1 - - "GET / HTTP/1.1" 200 612',
            "log": {"level": "info", "file": {"path": "/var/log/nginx/access.log"}, "offset": 4096},
            "host": {"name": "web-1"},
            "service": {"name": "nginx"},
            "trace": {"id": "4bf92f3577b34da6a3ce929d0e0e4736"},
            "event": {"id": stable_id("web-1", "fp", 4096), "original": "raw", "ingested": T0.isoformat()},
            "logtide": {"schema": "log_event", "flags": ["ts_unparsed"]},
            "labels": {"env": "prod"},
            "http": {"response": {"status_code": 200}},
            "attributes": {"upstream": {"ms": 12.5}},
        },
        MetricSample: {
            "@timestamp": T0.isoformat(),
            "metric": {"name": "system_cpu_utilization_ratio", "value": 0.42, "type": "gauge", "unit": "ratio"},
            "host": {"name": "web-1"},
            "event": {"id": "m1", "kind": "metric"},
            "logtide": {"schema": "metric_sample"},
            "labels": {"cpu": "total"},
        },
        WindowAggregate: {
            "@timestamp": "2026-11-26T12:00:00Z",
            "series": SERIES,
            "window": WINDOW,
            "stats": {"count": 3, "sum": 6, "min": 1, "max": 3, "mean": 2, "p50": 2, "p90": 3, "p99": 3},
            "event": {"id": "w1", "kind": "metric"},
            "logtide": {"schema": "window_aggregate"},
        },
        Anomaly: {
            "@timestamp": "2026-11-26T12:00:00Z",
            "message": "error rate 0.4 above expected 0.01",
            "series": SERIES,
            "window": WINDOW,
            "value": 0.4,
            "expected": 0.01,
            "band": {"lower": 0.0, "upper": 0.05},
            "score": 0.999,
            "severity": "critical",
            "detector": {"name": "ensemble", "threshold": 0.99},
            "context": [{"@timestamp": "2026-11-26T11:59:00Z", "value": 0.01}],
            "event": {"id": "a1", "kind": "alert"},
            "logtide": {"schema": "anomaly"},
        },
        AlertNotification: {
            "@timestamp": "2026-11-26T12:00:00Z",
            "status": "firing",
            "severity": "warning",
            "fingerprint": "f1",
            "summary": "web error rate",
            "starts_at": "2026-11-26T12:00:00Z",
            "anomaly_ids": ["a1"],
            "event": {"id": "n1", "kind": "alert"},
            "logtide": {"schema": "alert"},
        },
        DeadLetter: {
            "@timestamp": "2026-11-26T12:00:00Z",
            "error": {"type": "invalid_json", "message": "unexpected character"},
            "source": {"stage": "validate", "topic": "logtide.logs.raw", "partition": 0, "offset": 7},
            "dead_letter": {"original_base64": base64.b64encode(b"{oops").decode(), "original_size": 5},
            "event": {"id": "d1", "original": "{oops", "kind": "pipeline_error"},
            "logtide": {"schema": "dead_letter"},
        },
    }
