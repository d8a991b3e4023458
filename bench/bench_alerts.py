"""Alert core throughput next to a real Alertmanager's ingestion rate, in the same run, ratio first.

logtide: anomaly records (JSON bytes, as read from the topic) decoded and run through the pure core
(routing over a tree of 100 routes, grouping and its timers, inhibition, 1,000 active silences, the
notification log), time advancing with the records (event time). No HTTP: notifications are decided,
not delivered (delivery is rate-limited per receiver by design).

Alertmanager: Debian's prometheus-alertmanager started on loopback with the same 100 routes and 1,000
silences, the same alerts posted to POST /api/v2/alerts in batches of --batch (as Prometheus does),
from --clients concurrent clients. That is its ingestion rate (HTTP + JSON + its dispatcher), the
work it does per alert that our core does in-process, so the ratio compares the two paths an anomaly
takes to a decision, not identical work.

Both wall-clock and CPU figures are printed: the machine is shared with other engineers, so wall
time depends on their load; CPU time (this process for logtide, Alertmanager's process from /proc,
all its threads) depends on it less. Alertmanager's CPU excludes our HTTP client's.

    .venv/bin/python bench/bench_alerts.py --anomalies 50000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from logtide.schemas import (
    Anomaly,
    AnomalySeverity,
    AnomalyStatus,
    Band,
    ContextPoint,
    DeadLetter,
    Detector,
    Episode,
    EventInfo,
    Host,
    Series,
    Service,
    Window,
    decode_strict,
    encode,
)
from logtide.sinks.alerts.config import AlertsConfig
from logtide.sinks.alerts.dispatch import Dispatcher
from logtide.sinks.alerts.facts import decode_facts, facts_from_model
from logtide.sinks.alerts.model import alert_labels, iso
from logtide.sinks.alerts.silence import Silence, Silences

from tests.alerts.alertmanager import Alertmanager

T0 = datetime(2026, 11, 1, tzinfo=UTC)
METRICS = ["log.error_ratio", "http.request.duration_ms", "log.events", "system.cpu.pct", "http.5xx"]


def records(n: int, services: int, seed: int = 1) -> list[bytes]:
    """n anomaly records: episodes that fire for a few windows and then resolve, time moving forward.
    Shaped as `logtide streams` writes them: stamped with the end of their 60-second window (records
    arrive 1.5 s apart on average, so about 40 share a window), ten context points, ECS service and host."""
    rnd = random.Random(seed)
    out: list[bytes] = []
    open_eps: dict[tuple[int, str], tuple[str, datetime, str]] = {}
    t = T0
    while len(out) < n:
        t += timedelta(seconds=rnd.choice([0, 0, 1, 5]))
        w = t.replace(second=0)  # the window this record closes ends on the minute
        svc, metric = rnd.randrange(services), rnd.choice(METRICS)
        key = (svc, metric)
        labels = {"service": f"svc{svc}", "host": f"h{svc % 50}"}
        if key in open_eps and rnd.random() < 0.3:
            ep, start, sev = open_eps.pop(key)
            status, end = AnomalyStatus.resolved, w
        else:
            if key not in open_eps:
                open_eps[key] = (f"ep{len(out)}", w, rnd.choice(["warning", "warning", "critical"]))
            ep, start, sev = open_eps[key]
            status, end = AnomalyStatus.firing, None
        a = Anomaly(
            timestamp=w, event=EventInfo(id=f"a{len(out)}", kind="alert", dataset="logtide.anomalies"),
            logtide=Anomaly.meta(), labels={**labels, "stat": "mean"},
            message=f"{metric} of svc{svc} is above its band", service=Service(name=f"svc{svc}"),
            host=Host(name=labels["host"]),
            series=Series(metric=metric, key=f"{metric}{{service=svc{svc}}}", labels=labels),
            window=Window(start=w - timedelta(seconds=60), end=w, size_seconds=60, step_seconds=60),
            context=[ContextPoint(timestamp=w - timedelta(seconds=60 * k), value=0.1 + k / 100) for k in range(10, 0, -1)],
            value=1.0, expected=0.1, band=Band(lower=0, upper=0.2), score=0.9,
            severity=AnomalySeverity(sev), detector=Detector(name="default", threshold=0.5),
            status=status, episode=Episode(id=ep, start=start, end=end),
        )
        out.append(encode(a))
    return out


def routes(n: int) -> list[dict]:
    rs = [{"matchers": [f'service="svc{i}"', 'severity="critical"'], "receiver": "pager", "continue": True}
          for i in range(n // 2)]
    rs += [{"matchers": [f'service=~"svc{i}[0-9]*"', f'metric=~"{METRICS[i % len(METRICS)]}"'], "receiver": "chat"}
           for i in range(n - len(rs))]
    return rs


def silences(n: int, now: float) -> list[Silence]:
    """n silences; one in ten matches live alerts (service and host of one of the first services)."""
    return [Silence(f"s{i}", [f'host="h{i % 50}"', f'service="svc{i if i % 10 == 0 else 10_000 + i}"'],
                    now - 60, now + 30 * 86400, "bench", "maintenance", now) for i in range(n)]


def bench_logtide(raw: list[bytes], n_routes: int, n_sil: int) -> dict:
    cfg = AlertsConfig.model_validate({
        "route": {"receiver": "hook", "group_by": ["service"], "group_wait": "30s", "group_interval": "5m",
                  "routes": routes(n_routes)},
        "receivers": [{"name": "hook"}, {"name": "pager"}, {"name": "chat"}],
    })
    sil = Silences()
    for s in silences(n_sil, T0.timestamp()):
        sil.put(s)
    d = Dispatcher(cfg, sil)
    notes = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    for b in raw:
        a = decode_facts(b)
        assert not isinstance(a, DeadLetter)
        now = a.ts
        d.ingest(a, now)
        for n in d.advance(now):
            d.delivered(n, True, now)
            notes += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"per_s": len(raw) / wall, "cpu_per_s": len(raw) / cpu, "wall": wall, "notifications": notes,
            "suppressed": dict(d.suppressed)}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def am_config(n_routes: int) -> str:
    lines = ["route:", "  receiver: hook", "  group_by: [service]", "  group_wait: 30s", "  group_interval: 5m",
             "  routes:"]
    for r in routes(n_routes):
        lines.append("    - receiver: " + r["receiver"])
        lines.append("      matchers: [" + ", ".join("'" + m + "'" for m in r["matchers"]) + "]")
        if r.get("continue"):
            lines.append("      continue: true")
    lines += ["receivers:", "  - name: hook", "  - name: pager", "  - name: chat"]
    return "\n".join(lines) + "\n"


async def bench_alertmanager(raw: list[bytes], n_routes: int, n_sil: int, batch: int, clients: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-am-"))
    am = Alertmanager(work, "http://127.0.0.1:9/unused")
    try:
        # same routes: restart it with the bench's configuration
        am.stop()
        (work / "am.yml").write_text(am_config(n_routes))
        am = Alertmanager.__new__(Alertmanager)
        Alertmanager.__init__(am, work, "http://127.0.0.1:9/unused")
        (work / "am.yml").write_text(am_config(n_routes))
        async with httpx.AsyncClient(base_url=am.url, timeout=60) as c:
            r = await c.post("/-/reload")
            assert r.status_code == 200, r.text
            now = time.time()
            for s in silences(n_sil, now):
                m = [x.split("=", 1) for x in s.matchers]
                body = {"matchers": [{"name": k, "value": v.strip('"'), "isRegex": False, "isEqual": True} for k, v in m],
                        "startsAt": iso(now - 60), "endsAt": iso(now + 86400), "createdBy": "bench", "comment": "x"}
                r = await c.post("/api/v2/silences", json=body)
                assert r.status_code == 200, r.text
            posts = []
            for b in raw:
                a = facts_from_model(decode_strict(b, Anomaly))
                lab = alert_labels(a)
                d = {"labels": lab, "annotations": {"summary": a.message}, "startsAt": iso(now - 60)}
                if a.resolved:
                    d["endsAt"] = iso(now - 1)
                posts.append(d)
            chunks = [posts[i:i + batch] for i in range(0, len(posts), batch)]
            queue = list(reversed(chunks))

            async def client() -> None:
                while queue:
                    body = queue.pop()
                    r = await c.post("/api/v2/alerts", json=body)
                    assert r.status_code == 200, r.text

            c0 = _cpu_seconds(am.proc.pid)
            t0 = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(clients)))
            wall = time.perf_counter() - t0
            cpu = _cpu_seconds(am.proc.pid) - c0
        return {"per_s": len(posts) / wall, "wall": wall, "cpu_per_s": len(posts) / cpu if cpu > 0 else float("nan")}
    finally:
        am.stop()
        shutil.rmtree(work, ignore_errors=True)


async def bench_process(raw: list[bytes], n_routes: int, n_sil: int, bootstrap: str) -> dict:
    """The same records through a real `logtide alerts` process (Kafka in, live wall clock): the process
    is started and goes live, is paused (SIGSTOP) while the records are produced, then resumed; the
    figure is records consumed, decoded and decided per second from the resume until its
    logtide_alerts_anomalies_total reaches them all, and per second of the process's CPU."""
    import os
    import signal
    import subprocess
    import uuid

    import orjson
    import yaml
    from aiokafka import AIOKafkaProducer
    from logtide.schemas import Topics
    from logtide.sinks.alerts.kafka_state import ensure_topics

    from tests.alerts.alertmanager import free_port

    prefix, port = f"bench{uuid.uuid4().hex[:8]}.", free_port()
    work = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    cfg = {"kafka": {"bootstrap_servers": [bootstrap]}, "topics": {"prefix": prefix, "partitions": 2},
           "logging": {"level": "WARNING"},
           "alerts": {"group_id": f"bench-{prefix}", "metrics_port": port, "leader_session_timeout": "120s",
                      "replay_lookback": "1m",
                      "route": {"receiver": "hook", "group_by": ["service"], "group_wait": "30s",
                                "group_interval": "5m", "routes": routes(n_routes)},
                      "receivers": [{"name": "hook"}, {"name": "pager"}, {"name": "chat"}]}}
    (work / "alerts.yaml").write_text(yaml.safe_dump(cfg))
    t = Topics(prefix)
    await ensure_topics({"bootstrap_servers": bootstrap}, [t.anomalies, t.alerts, t.deadletter],
                        [t.alerts_nflog, t.alerts_silences])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    for s in silences(n_sil, time.time()):
        await producer.send(t.alerts_silences, orjson.dumps(s.to_plain()), key=s.id.encode())
    await producer.flush()
    proc = subprocess.Popen([sys.executable, "-m", "logtide.cli", "alerts", "--config", str(work / "alerts.yaml")],
                            stdout=subprocess.DEVNULL, stderr=open(work / "alerts.log", "wb"))  # noqa: SIM115
    try:
        async with httpx.AsyncClient(timeout=5) as c:
            async def seen() -> float:
                try:
                    text = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
                except httpx.HTTPError:
                    return -1.0
                return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                           if line.startswith("logtide_alerts_anomalies_total"))

            while await seen() < 0:
                assert proc.poll() is None, (work / "alerts.log").read_text()[-2000:]
                await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # live
            os.kill(proc.pid, signal.SIGSTOP)
            for i, b in enumerate(raw):
                await producer.send(t.anomalies, b, key=str(i % 97).encode())
            await producer.flush()
            c0 = _cpu_seconds(proc.pid)
            t0 = time.perf_counter()
            os.kill(proc.pid, signal.SIGCONT)
            while (n := await seen()) < len(raw):
                assert proc.poll() is None, (work / "alerts.log").read_text()[-2000:]
                await asyncio.sleep(0.05)
            wall, cpu = time.perf_counter() - t0, _cpu_seconds(proc.pid) - c0
        return {"per_s": n / wall, "cpu_per_s": n / cpu, "wall": wall}
    finally:
        await producer.stop()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--anomalies", type=int, default=50_000)
    ap.add_argument("--services", type=int, default=500)
    ap.add_argument("--routes", type=int, default=100)
    ap.add_argument("--silences", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100, help="Alerts per POST to Alertmanager.")
    ap.add_argument("--clients", type=int, default=4, help="Concurrent POSTing clients.")
    ap.add_argument("--repeat", type=int, default=3, help="Runs of the logtide core; the median is reported.")
    ap.add_argument("--kafka", metavar="BOOTSTRAP", help="Also run the records through a real `logtide alerts` "
                    "process reading them from this Kafka (e.g. 127.0.0.1:9092).")
    args = ap.parse_args()
    raw = records(args.anomalies, args.services)
    runs = sorted((bench_logtide(raw, args.routes, args.silences) for _ in range(args.repeat)),
                  key=lambda r: r["cpu_per_s"])
    ours = runs[len(runs) // 2]  # the median run (the machine is shared: one run can be unlucky)
    am = asyncio.run(bench_alertmanager(raw, args.routes, args.silences, args.batch, args.clients))
    proc = asyncio.run(bench_process(raw, args.routes, args.silences, args.kafka)) if args.kafka else None
    print(f"ratio logtide/Alertmanager per CPU second: {ours['cpu_per_s'] / am['cpu_per_s']:.2f}x; "
          f"per wall second: {ours['per_s'] / am['per_s']:.2f}x")
    print(f"logtide core     {ours['per_s']:>10,.0f} anomalies/s wall ({ours['cpu_per_s']:,.0f}/s CPU), "
          f"{len(raw):,} records in {ours['wall']:.2f}s, {ours['notifications']:,} notifications, "
          f"suppressed {ours['suppressed']}; median of {len(runs)} runs "
          f"(CPU {runs[0]['cpu_per_s']:,.0f}-{runs[-1]['cpu_per_s']:,.0f}/s)")
    print(f"Alertmanager 0.25 {am['per_s']:>9,.0f} alerts/s wall ({am['cpu_per_s']:,.0f}/s of its CPU) ingested "
          f"(POST /api/v2/alerts, batches of {args.batch}, "
          f"{args.clients} clients), {len(raw):,} alerts in {am['wall']:.2f}s")
    if proc is not None:
        print(f"logtide alerts process {proc['per_s']:>7,.0f} anomalies/s wall ({proc['cpu_per_s']:,.0f}/s of its CPU) "
              f"from Kafka, live (decode, route, group, silence, inhibit), {len(raw):,} records in "
              f"{proc['wall']:.2f}s")
    print(f"setup: {args.routes} routes, {args.silences} active silences, {args.services} services; machine shared "
          "with other engineers (2 cores), wall-clock figures vary")


if __name__ == "__main__":
    main()
