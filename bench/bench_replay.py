"""Benchmark: reading a time range of a topic to NDJSON, `logtide replay --output` against kcat.

    .venv/bin/python bench/bench_replay.py [--records 400000] [--partitions 4] [--bootstrap 127.0.0.1:9092]
                                           [--repeat 3]

Fills a fresh topic with ~300-byte JSON log records whose timestamps are spread over 10 hours, picks
the range from 2h to 8h (it starts and ends inside every partition), then reads it with
  * ours: `logtide replay --topic T --from A --to B --output FILE` (one process, startup included)
  * kcat: `kcat -C -o s@A -o e@B -e -f '%s\\n'` (librdkafka; the same range by Kafka's own time index)
and prints records/s of each, ours relative to kcat first. Each run is checked: both must write the
same records (sorted lines compared). Medians of --repeat runs, after one untimed start that writes
Python's bytecode caches. The machine is shared with other
engineers' work: absolute figures move; the ratio, measured in the same minutes, is the figure.
Not a test: run by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
HOUR = 3_600_000


async def drop(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def fill(bootstrap: str, topic: str, records: int, partitions: int, base_ms: int) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # no retention: the records carry old timestamps, which time-based retention would delete
        await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs={"retention.ms": "-1"})])
    finally:
        await admin.close()
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20, compression_type="lz4")
    await p.start()
    try:
        span = 10 * HOUR
        pending = []
        for i in range(records):
            part = i % partitions
            ts = base_ms + (i * span) // records
            doc = {
                "@timestamp": ts, "message": f"GET /api/v1/items/{i % 977} 200 {i % 313}ms", "log": {"level": "info"},
                "service": {"name": ("api", "web", "auth")[i % 3]}, "host": {"name": f"web-{i % 7}"},
                "event": {"id": hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest()}, "i": i,
            }  # fmt: skip
            pending.append(await p.send(topic, orjson.dumps(doc), partition=part, timestamp_ms=ts))
            if len(pending) >= 20000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await p.stop()


# bytecode caching on, as on a user's machine (some shells here set PYTHONDONTWRITEBYTECODE, which makes
# every start compile logtide and its libraries again: over a second of CPU)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str], out: Path) -> tuple[float, float]:
    """Wall seconds and child CPU seconds of one run writing to `out`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(out, "wb") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.PIPE, check=False, env=ENV)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {r.stderr.decode()[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=400_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    topic = f"bench-replay-{uuid.uuid4().hex[:8]}"
    base = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    t = time.perf_counter()
    asyncio.run(fill(args.bootstrap, topic, args.records, args.partitions, base))
    print(f"topic {topic}: {args.records:,} records on {args.partitions} partitions, filled in "
          f"{time.perf_counter() - t:.1f} s", flush=True)  # fmt: skip
    a, b = base + 2 * HOUR, base + 8 * HOUR
    try:
        logtide = [sys.executable, "-m", "logtide.cli"]
        with tempfile.TemporaryDirectory() as tmp:
            ours_out, kcat_out = Path(tmp) / "ours.ndjson", Path(tmp) / "kcat.ndjson"
            runs: dict[str, list[tuple[float, float]]] = {"ours": [], "kcat": []}
            subprocess.run([*logtide, "--help"], capture_output=True, check=True, env=ENV)  # warm the caches
            for _ in range(args.repeat):
                runs["ours"].append(timed([*logtide, "replay", "--bootstrap", args.bootstrap, "--topic", topic,
                                           "--from", str(a), "--to", str(b), "--output", "-", "--no-progress"],
                                          ours_out))  # fmt: skip
                runs["kcat"].append(timed(["kcat", "-C", "-b", args.bootstrap, "-t", topic, "-o", f"s@{a}", "-o",
                                           f"e@{b}", "-e", "-q", "-f", "%s\\n"], kcat_out))  # fmt: skip
            ours_lines = sorted(ours_out.read_bytes().splitlines())
            kcat_lines = sorted(line for line in kcat_out.read_bytes().splitlines() if line)
            n = len(ours_lines)
            check = "same records" if ours_lines == kcat_lines else f"DIFFER (ours {n}, kcat {len(kcat_lines)})"
    finally:
        asyncio.run(drop(args.bootstrap, topic))
    wall = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
    rate = {k: n / w for k, w in wall.items()}
    print(f"ours / kcat: {rate['ours'] / rate['kcat']:.2f}x records/s ({check}; {n:,} records in [2h, 8h); "
          f"median of {args.repeat}; box shared with other engineers, {os.cpu_count()} cores)")  # fmt: skip
    print(f"ours / kcat CPU seconds: {cpu['ours'] / max(cpu['kcat'], 1e-9):.1f}x (process startup included; on a "
          "loaded box CPU time moves less than wall time)")  # fmt: skip
    print(f"{'reader':8} {'records/s':>11} {'wall s':>7} {'CPU s':>7}")
    for k in ("ours", "kcat"):
        print(f"{k:8} {rate[k]:>11,.0f} {wall[k]:>7.2f} {cpu[k]:>7.2f}")


if __name__ == "__main__":
    main()
