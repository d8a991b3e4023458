"""logtide's scrape and metric windows against a real Prometheus 2.x scraping a real node_exporter.

Debian's `prometheus-node-exporter` and `prometheus` (installed by scripts/setup.sh) run on loopback
free ports. Prometheus scrapes node_exporter and itself every second; logtide scrapes both targets on
the same schedule (the same 1 s interval and the phase Prometheus chose, read from its targets API),
and runs the samples through the streams operators with the *default* series settings (no group_by
edits; 30 s windows every 5 s, to keep the test near two minutes). At the same window ends Prometheus'
HTTP API answers, and the test compares:

- gauges with `avg_over_time(x[30s])` (within 1 %, or for gauges of the instant that move more than
  that between two scrapes, within their own sample-to-sample movement), counter rates with
  `increase(x[30s]) / 30` (within 2 %);
- the physical invariant: the rate of `node_cpu_seconds_total` summed over CPUs and modes is the CPU count;
- histogram quantiles with `histogram_quantile` over the same buckets (within one bucket);
- staleness once node_exporter stops (`up` 0 on both sides, logtide's markers end the series);
- counter resets once it restarts (no negative rate; the first whole window after matches Prometheus).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import shutil
import socket
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from logtide.shippers.config import PrometheusScrapeConfig
from logtide.shippers.prometheus_scrape import Sample, ScrapeSchedule, encode, run_scrapes
from logtide.streams.config import StreamsConfig
from logtide.streams.fast_metric import FastMetric
from logtide.streams.histogram import bucket_index, parse_le
from logtide.streams.pipeline import Stateful, Stateless

pytestmark = pytest.mark.timeout(420)

INTERVAL = 1.0
WINDOW = 30
STEP = 5
HOST = {"name": "compare-host", "hostname": "compare-host"}
COLLECTORS = ["cpu", "meminfo", "loadavg", "netdev", "stat", "filesystem", "diskstats", "vmstat"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node_exporter(port: int) -> subprocess.Popen:
    args = [shutil.which("prometheus-node-exporter") or "prometheus-node-exporter",
            f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults"]  # fmt: skip
    args += [f"--collector.{c}" for c in COLLECTORS]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_prometheus(tmp: Path, port: int, node_port: int) -> subprocess.Popen:
    conf = tmp / "prometheus.yml"
    conf.write_text(
        f"global: {{scrape_interval: {INTERVAL:g}s, scrape_timeout: {INTERVAL:g}s}}\n"
        "scrape_configs:\n"
        f"  - {{job_name: node, static_configs: [{{targets: ['127.0.0.1:{node_port}']}}]}}\n"
        f"  - {{job_name: prom, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}\n"
    )
    args = [shutil.which("prometheus") or "prometheus", f"--config.file={conf}",
            f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h"]  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=(tmp / "prometheus.log").open("wb"))


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


class PromAPI:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.client = httpx.AsyncClient(timeout=10)

    async def query(self, q: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        params = {"query": q} if at is None else {"query": q, "time": f"{at:.3f}"}
        r = await self.client.get(self.base + "/api/v1/query", params=params)
        r.raise_for_status()
        return [(d["metric"], float(d["value"][1])) for d in r.json()["data"]["result"]]

    async def samples(self, selector: str, at: float) -> list[tuple[dict[str, str], list[float]]]:
        """The raw samples of a range selector evaluated at `at` (names kept, unlike *_over_time)."""
        r = await self.client.get(self.base + "/api/v1/query", params={"query": selector, "time": f"{at:.3f}"})
        r.raise_for_status()
        return [(d["metric"], [float(v) for _, v in d["values"]]) for d in r.json()["data"]["result"]]

    async def phases(self) -> dict[str, float]:
        """Per job, the phase (s within the interval) of Prometheus' scrapes, from the last scrape time."""
        r = await self.client.get(self.base + "/api/v1/targets")
        out = {}
        for t in r.json()["data"]["activeTargets"]:
            last = t.get("lastScrape", "")
            if last and not last.startswith("0001"):
                ts = datetime.fromisoformat(last[:26].rstrip("Z") + "+00:00" if "." in last else last)
                out[t["labels"]["job"]] = ts.timestamp() % INTERVAL
        return out


