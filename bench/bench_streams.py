"""Throughput of the streams job under three runners on the local broker, in the same run:

  logtide  `logtide streams` (one worker): batch reader: validate, enrich -> logs.enriched, derive +
           combine per batch, series, pane and source -> points (repartition); Faust agent: window
           aggregate (count/sum/min/max/mean/p50/p90/p99 from the DDSketch) + detect.
  quix     the same job written with Quix Streams (bench/quix_job.py): our operators per record, the
           same map-side combining (the mapper's own cells, per raw partition between two checkpoints,
           in a Sink: flushed before Quix commits the offsets), a repartition topic keyed by series,
           Quix's tumbling window with a custom aggregator merging the same sketch (same p50/p90/p99),
           the same WindowAggregate records and the same detection. What it cannot do the same way:
           exactness under kill -9 (Quix at-least-once replays a checkpoint's combined partials and they
           are folded again), per-source watermarks (Quix closes a series' windows on that series'
           newest time: the same here, one source per series), late points dead-lettered (Quix drops
           them), a window closing without a newer point of its series; see bench/quix_job.py.
           Quix Streams pins pydantic < 2.14 (below our lock): it runs in .venv/quix, which the bench
           builds with uv when missing (quixstreams==3.28.1 and `-e .`; bench/quix_venv.py), or
           BENCH_QUIX_PYTHON=/path/to/python.
  aiokafka a bare consume -> orjson decode -> produce loop: the Python ceiling.

Each runner consumes the same pre-produced topic with its own consumer group, with the worker's producer
and fetch settings, in a process of its own. Throughput is measured from the group's committed offsets
(time from the first commit until every input record and every repartitioned record written by then
is committed), so start-up is excluded the same way for all three; CPU and peak RSS are the runner's
process tree over the same span. --check recounts both stream processors' windows from the input.
Then (--latency), for both stream processors, at a paced rate with event time = append time: how long
after its window's end each window's aggregate was appended to metrics.agg (so the delay after the
window's last possible line; anomalies leave with their aggregate).

    .venv/bin/python bench/bench_streams.py --events 200000 --check
    .venv/bin/python bench/bench_streams.py --events 20000 --latency-only --rate 10000 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from logtide.schemas import Topics  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from quix_venv import quix_python  # noqa: E402

WINDOW_S = 10
SERVICES = [f"svc{i}" for i in range(8)]
HOSTS = [f"host{i}" for i in range(4)]
PATHS = ["/", "/api/items", "/api/cart", "/login", "/static/app.js"]


def make_event(i: int, ts: datetime, rnd: random.Random) -> tuple[bytes, bytes]:
    svc, host = SERVICES[i % len(SERVICES)], HOSTS[(i // len(SERVICES)) % len(HOSTS)]
    status = 500 if rnd.random() < 0.02 else (404 if rnd.random() < 0.05 else 200)
    ms = round(rnd.lognormvariate(3.0, 0.6), 2)
    path = PATHS[i % len(PATHS)]
    doc = {
        "@timestamp": ts.isoformat(),
        "event": {"id": f"e{i}", "original": f'10.0.0.{i % 250} - - "GET {path} HTTP/1.1" {status} {ms}'},
        "logtide": {"schema": "log_event"},
        "message": f"GET {path} {status}",
        "log": {"level": "error" if status >= 500 else "info", "file": {"path": "/var/log/nginx/access.log"}},
        "host": {"name": host},
        "service": {"name": svc},
        "attributes": {"status": status, "duration_ms": ms, "path": path},
    }
    return f"{svc}/{host}".encode(), orjson.dumps(doc)


def streams_section(app_id: str, detector: str = "default", lateness: float = 5.0) -> dict[str, Any]:
    return {
        "app_id": app_id,
        "partitions": 4,
        # no discovery hold: every source is in the input from the first batches, and so the worker emits
        # (and detects on) its windows within the measured span, as the Quix runner does; with the default
        # 10 s it emitted none before it had read everything, and its figures left that work out
        "window": {"size_seconds": WINDOW_S, "lateness_seconds": lateness, "group_by": ["service", "host"],
                   "source_discovery_seconds": 0},
        "detect": {"detector": detector},
        "metrics_port": 0,
        "web_port": 0,
        "batch_size": 5000,
        "raw_batch_size": int(os.environ.get("BENCH_RAW_BATCH", "10000")),
        "compression": os.environ.get("BENCH_COMPRESSION") or None,
        "batch_within_seconds": 0.5,
        "commit_interval_seconds": 0.5,
    }


# --- kafka helpers -----------------------------------------------------------------------------------


async def create_topics(bootstrap: str, names: list[str], partitions: int, append_time: tuple[str, ...] = ()) -> None:
    """`append_time`: topics whose records carry the broker's append time, whatever the producer set
    (Quix stamps a window's aggregate with the window's start, Faust with the time it sends)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([
            NewTopic(n, partitions, 1, topic_configs={"message.timestamp.type": "LogAppendTime"} if n in append_time
                     else {}) for n in names])
    finally:
        await admin.close()


