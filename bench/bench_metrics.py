"""Benchmark: samples per second from a scrape to window aggregates, against Prometheus on the same target.

    .venv/bin/python bench/bench_metrics.py [--series 10000] [--interval 1] [--seconds 40]

One target (a separate process serving an exposition of `--series` series: half counters, half
gauges, 100 label values per family, values moving on every request) is scraped on the same schedule
by Debian's Prometheus (a free loopback port, its own TSDB) and by logtide in this process: the
scrape (`run_scrapes`), encoding as on `metrics.raw`, then the streams operators (validate, derive,
windows; the aggregates are what `metrics.agg` receives) with the default streams settings. The Kafka
hops are not included (measured by bench_shipper/bench_streams). Prints, ratio first:
  * samples per CPU-second (the capacity of each, since both get the same schedule),
  * samples per second achieved (Prometheus: the rate of prometheus_tsdb_head_samples_appended_total),
  * CPU seconds of each over the run.
Needs Debian's `prometheus` (scripts/setup.sh installs it). Not a test: run by hand; on a shared box
the figures move with the neighbours' load, so compare within one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_target(port: int, series: int) -> None:
    """The target: `series` series, counters growing and gauges moving on every scrape."""
    fams = max(1, series // 100)
    per = series // fams
    state = {"n": 0}

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state["n"] += 1
            n = state["n"]
            out = []
            for f in range(fams):
                if f % 2 == 0:
                    out.append(f"# TYPE bench_requests_{f}_total counter")
                    out += [f'bench_requests_{f}_total{{path="/p{i}",code="200"}} {n * (i + 1)}' for i in range(per)]
                else:
                    out.append(f"# TYPE bench_queue_{f} gauge")
                    out += [f'bench_queue_{f}{{shard="{i}"}} {(n * 7 + i) % 101}' for i in range(per)]
            body = ("\n".join(out) + "\n").encode()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # a scraper gave up (the bench's end cancels a scrape in flight)

        def log_message(self, *a: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()


def prom_metric(text: str, name: str) -> float:
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def run(args: argparse.Namespace) -> None:
    import httpx
    from logtide.shippers.config import PrometheusScrapeConfig
    from logtide.shippers.prometheus_scrape import ScrapeSchedule, encode, run_scrapes
    from logtide.streams.config import StreamsConfig
    from logtide.streams.pipeline import Stateful, Stateless

    tport, pport = free_port(), free_port()
    target = mp.Process(target=serve_target, args=(tport, args.series), daemon=True)
    target.start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    conf = tmp / "prometheus.yml"
    conf.write_text(
        f"global: {{scrape_interval: {args.interval:g}s, scrape_timeout: {args.interval:g}s}}\n"
        f"scrape_configs:\n  - {{job_name: bench, static_configs: [{{targets: ['127.0.0.1:{tport}']}}]}}\n"
    )
    prom = subprocess.Popen(
        [shutil.which("prometheus") or "prometheus", f"--config.file={conf}", f"--storage.tsdb.path={tmp}/tsdb",
         f"--web.listen-address=127.0.0.1:{pport}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = httpx.AsyncClient(timeout=10)
    try:
        for _ in range(100):
            try:
                if (await client.get(f"http://127.0.0.1:{pport}/-/ready")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
        await asyncio.sleep(2 * args.interval)  # Prometheus' first scrapes (series creation) settle

        cfg = StreamsConfig.model_validate({"max_future_skew_seconds": 1e9, "detect": {"enabled": False}})
        sl, sf = Stateless(cfg), Stateful(cfg)
        host = {"name": "bench", "hostname": "bench"}
        counts = {"samples": 0, "aggs": 0, "scrapes": 0}

        async def emit(samples: list, up: bool) -> None:
            now = datetime.now(UTC)
            for _k, rec in encode(host, samples):
                p = sl.metric(rec, now).point
                if p is not None:
                    sf.add(p)
            counts["aggs"] += len(sf.advance()[0])
            counts["samples"] += len(samples)
            counts["scrapes"] += 1

        async def prom_now() -> tuple[float, float]:
            text = (await client.get(f"http://127.0.0.1:{pport}/metrics")).text
            return (prom_metric(text, "prometheus_tsdb_head_samples_appended_total"),
                    prom_metric(text, "process_cpu_seconds_total"))  # fmt: skip

        sc = PrometheusScrapeConfig(url=f"http://127.0.0.1:{tport}/metrics", interval_s=args.interval, job="bench")
        p0, pc0 = await prom_now()
        cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        task = asyncio.create_task(run_scrapes(sc, emit, ScrapeSchedule(args.interval, 0.0)))
        await asyncio.sleep(args.seconds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        counts["aggs"] += len(sf.flush()[0])
        wall = time.monotonic() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        p1, pc1 = await prom_now()
        ours_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        prom_samples, prom_cpu = p1 - p0, pc1 - pc0
        ours_eff = counts["samples"] / ours_cpu if ours_cpu else 0.0
        prom_eff = prom_samples / prom_cpu if prom_cpu else 0.0
        print(f"box: 2 cores shared with ~8 engineers' work; {args.series} series, scrape every {args.interval:g} s, "
              f"{wall:.0f} s")  # fmt: skip
        print(f"ratio ours/Prometheus, samples per CPU-second: {ours_eff / prom_eff if prom_eff else float('nan'):.3f}")
        print(f"ratio ours/Prometheus, samples per second achieved: "
              f"{(counts['samples'] / wall) / (prom_samples / wall) if prom_samples else float('nan'):.3f}")  # fmt: skip
        print(f"ours:       {counts['samples'] / wall:10.0f} samples/s, {ours_eff:10.0f} samples/CPU-s, "
              f"CPU {ours_cpu:.1f} s, {counts['scrapes']} scrapes, {counts['aggs']} window aggregates")  # fmt: skip
        print(f"prometheus: {prom_samples / wall:10.0f} samples/s, {prom_eff:10.0f} samples/CPU-s, CPU {prom_cpu:.1f} s "
              f"(prometheus_tsdb_head_samples_appended_total, process_cpu_seconds_total)")  # fmt: skip
    finally:
        await client.aclose()
        prom.terminate()
        prom.wait(10)
        target.terminate()
        target.join(5)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=40.0)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
