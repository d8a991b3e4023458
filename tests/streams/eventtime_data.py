"""Log events for the event-time tests: several sources (host + file) at different densities, with an
incident, as the shipper would put them on `logs.raw`."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import orjson

Record = tuple[bytes, bytes]


def log_event(ts: datetime, service: str, host: str, path: str, *, i: int, status: int) -> Record:
    doc = {
        "@timestamp": ts.isoformat(),
        "event": {"id": f"{host}-{path}-{i}"},
        "logtide": {"schema": "log_event"},
        "message": f"GET /item/{i} {status}",
        "log": {"level": "error" if status >= 500 else "info", "file": {"path": path}},
        "service": {"name": service},
        "host": {"name": host},
        "attributes": {"status": status, "duration_ms": 20 + (i % 7)},
    }
    return f"{host}/{path}".encode(), orjson.dumps(doc)


def source_lines(service: str, per_s: float, start: datetime, end: datetime, *, seed: int = 1,
                 error_rate: float = 0.008, incident: tuple[datetime, datetime, float] | None = None,
                 host: str | None = None) -> list[Record]:
    """One file's lines, in order, `per_s` a second from `start` to `end`; 5xx at `error_rate`, or at
    the incident's rate inside it. Line numbers (so ids) count from `start` on the file's timeline, so
    the lines of consecutive spans of one file never share an id (an id names one record: the streams
    count a record sent again once)."""
    rnd = random.Random(seed)
    host = host or f"{service}-1"
    path = f"/var/log/{service}.log"
    out = []
    step = timedelta(seconds=1 / per_s)
    ts, i = start, round(start.timestamp() * per_s)
    while ts < end:
        rate = incident[2] if incident and incident[0] <= ts < incident[1] else error_rate
        out.append(log_event(ts, service, host, path, i=i, status=503 if rnd.random() < rate else 200))
        ts += step
        i += 1
    return out


def interleave(*sources: list[Record], chunk: int = 200) -> list[Record]:
    """Chunks of each source in turn (as a shipper reading several files at once sends them)."""
    out, pos = [], [0] * len(sources)
    while any(p < len(s) for p, s in zip(pos, sources, strict=True)):
        for k, s in enumerate(sources):
            out += s[pos[k]: pos[k] + chunk]
            pos[k] += chunk
    return out