async def produce_all(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20, compression_type="lz4")
    await p.start()
    t = time.perf_counter()
    try:
        futs = [await p.send(topic, value=v, key=k) for k, v in records]
        await asyncio.gather(*futs)
    finally:
        await p.stop()
    return len(records) / (time.perf_counter() - t)


class Progress:
    """Committed and end offsets of a consumer group, with long-lived clients (cheap to poll)."""

    def __init__(self, bootstrap: str) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)

    async def __aenter__(self) -> Progress:
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def of(self, group: str, topics: list[str]) -> tuple[int, int]:
        from aiokafka import TopicPartition

        desc = await self.admin.describe_topics(topics)
        tps = [TopicPartition(d["topic"], p["partition"]) for d in desc for p in d["partitions"]]
        ends = await self.consumer.end_offsets(tps)
        offs = await self.admin.list_consumer_group_offsets(group)
        committed = sum(offs[tp].offset for tp in tps if tp in offs and offs[tp].offset >= 0)
        return committed, sum(ends.values())

    async def ends(self, topics: list[str]) -> dict:
        """End offset per partition of `topics` now."""
        from aiokafka import TopicPartition

        desc = await self.admin.describe_topics(topics)
        tps = [TopicPartition(d["topic"], p["partition"]) for d in desc for p in d["partitions"]]
        return await self.consumer.end_offsets(tps)

    async def reached(self, group: str, ends: dict) -> bool:
        """Whether `group` has committed at least `ends` on every partition that has records."""
        offs = await self.admin.list_consumer_group_offsets(group)
        return all(tp in offs and offs[tp].offset >= end for tp, end in ends.items() if end > 0)

    async def topics(self) -> list[str]:
        return list(await self.admin.list_topics())


class Usage:
    """CPU seconds and peak RSS of a runner process (and its children), sampled while it runs."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.rss = 0

    def cpu(self) -> float:
        procs = [self.proc, *self.proc.children(recursive=True)]
        total = 0.0
        rss = 0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
                rss += p.memory_info().rss
            except Exception:  # a child that just exited
                continue
        self.rss = max(self.rss, rss)
        return total


async def measure_group(bootstrap: str, group: str, inputs: list[str], n_events: int,
                        internal_prefix: str | None, *, proc: subprocess.Popen, timeout: float = 900,
                        internal_group: str | None = None) -> dict[str, float]:
    """Events/s of a group: from its first commit until every input record and every internal record
    written up to the input's last commit is committed (`internal_group` when the internal topics are
    read by another group), with the CPU seconds per million events and the peak RSS over the same span.

    The internal end offsets are taken once, when the input is all committed: the logtide worker appends a
    wall-clock tick to every points partition each second, and a moving end is reached only when a commit
    happens to land between two ticks (runs measured 3,700-5,600 events/s that way)."""
    t_first = None
    base = 0
    cpu0 = 0.0
    internal_ends: dict | None = None
    usage = Usage(proc.pid)
    deadline = time.monotonic() + timeout
    async with Progress(bootstrap) as prog:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{group} exited with {proc.returncode}")
            cpu = usage.cpu()
            committed_in, end_in = await prog.of(group, inputs)
            if t_first is None and committed_in > 0:
                t_first, base, cpu0 = time.monotonic(), committed_in, cpu
            if committed_in >= end_in and t_first is not None:
                if internal_ends is None:
                    topics = [t for t in await prog.topics() if t.startswith(internal_prefix)] if internal_prefix else []
                    internal_ends = await prog.ends(topics) if topics else {}
                if await prog.reached(internal_group or group, internal_ends):
                    dt = time.monotonic() - t_first
                    done = n_events - base
                    return {"rate": done / dt if dt > 0 else float("nan"),
                            "cpu_per_m": (usage.cpu() - cpu0) / done * 1e6 if done else float("nan"),
                            "rss_mb": usage.rss / 1e6}
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{group} did not finish")


# --- runners -----------------------------------------------------------------------------------------


async def bare_loop(bootstrap: str, topic: str, out: str, group: str) -> None:
    """consume -> orjson.loads -> orjson.dumps -> produce, a batch at a time, its offsets committed once
    its sends are acknowledged (as the worker commits): the floor cost of Python + Kafka. The worker's
    producer and fetch settings (streams/raw_reader.py). Runs until SIGTERM."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    batch_size = streams_section("x")["raw_batch_size"]
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                         enable_auto_commit=False, max_partition_fetch_bytes=4 << 20, fetch_max_bytes=32 << 20)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                         max_batch_size=1 << 20, max_request_size=8 << 20,
                         compression_type=streams_section("x")["compression"])
    await c.start()
    await p.start()
    try:
        while True:
            batch = await c.getmany(timeout_ms=500, max_records=batch_size)
            futs = []
            for recs in batch.values():
                for r in recs:
                    doc = orjson.loads(r.value)
                    futs.append(await p.send(out, value=orjson.dumps(doc), key=r.key))
            if futs:
                await asyncio.gather(*futs)
                await c.commit()
    finally:
        await c.stop()
        await p.stop()