class Logtide:
    """Scraped samples through the streams operators, exactly as `logtide streams` folds them (the
    metric lane `streams.fast_metric`, checked sample by sample against the pydantic reference)."""

    def __init__(self) -> None:
        self.cfg = StreamsConfig.model_validate({
            "max_future_skew_seconds": 1e9,
            "window": {"size_seconds": WINDOW, "step_seconds": STEP, "lateness_seconds": 0},
            "metrics": {"aggregate": [{"metric": f"node_cpu_seconds:rate{WINDOW}s"}]},
            "detect": {"enabled": False},
        })
        self.stateless, self.stateful = Stateless(self.cfg), Stateful(self.cfg)
        # the worker's metric lane (`streams.fast_metric`) decides; the pydantic reference runs alongside
        self.lane, self.reference = FastMetric(self.stateless), Stateless(self.cfg)
        self.lane_points = 0
        self.aggs: list = []
        self.samples: list[Sample] = []
        self.ups: dict[str, list[tuple[int, float]]] = {}
        self.kinds: dict[str, str] = {}

    async def emit(self, samples: list[Sample], up: bool) -> None:
        now = datetime.now(UTC)
        self.samples += samples
        for s in samples:
            self.kinds.setdefault(s.name, s.kind)
            if s.name == "up":
                self.ups.setdefault(s.labels["job"], []).append((s.ts_ms, s.value))
        for _key, rec in encode(HOST, samples):
            ref = self.reference.metric(rec, now)
            assert ref.dead is None, ref.dead
            got = self.lane(rec, now, None)
            assert got is not None, rec  # every scraped sample takes the lane, with the reference's outcome
            point, skew, untimed, src, event_id = got
            assert (point, skew, untimed, src, event_id) == (ref.point, ref.skew, ref.untimed, ref.src,
                                                             ref.sample.event.id)
            if point is not None:
                self.lane_points += 1
                self.stateful.add(point)
        self.aggs += self.stateful.advance()[0]

    def at(self, end_s: float, metric: str, job: str) -> dict[tuple, float]:
        end = datetime.fromtimestamp(end_s, UTC)
        return {tuple(sorted((k, v) for k, v in a.series.labels.items() if k != "host")): a.stats.mean
                for a in self.aggs if a.window.end == end and a.series.metric == metric
                and a.series.labels.get("job") == job}  # fmt: skip


def prom_key(metric: dict[str, str]) -> tuple:
    return tuple(sorted((k, v) for k, v in metric.items() if k != "__name__"))


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


async def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await cond():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def mean_step(values: list[float]) -> float:
    """Mean absolute change between consecutive samples (0 for fewer than two)."""
    steps = [abs(b - a) for a, b in itertools.pairwise(values)]
    return statistics.fmean(steps) if steps else 0.0


def next_full_window_end(first_sample_s: float) -> float:
    """The first window end whose whole window holds rates of samples after `first_sample_s`."""
    start = math.ceil((first_sample_s + INTERVAL) / STEP) * STEP
    return start + WINDOW


