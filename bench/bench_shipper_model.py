"""The simulated-filesystem model of the shipper's file decisions, run long (nightly style).

    .venv/bin/python bench/bench_shipper_model.py [--sequences 1000000] [--seed 1] [--max-len 60]

Prints sequences/s and any minimal failing sequence (shrunk). The suite runs 20,000
(tests/shippers/test_reconcile_model.py); this runs as many as you give it.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.shippers.fs_model import describe, fuzz


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-len", type=int, default=60)
    ap.add_argument("--batch", type=int, default=10_000, help="sequences between progress lines")
    args = ap.parse_args()
    t0 = time.perf_counter()
    c0 = resource.getrusage(resource.RUSAGE_SELF).ru_utime
    done = total_ops = 0
    seed = args.seed
    while done < args.sequences:
        n = min(args.batch, args.sequences - done)
        ops_run, failures = fuzz(n, seed, args.max_len)
        total_ops += ops_run
        done += n
        seed += 1
        wall = time.perf_counter() - t0
        cpu = resource.getrusage(resource.RUSAGE_SELF).ru_utime - c0
        print(
            f"{done:,} sequences, {total_ops:,} ops: {done / wall:,.0f} seq/s wall, {done / cpu:,.0f} seq/s CPU"
        )
        if failures:
            for ops, why in failures:
                print(f"FAILED (seed {seed - 1}): {describe(ops)}\n  -> {why}")
            sys.exit(1)
    print("no property violated")


if __name__ == "__main__":
    main()
