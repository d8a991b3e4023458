"""Benchmark: the shipper's CPU per line without a broker, for the plain and json parsers.

    .venv/bin/python bench/bench_shipper_cpu.py [--lines 400000] [--parsers plain,json]

Runs the real `Shipper` (`--once`: reader, line splitter, event builder, in-flight budget, checkpoints)
over a generated file, into an output that does everything `KafkaOutput` does to records before the
network: aiokafka record batches filled (`aiokafka_compat.append_records`), lz4-compressed, checksummed.
Prints µs of CPU per line (process time of the run, start-up imports excluded), with the malloc
settings `logtide ship` applies (`shippers/malloc_tuning.py`). The lines are the
ones of `bench_shipper.py` (plain), or the same fields as one JSON object per line (json).
Not a test: figures on a shared machine move by ±15 %; compare runs made one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_lines(n: int, parser: str) -> bytes:
    services = ["api", "billing", "search", "auth", "cart"]
    paths = ["/api/v1/items", "/api/v1/users/42", "/login", "/checkout", "/search?q=kafka+shipper"]
    out = []
    for i in range(n):
        ts = f"2026-11-26T12:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}.{i % 1000:03d}Z"
        fields = {"service": services[i % 5], "req": f"{i:010d}", "user": f"u{i % 7919}", "path": paths[i % 5],
                  "status": 200 + (i % 7 == 0) * 300, "latency_ms": i % 997, "bytes": (i * 7) % 50000}  # fmt: skip
        msg = f"request handled by worker {i % 64}"
        if parser == "json":
            out.append(orjson.dumps({"ts": ts, "level": "INFO", **fields, "msg": msg, "pad": "abcdefghijklmnopqrstuvwx"}))
        else:
            kv = " ".join(f"{k}={v}" for k, v in fields.items())
            out.append(f'{ts} INFO {kv} msg="{msg}" pad=abcdefghijklmnopqrstuvwx'.encode())
    return b"\n".join(out) + b"\n"


class FramingOutput:
    """An `Output` that builds, compresses and checksums record batches as `KafkaOutput` and aiokafka's
    sender do (a producer that is never started: its batches), then drops them."""

    def __init__(self, max_batch_bytes: int = 1 << 20, compression: str = "lz4") -> None:
        from logtide.shippers.aiokafka_compat import DEFAULT_LEVELS, set_compression_levels

        set_compression_levels(DEFAULT_LEVELS)
        self.kwargs = {"bootstrap_servers": "127.0.0.1:1", "compression_type": compression,
                       "max_batch_size": max_batch_bytes}  # fmt: skip
        self.producer = None
        self.records = 0
        self.wire_bytes = 0

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        self.producer = AIOKafkaProducer(**self.kwargs)

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def send(self, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        from logtide.shippers.aiokafka_compat import append_records

        assert self.producer is not None
        done = 0
        while done < len(records):
            batch = self.producer.create_batch()
            done = append_records(batch, records, done)
            batch.close()
            batch._set_producer_state(1, 0, self.records)  # the sender's part, before it takes the bytes
            self.wire_bytes += len(batch._build())
            self.records += batch.record_count()
        await asyncio.sleep(0)


def run_one(parser: str, n: int, work: Path) -> tuple[float, int, int]:
    from logtide.shippers.config import LogInputConfig, ParserConfig, ShipperConfig
    from logtide.shippers.shipper import Shipper

    path = work / f"{parser}.log"
    path.write_bytes(make_lines(n, parser))
    cfg = ShipperConfig(
        inputs=[LogInputConfig(paths=[str(path)], parser=ParserConfig(type=parser), start_position="beginning")],  # type: ignore[arg-type]
        state_dir=work / f"state-{parser}", host_name="bench-host",
    )  # fmt: skip
    out = FramingOutput()
    shipper = Shipper(cfg, out, log_topic="bench", once=True)
    t0 = time.process_time()
    asyncio.run(shipper.run())
    cpu = time.process_time() - t0
    return cpu, out.records, out.wire_bytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=400_000)
    ap.add_argument("--parsers", default="plain,json")
    ap.add_argument("--repeat", type=int, default=3, help="runs per parser; the best is printed")
    args = ap.parse_args()
    import logging

    from logtide.shippers.malloc_tuning import keep_freed_buffers

    logging.basicConfig(level=logging.WARNING)
    keep_freed_buffers()  # as `logtide ship` does
    with tempfile.TemporaryDirectory(prefix="bench-shipper-cpu-") as tmp:
        for parser in args.parsers.split(","):
            runs = []
            for r in range(args.repeat):
                sub = Path(tmp) / f"{parser}-r{r}"
                sub.mkdir()
                runs.append(run_one(parser, args.lines, sub))
            _cpu, records, wire = min(runs)
            assert records == args.lines, (records, args.lines)
            per = sorted(c / args.lines * 1e6 for c, _, _ in runs)
            print(f"{parser:6} {per[0]:.2f} µs CPU/line (best of {len(runs)}; all: {', '.join(f'{p:.2f}' for p in per)}), "
                  f"{args.lines:,} lines, {wire / args.lines:.0f} B/line on the wire (lz4)")  # fmt: skip


if __name__ == "__main__":
    main()
