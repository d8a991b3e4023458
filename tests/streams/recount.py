"""Input, reference and recount for the streams broker tests (kill -9, SIGSTOP, scaling, restarts).

`make_logs` is one JSON log per service in time order; `expected` folds the same input through the
pure operators point by point (the embedded runner's path); `brute_counts` counts events per service,
level and window straight from the input. `collect_windows` reads `metrics.agg` until every expected
window is there, and `assert_windows_exact` checks what a broker run emitted against both: copies of one
window identical, every window equal to the reference, and the `log.events` counts equal to the recount.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from logtide.streams.config import StreamsConfig
from logtide.streams.pipeline import Stateful, Stateless

from tests.streams.kafka_util import read_until

WINDOW_S = 10
SERVICES = ("api", "web")


def streams_cfg(app_id: str) -> dict[str, Any]:
    return {
        "app_id": app_id,
        "partitions": 4,
        "window": {
            "size_seconds": WINDOW_S,
            "lateness_seconds": 5,
            "group_by": ["service"],
            "idle_timeout_seconds": None,
        },
        "detect": {
            "detector": "test_z",
            "params": {"warmup": 20},
            "threshold": 0.5,
            "rules": [{"metric": "log.error_ratio", "stat": "mean"}],
        },
        "metrics_port": 0,
        "web_port": 0,
        "session_timeout_seconds": 10,
        "commit_interval_seconds": 0.5,
        "batch_size": 500,
    }


def t_base() -> datetime:
    now = datetime.now(UTC) - timedelta(hours=2)
    return now.replace(second=0, microsecond=0)


def log_record(ts: datetime, service: str, i: int, error: bool) -> tuple[bytes, bytes]:
    status = 500 if error else 200
    doc = {
        "@timestamp": ts.isoformat(),
        "event": {"id": f"{service}-{i}"},
        "logtide": {"schema": "log_event"},
        "message": f"GET /item/{i} {status}",
        "log": {"level": "error" if error else "info"},
        "service": {"name": service},
        "host": {"name": f"{service}-1"},
        "attributes": {"status": status, "duration_ms": 20 + (i % 7)},
    }
    return service.encode(), orjson.dumps(doc)


def make_logs(t0: datetime, start_s: int, end_s: int, incident: tuple[int, int] | None, seed: int = 5):
    """Per service, 5 events/s from t0+start_s to t0+end_s; 3 % errors, 70 % in the incident (api only)."""
    rnd = random.Random(seed + start_s)
    out = []
    for k in range(start_s * 5, end_s * 5):
        ts = t0 + timedelta(milliseconds=200 * k)
        for svc in SERVICES:
            burst = incident is not None and svc == "api" and incident[0] <= k / 5 < incident[1]
            out.append(log_record(ts, svc, k, rnd.random() < (0.7 if burst else 0.03)))
    return out


def closers(t0: datetime, at_s: int) -> list[tuple[bytes, bytes]]:
    return [log_record(t0 + timedelta(seconds=at_s), svc, 10_000_000 + at_s, False) for svc in SERVICES]


def expected(cfg: StreamsConfig, records: list[tuple[bytes, bytes]]) -> tuple[dict, list]:
    """Aggregates (by id) and anomalies the operators give on the same input, point by point (the
    embedded runner's path: each record's source watermark handed over after its points)."""
    sl, sf = Stateless(cfg), Stateful(cfg)
    aggs, anomalies = {}, []
    now = datetime.now(UTC)
    start_ms = int(now.timestamp() * 1000)
    for i, (_, v) in enumerate([*records, (None, None)]):
        now_ms = start_ms + i  # a record a millisecond of wall clock; a tick a minute after the last
        if v is None:
            a, n = sf.advance(now_ms + 60_000)
        else:
            r = sl.log(v, now)
            for p in r.points:
                sf.add(p, src=r.src, now_ms=now_ms)
            for src, wm in sl.take_marks():
                sf.mark(src, wm, now_ms)
            a, n = sf.advance(now_ms)
        aggs.update(
            {
                x.event.id: orjson.loads(
                    orjson.dumps(x.model_dump(mode="json", by_alias=True, exclude_none=True))
                )
                for x in a
            }
        )
        anomalies += n
    return aggs, anomalies


def brute_counts(
    records: list[tuple[bytes, bytes]], lateness_s: float
) -> dict[tuple[str, str, datetime], int]:
    """Events per (service, level, window start), for the windows their source (one host per service,
    in order) closed: the source's newest event time passed the window's end plus the lateness."""
    out: dict[tuple[str, str, datetime], int] = {}
    newest: dict[str, datetime] = {}
    for _, v in records:
        d = orjson.loads(v)
        ts = datetime.fromisoformat(d["@timestamp"])
        start = ts - timedelta(seconds=ts.timestamp() % WINDOW_S)
        series = (d["service"]["name"], d["log"]["level"])
        newest[series[0]] = max(newest.get(series[0], ts), ts)
        out[(*series, start)] = out.get((*series, start), 0) + 1
    return {
        k: n
        for k, n in out.items()
        if k[2] + timedelta(seconds=WINDOW_S + lateness_s) <= newest[k[0]]
    }


def same_stats(got: dict, want: dict) -> bool:
    g, w = got["stats"], want["stats"]
    return (
        all(g[k] == w[k] for k in ("count", "min", "max", "p50", "p90", "p99"))
        and abs(g["sum"] - w["sum"]) < 1e-6
    )


async def collect_windows(
    bootstrap: str, topic: str, want: dict[str, dict], *, timeout: float, check: Callable[[], None],
    context: Callable[[], str],
) -> list[dict]:
    """Every record of `metrics.agg` until each expected window id is among them; fails with the
    missing windows (and `context()`) when some never come."""
    seen: list[list[dict]] = []

    def done(rs: list[dict]) -> bool:
        if not seen:
            seen.append(rs)  # read_until's own list: what was read so far, kept if it times out
        return {x["event"]["id"] for x in rs} >= set(want)

    try:
        return await read_until(bootstrap, topic, done, timeout, check)
    except TimeoutError:
        got_ids = {x["event"]["id"] for x in (seen[0] if seen else [])}
        missing = [want[k] for k in want if k not in got_ids]
        pytest.fail(f"{len(missing)} of {len(want)} windows never emitted, e.g. "
                    + "; ".join(f"{x['series']['key']} {x['window']['start']}" for x in missing[:6])
                    + f"; {context()}")


def assert_windows_exact(
    got_all: list[dict], want: dict[str, dict], brute: dict[tuple[str, str, datetime], int], context: str
) -> None:
    """Copies of one window (re-emitted after a kill or a rebalance) are identical, every window equals
    the reference, and every closed `log.events` window equals the brute-force recount of the input."""
    by_id: dict[str, list[dict]] = {}
    for x in got_all:
        by_id.setdefault(x["event"]["id"], []).append(x)
    differing = [k for k, xs in by_id.items() if any(not same_stats(x, xs[0]) for x in xs)]
    assert not differing, (
        f"{len(differing)} windows emitted with different contents, e.g. "
        + "; ".join(f"{by_id[k][0]['series']['key']} {by_id[k][0]['window']['start']}: counts "
                    f"{[x['stats']['count'] for x in by_id[k]]}" for k in differing[:4])
        + f"; {context}"
    )
    got = {k: xs[0] for k, xs in by_id.items()}
    bad = [k for k in want if not same_stats(got[k], want[k])]
    assert not bad, (
        f"{len(bad)} of {len(want)} windows differ from the reference; "
        + "; ".join(f"{want[k]['series']['key']} {want[k]['window']['start']}: {got[k]['stats']['count']} "
                    f"!= {want[k]['stats']['count']}" for k in bad[:6])
        + f"; {context}"
    )
    counted: dict[tuple[str, str, datetime], Any] = {}
    for x in got.values():
        if x["series"]["metric"] == "log.events":
            start_ts = datetime.fromisoformat(x["window"]["start"])
            counted[(x["labels"]["service"], x["labels"]["level"], start_ts)] = x["stats"]["count"]
    over = {k: (counted.get(k), n) for k, n in brute.items() if counted.get(k, 0) != n}
    assert not over, (f"{len(over)} windows differ from the brute-force recount (got, want), e.g. "
                      f"{list(over.items())[:5]}; {context}")
