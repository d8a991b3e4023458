"""Benchmark: CPU per metric sample through `BatchMapper.metrics`, pydantic reference vs `streams.fast_metric`.

    .venv/bin/python bench/bench_metric_lane.py [--samples 200000] [--hosts 20] [--batch 1000] [--repeat 3]

The samples are what a shipper puts on `metrics.raw` for node_exporter-like targets: an exposition
document per host and scrape (CPU seconds per cpu and mode, memory, filesystems, network and disk
counters, load, a Go GC summary, an HTTP latency histogram; a network device that comes and goes, so
staleness markers too), parsed by the shipper's own scraper (`samples_from_text`, target labels
`job`/`instance`, the per-scrape `up`/`scrape_*` series) and encoded by its own encoder
(`prometheus_scrape.encode`). `--malformed F` replaces a fraction F of them with broken records (wrong
types, NaN strings, missing fields, not JSON) to show what declining costs.

The generated records are frozen out of the garbage collector's sight (`gc.freeze`): otherwise its
full passes over the bench's own record list grow the per-sample figures with `--samples`. Both runs
feed the same records in the same batches (one raw partition) to a fresh `BatchMapper` with
the default streams settings: "reference" with the lane switched off (`fast_metric.enabled = False`:
pydantic `MetricSample` per sample, `Stateless.metric`), "lane" with it on. Printed, ratio first:
CPU microseconds per sample of each (process time, median of `--repeat` alternating runs), the share of
samples the lane decided (the rest went to the reference), and a check that both runs produced the
same series messages, marks, dead letters and counts. The Kafka hops are not included (bench_streams
measures the whole worker). Not a test: on a shared box the figures move with the neighbours' load
(the load average is printed); compare within one run only.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from logtide.schemas import encode as encode_event  # noqa: E402
from logtide.shippers.prometheus_scrape import Staleness, encode, report_samples, samples_from_text  # noqa: E402
from logtide.streams.batch import BatchMapper, MappedBatch  # noqa: E402
from logtide.streams.config import StreamsConfig  # noqa: E402
from logtide.streams.fast_metric import FastMetric  # noqa: E402
from logtide.streams.pipeline import Stateless  # noqa: E402

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
MODES = ("user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice")
MOUNTS = (("/dev/sda1", "ext4", "/"), ("/dev/sdb1", "xfs", "/var/lib/data"), ("tmpfs", "tmpfs", "/run"))
QUANTILES = ("0", "0.25", "0.5", "0.75", "1")
BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "+Inf")


class Rec:
    """What the mapper reads of a consumed record (aiokafka's ConsumerRecord fits)."""

    __slots__ = ("key", "offset", "value")

    def __init__(self, key: bytes | None, value: bytes, offset: int) -> None:
        self.key, self.value, self.offset = key, value, offset


def exposition(h: int, k: int, rng: random.Random) -> str:
    """One node_exporter-like scrape of host `h` (the `k`-th): counters grow, gauges move."""
    lines = ["# TYPE node_cpu_seconds_total counter"]
    lines += [f'node_cpu_seconds_total{{cpu="{c}",mode="{m}"}} {1000 + k * (i + 1) * 0.37 + c:.2f}'
              for c in range(4) for i, m in enumerate(MODES)]
    lines.append("# TYPE node_memory_MemAvailable_bytes gauge")
    for name in ("MemAvailable", "MemFree", "Cached", "Buffers", "SwapFree", "Active", "Inactive", "Dirty"):
        lines += [f"# TYPE node_memory_{name}_bytes gauge", f"node_memory_{name}_bytes {rng.randint(1, 8) * 2**28}"]
    for field in ("avail", "size", "free"):
        lines.append(f"# TYPE node_filesystem_{field}_bytes gauge")
        lines += [f'node_filesystem_{field}_bytes{{device="{d}",fstype="{f}",mountpoint="{m}"}} '
                  f"{rng.randint(1, 100) * 2**30}" for d, f, m in MOUNTS]
    devices = ["eth0", "lo"] + (["veth1a2b"] if k % 7 < 4 else [])  # a container's veth comes and goes
    for field in ("receive_bytes", "transmit_bytes", "receive_packets", "transmit_errs"):
        lines.append(f"# TYPE node_network_{field}_total counter")
        lines += [f'node_network_{field}_total{{device="{d}"}} {k * 1500 + len(d)}' for d in devices]
    for field in ("io_time_seconds", "reads_completed", "writes_completed"):
        lines.append(f"# TYPE node_disk_{field}_total counter")
        lines += [f'node_disk_{field}_total{{device="{d}"}} {k * 3.5:.1f}' for d in ("sda", "sdb")]
    for n in ("1", "5", "15"):
        lines += [f"# TYPE node_load{n} gauge", f"node_load{n} {rng.random() * 4:.2f}"]
    lines.append("# TYPE go_gc_duration_seconds summary")
    lines += [f'go_gc_duration_seconds{{quantile="{q}"}} {float(q) * 0.001 + h * 1e-6:.6f}' for q in QUANTILES]
    lines += [f"go_gc_duration_seconds_sum {k * 0.01:.3f}", f"go_gc_duration_seconds_count {k * 7}"]
    lines.append("# TYPE node_exporter_http_request_duration_seconds histogram")
    lines += [f'node_exporter_http_request_duration_seconds_bucket{{handler="/metrics",le="{b}"}} {k * (i + 1)}'
              for i, b in enumerate(BUCKETS)]
    lines += ['node_exporter_http_request_duration_seconds_sum{handler="/metrics"} ' f"{k * 0.2:.2f}",
              'node_exporter_http_request_duration_seconds_count{handler="/metrics"} ' f"{k * 9}"]
    return "\n".join(lines) + "\n"


def malformed(raw: bytes, rng: random.Random) -> bytes:
    """A broken sample of the kinds a stream sees: wrong types, a NaN string, a missing field, not JSON."""
    i = rng.randrange(5)
    if i == 0:
        return raw.replace(b'"value":', b'"value":"NaN","x":', 1)
    if i == 1:
        return raw.replace(b'"name":', b'"name":7,"n":', 1)
    if i == 2:
        return raw.replace(b'"@timestamp"', b'"@ts"', 1)
    if i == 3:
        return raw.replace(b'"labels":{', b'"labels":{"n":1,', 1)
    return raw[: len(raw) // 2]


def samples(n: int, hosts: int, bad: float, seed: int = 7) -> list[Rec]:
    """`n` encoded samples from `hosts` targets scraped every 15 s, in scrape order."""
    rng = random.Random(seed)
    stale = [Staleness() for _ in range(hosts)]
    out: list[bytes] = []
    k = 0
    while len(out) < n:
        scrape_ms = int((T0 + timedelta(seconds=15 * k)).timestamp() * 1000)
        for h in range(hosts):
            target = {"job": "node", "instance": f"node-{h}:9100"}
            res = samples_from_text(exposition(h, k, rng), scrape_ms, target)
            got = res.samples + stale[h].update(res.samples, scrape_ms)
            got += report_samples(target, scrape_ms, True, 0.012, res.scraped, len(res.samples))
            host = {"name": f"node-{h}", "hostname": f"node-{h}", "ip": [f"10.0.{h // 250}.{h % 250 + 1}"]}
            out += [v for _, v in encode(host, got)]
        k += 1
    out = out[:n]
    if bad:
        out = [malformed(v, rng) if rng.random() < bad else v for v in out]
    return [Rec(None, v, i) for i, v in enumerate(out)]


def run(recs: list[Rec], cfg: StreamsConfig, lane: bool, batch: int, now: datetime, *,
        keep: bool = False) -> tuple[float, list[MappedBatch]]:
    """CPU seconds to map every batch, and (with `keep`) the mapped batches. Timed runs keep nothing:
    thousands of retained outputs would make the garbage collector's passes the figure."""
    mapper = BatchMapper(cfg)
    mapper.fast_metric.enabled = lane
    outs = []
    t = time.process_time()
    for i in range(0, len(recs), batch):
        out = mapper.metrics(recs[i:i + batch], "metrics.raw", 0, now)
        if keep:
            outs.append(out)
    return time.process_time() - t, outs


def view(outs: list[MappedBatch]) -> list[tuple]:
    """What a batch hands on, comparable across runs (dead letters without their wall-clock time)."""
    def dl(d) -> bytes:
        return encode_event(d.model_copy(update={"timestamp": T0}))

    return [([s.to_bytes() for s in o.series], o.marks, sorted(o.skew.items()), o.untimed, o.resent, o.errors,
             [dl(d) for d in o.dead]) for o in outs]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--batch", type=int, default=1000, help="records per mapped batch (the reader's getmany)")
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs of each; the median is printed")
    ap.add_argument("--malformed", type=float, default=0.0, help="fraction of records replaced by broken ones")
    a = ap.parse_args(argv)
    load0 = os.getloadavg()
    recs = samples(a.samples, a.hosts, a.malformed)
    # the inputs out of the collector's sight: full collections scanning the bench's own record list
    # (not something a worker holds) would otherwise grow the per-sample figures with --samples
    gc.collect()
    gc.freeze()
    last = datetime.fromisoformat(recs[-1].value.split(b'"@timestamp":"', 1)[1][:29].decode()) \
        if b'"@timestamp":"' in recs[-1].value else T0
    now = last + timedelta(seconds=5)
    cfg = StreamsConfig.model_validate({})
    lane = FastMetric(Stateless(cfg))
    taken = sum(lane(r.value, now, 0) is not None for r in recs)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(a.repeat):
        for mode in (False, True):
            times[mode].append(run(recs, cfg, mode, a.batch, now)[0])
    views = {mode: view(run(recs, cfg, mode, a.batch, now, keep=True)[1]) for mode in (False, True)}
    ref_us, lane_us = (statistics.median(times[m]) / len(recs) * 1e6 for m in (False, True))
    same = views[False] == views[True]
    load1 = os.getloadavg()
    n_series = sum(len(v[0]) for v in views[True])
    print(f"lane / reference CPU per sample: {lane_us / ref_us:.2f}x  ({ref_us / lane_us:.2f}x faster)")
    print(f"  reference (pydantic MetricSample): {ref_us:6.2f} us/sample  runs: "
          + ", ".join(f"{t / len(recs) * 1e6:.2f}" for t in times[False]))
    print(f"  lane (streams.fast_metric):        {lane_us:6.2f} us/sample  runs: "
          + ", ".join(f"{t / len(recs) * 1e6:.2f}" for t in times[True]))
    print(f"  share taking the lane: {taken / len(recs):.2%} ({taken} of {len(recs)}; malformed fraction "
          f"{a.malformed:g})")
    print(f"  same output (series messages, marks, dead letters, counts): {same}; "
          f"{n_series} series messages from {-(-len(recs) // a.batch)} batches of {a.batch}")
    print(f"  load average before/after: {load0[0]:.2f} / {load1[0]:.2f} (shared box: compare within this run)")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