async def test_logtide_matches_prometheus_on_node_exporter(tmp_path: Path) -> None:
    node_port, prom_port = free_port(), free_port()
    node = start_node_exporter(node_port)
    prom = start_prometheus(tmp_path, prom_port, node_port)
    api = PromAPI(prom_port)
    lt = Logtide()
    tasks: list[asyncio.Task] = []
    try:
        async def ready() -> bool:
            try:
                return set(await api.phases()) == {"node", "prom"}
            except (httpx.HTTPError, ValueError, KeyError):  # not listening yet, or still starting (not JSON)
                return False

        await wait_for(ready, 120, "Prometheus scraping both targets")
        phases = await api.phases()
        for job, port in (("node", node_port), ("prom", prom_port)):
            sc = PrometheusScrapeConfig(url=f"http://127.0.0.1:{port}/metrics", interval_s=INTERVAL, job=job)
            tasks.append(asyncio.create_task(run_scrapes(sc, lt.emit, ScrapeSchedule(INTERVAL, phases[job]))))
        t_start = time.time()
        e1 = next_full_window_end(t_start + INTERVAL)
        ends = [e1, e1 + STEP, e1 + 2 * STEP]
        await asyncio.sleep(ends[-1] + 2 * INTERVAL - time.time())

        async def closed() -> bool:  # windows close with the next samples, views one step later
            view = f"all:node_cpu_seconds:rate{WINDOW}s"
            end = datetime.fromtimestamp(ends[-1], UTC)
            return bool(lt.at(ends[-1], "node_load1", "node")) and any(
                a.series.metric == view and a.window.end == end for a in lt.aggs)

        await wait_for(closed, 30, "logtide's windows at the comparison ends")

        # --- label-true series and gauges --------------------------------------------------------
        gauge_diffs: dict[str, float] = {}
        unexplained: list[str] = []
        # Left out because they describe the request, not the host: the scrape's own collector
        # durations, and node_procs_running, which counts the threads runnable at the instant of the
        # request, the scraper's own among them (Prometheus scrapes from several Go threads, so its
        # samples read higher: seen in CI as a window mean of 3.33 against our 1.93).
        per_request = {"node_scrape_collector_duration_seconds", "node_procs_running"}
        raw: dict[tuple, list[tuple[int, float]]] = {}  # logtide's own samples, per series
        for smp in lt.samples:
            if not smp.stale and smp.kind == "gauge":
                raw.setdefault((smp.name, *sorted(smp.labels.items())), []).append((smp.ts_ms, smp.value))
        for e in ends:
            ours_all = {}
            for name, kind in lt.kinds.items():
                if kind == "gauge" and name.startswith("node_") and name not in per_request:
                    ours_all.update({(name, *k): v for k, v in lt.at(e, name, "node").items()})
            # avg_over_time drops the name, so one query for all gauges takes the raw samples instead
            theirs = await api.samples(f'{{__name__=~"node_.*",job="node"}}[{WINDOW}s]', e)
            for metric, values in theirs:
                value = statistics.fmean(values)
                k = (metric["__name__"], *prom_key(metric))
                if k not in ours_all:
                    continue
                d = gauge_diffs[f"{e}:{k}"] = rel(ours_all[k], value)
                # A gauge of the instant (I/O in flight, running processes, writeback) moves within a
                # scrape interval by more than 1 %: two requests milliseconds apart may differ by up to
                # its sample-to-sample movement (as either scraper saw it). Beyond that is a real difference.
                mine = [v for t, v in raw.get(k, []) if (e - WINDOW) * 1000 <= t < e * 1000]
                moves = max(mean_step(values), mean_step(mine))
                if d > 0.01 and abs(ours_all[k] - value) > moves:
                    unexplained.append(f"{e}:{k}: ours {ours_all[k]}, Prometheus {value}, moves {moves}")
        assert len(gauge_diffs) >= 3 * 50, len(gauge_diffs)  # every node gauge series, label for label
        within = sum(d <= 0.01 for d in gauge_diffs.values()) / len(gauge_diffs)
        print(f"gauges: {len(gauge_diffs)} series-windows, median diff {statistics.median(gauge_diffs.values()):.2e},"
              f" within 1 %: {within:.1%}, worst {sorted(gauge_diffs.items(), key=lambda kv: -kv[1])[:3]}")
        assert unexplained == []
        assert within >= 0.95

        # --- counter rates ---------------------------------------------------------------------------
        rate_diffs: dict[str, float] = {}
        counters = sorted(n for n, k in lt.kinds.items() if k == "counter" and n.startswith("node_"))
        assert "node_cpu_seconds_total" in counters
        for e, name in ((e, n) for e in ends for n in counters):
            theirs = await api.query(f'increase({name}{{job="node"}}[{WINDOW}s]) / {WINDOW}', e)
            assert theirs, name
            for metric, value in theirs:
                metric["__name__"] = name
                ours = lt.at(e, name.removesuffix("_total") + f":rate{WINDOW}s", "node")
                k = prom_key(metric)
                assert k in ours, k  # the same series, every label kept
                # the kernel counts CPU time in 10 ms ticks: two scrapes a few ms apart may differ by a
                # tick at each end of the window, which is more than 2 % of a small rate
                tick_allowance = 2 * 0.01 / WINDOW if name.endswith("_seconds_total") else 0.0
                if value > 1e-3 and abs(ours[k] - value) > tick_allowance:
                    rate_diffs[f"{e}:{metric['__name__']}{k}"] = rel(ours[k], value)
                elif value > 1e-3:
                    rate_diffs[f"{e}:{metric['__name__']}{k}"] = 0.0
        within = sum(d <= 0.02 for d in rate_diffs.values()) / len(rate_diffs)
        print(f"counter rates: {len(rate_diffs)} series-windows, median diff {statistics.median(rate_diffs.values()):.2e},"
              f" within 2 %: {within:.1%}, worst {sorted(rate_diffs.items(), key=lambda kv: -kv[1])[:3]}")
        assert within == 1.0, sorted({k.split("(")[0].split(":", 1)[1] for k, d in rate_diffs.items() if d > 0.02})

        # --- the physical invariant: sum over CPUs and modes of the CPU seconds rate = CPU count -----
        cpus = {s.labels["cpu"] for s in lt.samples if s.name == "node_cpu_seconds_total"}
        for e in ends:
            total = lt.at(e, f"all:node_cpu_seconds:rate{WINDOW}s", "node")
            agg = [a for a in lt.aggs if a.series.metric == f"all:node_cpu_seconds:rate{WINDOW}s"
                   and a.window.end == datetime.fromtimestamp(e, UTC)]  # fmt: skip
            assert total == {} and len(agg) == 1  # summed over everything: no job label kept
            assert agg[0].stats.mean == pytest.approx(len(cpus), rel=0.05)

        # --- histogram quantiles against histogram_quantile ------------------------------------------
        hname = "prometheus_http_request_duration_seconds"
        bounds = sorted({parse_le(s.labels["le"]) for s in lt.samples if s.name == hname + "_bucket"})
        checked = 0
        for e in ends:
            ours = {dict(k)["quantile"]: v for k, v in lt.at(e, f"{hname}:histogram_quantile_rate{WINDOW}s", "prom").items()
                    if dict(k).get("handler") == "/metrics"}  # fmt: skip
            for q in ("0.5", "0.9", "0.99"):
                theirs = await api.query(
                    f'histogram_quantile({q}, increase({hname}_bucket{{job="prom",handler="/metrics"}}[{WINDOW}s]))', e
                )
                assert q in ours and len(theirs) == 1
                assert abs(bucket_index(ours[q], bounds) - bucket_index(theirs[0][1], bounds)) <= 1, (q, ours, theirs)
                checked += 1
        assert checked == 9

        # --- staleness: the exporter stops --------------------------------------------------------
        before = len(lt.samples)
        stop(node)
        t_stop = time.time()

        async def down() -> bool:
            return lt.ups["node"][-1][1] == 0.0 and (await api.query('up{job="node"}'))[0][1] == 0.0

        await wait_for(down, 30, "both scrapers to see node_exporter down")
        await asyncio.sleep(INTERVAL)
        after = lt.samples[before:]
        stale = [s for s in after if s.stale and s.labels.get("job") == "node"]
        assert stale and {s.name for s in stale} >= {"node_load1", "node_cpu_seconds_total"}
        assert lt.ups["node"][-1][1] == 0.0 and lt.ups["prom"][-1][1] == 1.0
        assert (await api.query('up{job="node"}'))[0][1] == 0.0
        assert await api.query('node_load1{job="node"}') == []  # Prometheus: stale too
        # the windows holding the last samples were emitted at once, not after the idle timeout
        last_ms = max(s.ts_ms for s in after if s.name == "node_load1" and not s.stale) if any(
            s.name == "node_load1" and not s.stale for s in after) else int(t_stop * 1000)  # fmt: skip
        pane_end = (last_ms // (STEP * 1000) + 1) * STEP
        assert lt.at(pane_end, "node_load1", "node"), "the window ending with the stop was not emitted"

        # --- resets: the exporter restarts, its own counters start from zero -------------------------
        node = start_node_exporter(node_port)

        async def node_up() -> bool:
            return bool(lt.ups["node"]) and lt.ups["node"][-1][1] == 1.0

        await wait_for(node_up, 30, "node_exporter back")
        back = lt.ups["node"][-1][0] / 1000
        e3 = next_full_window_end(back)
        await asyncio.sleep(e3 + 2 * INTERVAL - time.time())

        async def closed3() -> bool:
            return bool(lt.at(e3, f"promhttp_metric_handler_requests:rate{WINDOW}s", "node"))

        await wait_for(closed3, 30, "logtide's window after the restart")
        name = "promhttp_metric_handler_requests_total"
        assert (await api.query(f'resets({name}{{job="node",code="200"}}[5m])', e3))[0][1] >= 1
        theirs = await api.query(f'increase({name}{{job="node",code="200"}}[{WINDOW}s]) / {WINDOW}', e3)
        ours = lt.at(e3, f"promhttp_metric_handler_requests:rate{WINDOW}s", "node")
        k = prom_key(theirs[0][0])
        print(f"after restart: ours {ours[k]:.4f}/s, Prometheus {theirs[0][1]:.4f}/s")
        # This counter counts the scrapes themselves: at each tick the two scrapers' requests are served
        # in either order, so each side's first and last sample may differ by one request.
        one_request = 1 / (WINDOW - INTERVAL)
        assert abs(ours[k] - theirs[0][1]) <= max(0.02 * theirs[0][1], 2 * one_request + 1e-6)
        negative = [a for a in lt.aggs if ":rate" in a.series.metric and a.stats.min < 0]
        assert negative == []
        assert lt.stateful.counter_resets >= 1
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await api.client.aclose()
        stop(node)
        stop(prom)
    print(orjson.dumps({"windows": len(lt.aggs), "samples": len(lt.samples)}).decode())