def start_bare(bootstrap: str, topic: str, out: str, group: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--bare-loop", bootstrap, topic, out, group],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=str(ROOT), start_new_session=True,
    )


def start_faust(cfg_path: Path, state: Path, log: Path) -> subprocess.Popen:
    # BENCH_PROFILE=path: run the worker under cProfile (stats written there when it stops)
    prof = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if os.environ.get("BENCH_PROFILE") else []
    return subprocess.Popen(
        [sys.executable, *prof, "-m", "logtide.cli", "streams", "--config", str(cfg_path), "--state-dir", str(state),
         "--loglevel", "warning"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
    )


def quix_topics(prefix: str) -> dict[str, str]:
    """The Quix runner's own output and repartition topics (beside the worker's, never shared)."""
    t = Topics(prefix)
    return {"enriched": t.logs_enriched + ".quix", "points": prefix + "points.quix",
            "agg": t.metrics_agg + ".quix", "anomalies": t.anomalies + ".quix"}


def start_quix(python: str, bootstrap: str, prefix: str, group: str, *, state: Path, log: Path,
               lateness: float = 5.0) -> subprocess.Popen:
    return subprocess.Popen(
        [python, str(ROOT / "bench" / "quix_job.py"), bootstrap, prefix, group, str(state), str(lateness)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


# --- latency -----------------------------------------------------------------------------------------


async def latency_run(bootstrap: str, rate: int, seconds: int, workdir: Path,
                      quix: str | None = None) -> dict[str, float]:
    """Paced input at `rate` events/s with event time = now; how long after its window's end each
    aggregate was appended to metrics.agg (the logtide worker, or with `quix` (its python) the Quix runner)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    uid = uuid.uuid4().hex[:8]
    prefix = f"benchlat{uid}."
    topics = Topics(prefix)
    await create_topics(bootstrap, [*topics.all(), *quix_topics(prefix).values()], 4,
                        append_time=(topics.metrics_agg, quix_topics(prefix)["agg"]))
    if quix is not None:
        proc = start_quix(quix, bootstrap, prefix, f"benchlatq{uid}", state=workdir / "state-latq",
                          log=workdir / "quix-lat.log", lateness=1.0)
        out_topic = quix_topics(prefix)["agg"]
    else:
        cfg_path = workdir / "lat.yaml"
        cfg_path.write_text(yaml.safe_dump({
            "kafka": {"bootstrap_servers": [bootstrap]}, "topics": {"prefix": prefix},
            "streams": streams_section(f"benchlat{uid}", lateness=1.0),
        }))
        proc = start_faust(cfg_path, workdir / "state-lat", workdir / "faust-lat.log")
        out_topic = topics.metrics_agg
    # wait for the worker to be in its group
    await asyncio.sleep(12)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, compression_type="lz4")
    await p.start()
    rnd = random.Random(3)
    i = 0
    t_start = time.monotonic()
    try:
        while time.monotonic() - t_start < seconds:
            target = int((time.monotonic() - t_start) * rate)
            now = datetime.now(UTC)
            while i < target:
                k, v = make_event(i, now, rnd)
                await p.send(topics.logs_raw, value=v, key=k)
                i += 1
            await asyncio.sleep(0.005)
        # keep time moving so that the last windows close: a trickle of events for lateness + a window
        t_end = time.monotonic()
        paced_rate = i / (t_end - t_start)
        while time.monotonic() - t_end < WINDOW_S + 3:
            now = datetime.now(UTC)
            for j in range(len(SERVICES) * len(HOSTS)):
                k, v = make_event(i + j, now, rnd)
                await p.send(topics.logs_raw, value=v, key=k)
            i += len(SERVICES) * len(HOSTS)
            await asyncio.sleep(0.1)
        await p.flush()
    finally:
        await p.stop()
    # the paced phase's rate (the trickle that closes the last windows is not part of the load)
    sent_rate = paced_rate
    c = AIOKafkaConsumer(out_topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await c.start()
    lat = []
    try:
        while True:
            batch = await c.getmany(timeout_ms=10_000)  # the worker may still be catching up
            if not batch:
                break
            for recs in batch.values():
                for r in recs:
                    d = orjson.loads(r.value)
                    if d["series"]["metric"] != "log.events":
                        continue
                    end = datetime.fromisoformat(d["window"]["end"]).timestamp()
                    lat.append(r.timestamp / 1000 - end)
    finally:
        await c.stop()
        stop(proc)
    lat.sort()
    if not lat:
        return {"sent_rate": sent_rate, "n": 0}
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
    return {"sent_rate": sent_rate, "n": len(lat), "p50": q[49], "p99": q[98], "max": lat[-1]}


# --- main --------------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    from logtide.services import ensure_up

    bootstrap = ensure_up(kafka=True, elasticsearch=False)["kafka"]
    qpython = None if args.no_quix else quix_python(ROOT)  # built now, or one line and out
    workdir = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    uid = uuid.uuid4().hex[:8]
    prefix = f"bench{uid}."
    topics = Topics(prefix)
    await create_topics(bootstrap, [*topics.all(), *quix_topics(prefix).values(), prefix + "bare.out"],
                        args.partitions)
    rnd = random.Random(1)
    t0 = datetime.now(UTC) - timedelta(hours=1)
    n = args.events
    per_s = 2000  # event-time density: windows of 10 s hold 20,000 events over 32 service/host pairs
    records = [make_event(i, t0 + timedelta(seconds=i / per_s), rnd) for i in range(n)]
    prod_rate = await produce_all(bootstrap, topics.logs_raw, records)
    print(f"input: {n} events on {topics.logs_raw} ({args.partitions} partitions), produced at {prod_rate:,.0f}/s")

    if args.latency_only:
        await report_latency(bootstrap, args, workdir, qpython)
        return
    results: dict[str, dict[str, float]] = {}
    bgroup = f"bare{uid}"
    proc = start_bare(bootstrap, topics.logs_raw, prefix + "bare.out", bgroup, workdir / "bare.log")
    try:
        results["aiokafka"] = await measure_group(bootstrap, bgroup, [topics.logs_raw], n, None, proc=proc)
    finally:
        stop(proc)
    print(f"aiokafka bare loop done: {results['aiokafka']['rate']:,.0f} events/s", flush=True)

    app_id = f"bench{uid}"
    cfg_path = workdir / "logtide.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": [bootstrap]}, "topics": {"prefix": prefix},
        "streams": streams_section(app_id),
    }))
    proc = start_faust(cfg_path, workdir / "state-logtide", workdir / "logtide.log")
    try:
        # raw topics are committed by the worker's batch reader (group {app}-raw), the points topic by Faust
        results["logtide"] = await measure_group(bootstrap, f"{app_id}-raw", [topics.logs_raw], n,
                                                 f"{app_id}-points", proc=proc, internal_group=app_id)
    finally:
        stop(proc)
    print(f"logtide worker done: {results['logtide']['rate']:,.0f} events/s", flush=True)

    if qpython is not None:
        qgroup = f"benchq{uid}"
        proc = start_quix(qpython, bootstrap, prefix, qgroup, state=workdir / "state-quix",
                          log=workdir / "quix.log")
        try:
            # raw and the combined points topic, both read by the Quix app's group
            results["quix"] = await measure_group(bootstrap, qgroup, [topics.logs_raw], n,
                                                  quix_topics(prefix)["points"], proc=proc)
        finally:
            stop(proc)
        print(f"quix streams done: {results['quix']['rate']:,.0f} events/s", flush=True)
    if args.check:
        print(await check_windows(bootstrap, prefix), flush=True)

    r = {k: v["rate"] for k, v in results.items()}
    print("\nratios (events/s, same run)")
    if "quix" in r:
        print(f"  logtide / quix      = {r['logtide'] / r['quix']:.2f}")
    print(f"  logtide / aiokafka  = {r['logtide'] / r['aiokafka']:.2f}")
    if "quix" in r:
        print(f"  quix    / aiokafka  = {r['quix'] / r['aiokafka']:.2f}")
        cpu = {k: v["cpu_per_m"] for k, v in results.items()}
        print(f"  CPU per event, quix / logtide = {cpu['quix'] / cpu['logtide']:.2f}"
              f" (steadier than the rates on a shared box)")
    print(f"\n{'runner':<22}{'events/s':>12}{'CPU s / M events':>18}{'peak RSS MB':>13}")
    for name, label in (("logtide", "logtide worker"), ("quix", "quix streams"), ("aiokafka", "aiokafka bare loop")):
        if name in results:
            x = results[name]
            print(f"{label:<22}{x['rate']:>12,.0f}{x['cpu_per_m']:>18,.1f}{x['rss_mb']:>13,.0f}")
    print(f"  target >= 30,000/s per worker: {'met' if r['logtide'] >= 30_000 else 'NOT met'}"
          f" (rate measured from committed offsets; the box is shared, CPU s per M events is the steadier figure)")

    if args.latency:
        await report_latency(bootstrap, args, workdir, qpython)
    print(f"\nlogs: {workdir}")


async def read_topic(bootstrap: str, topic: str) -> list[tuple[int, bytes]]:
    """Every record of `topic` now: (partition, value)."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
                         max_partition_fetch_bytes=8 << 20)
    await c.start()
    out: list[tuple[int, bytes]] = []
    try:
        while True:
            batch = await c.getmany(timeout_ms=3000, max_records=20000)
            if not batch:
                return out
            for tp, recs in batch.items():
                out += [(tp.partition, r.value) for r in recs]
    finally:
        await c.stop()


async def check_windows(bootstrap: str, prefix: str) -> str:
    """Whether both stream processors did the job: their windows against a recount of the input."""
    from logtide.streams.config import StreamsConfig
    from quix_job import recount

    cfg = StreamsConfig.model_validate(streams_section("check"))
    raw = await read_topic(bootstrap, Topics(prefix).logs_raw)
    lines = ["check: windows equal to a recount of the input (reference operators, every value into the sketch;"
             " sums within 1e-9)"]
    for name, topic in (("logtide", Topics(prefix).metrics_agg), ("quix", quix_topics(prefix)["agg"])):
        windows = [v for _, v in await read_topic(bootstrap, topic)]
        equal, differ, open_ = recount(raw, windows, cfg)
        lines.append(f"  {name:<8} {equal} of {equal + differ} equal, {differ} differing; {open_} of the "
                     f"recount's windows not emitted when it stopped (still open)")
    return "\n".join(lines)


async def report_latency(bootstrap: str, args: argparse.Namespace, workdir: Path, quix: str | None) -> None:
    print(f"\nlatency at a paced rate, event time = append time: how long after its window's end (so after "
          f"the window's last possible line was appended) each window's aggregate was appended to metrics.agg "
          f"(the broker's append time) "
          f"(window {WINDOW_S}s, lateness 1s; target p99 < step + 2 s = {WINDOW_S + 2}s)")
    for name, py in (("logtide worker", None), ("quix streams", quix)):
        if name == "quix streams" and quix is None:
            continue
        r = await latency_run(bootstrap, args.rate, args.seconds, workdir, quix=py)
        if r.get("n"):
            print(f"  {name:<16} at {r['sent_rate']:,.0f} events/s: p50 {r['p50']:.2f}s  p99 {r['p99']:.2f}s  "
                  f"max {r['max']:.2f}s over {r['n']} windows: {'met' if r['p99'] < WINDOW_S + 2 else 'NOT met'}",
                  flush=True)
        else:
            print(f"  {name:<16}: no aggregates observed (sent {r['sent_rate']:,.0f}/s)", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--bare-loop":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(bare_loop(*sys.argv[2:6]))
        sys.exit(0)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("--latency-only", action="store_true")
    ap.add_argument("--no-quix", action="store_true", help="Skip the Quix Streams runner.")
    ap.add_argument("--check", action="store_true",
                    help="Recount both stream processors' windows from the input (about 10 s per 100,000 events).")
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=30)
    asyncio.run(main(ap.parse_args()))
