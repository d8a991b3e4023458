"""Detector cost: microseconds per point, points per second per core, state bytes per series.

Two workloads, one process (so the figures are per core):

- NAB: every CSV under ``--nab`` run through a fresh detector, as ``logtide backtest`` does;
- fleet: ``--series`` synthetic series (daily cycle + noise + rare spikes) updated in turn, one point
  per series per round, for ``--rounds`` rounds: the streams worker's access pattern. Every series
  starts from a detector warmed up on two days of data (restored from bytes, as from a Faust
  table), so the rounds measure the steady state, not the warm-up.

Times are CPU time of this process (``time.process_time``), so other work on a shared machine
inflates them less than wall time would. State bytes are the size of ``to_bytes()``, what a Faust table stores per series; ``mem`` is the
Python heap per live detector object (tracemalloc), what a worker holds in RAM.

    .venv/bin/python bench/bench_detectors.py --nab ../shared/datasets/nab --series 100000 --rounds 5
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import math
import random
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from logtide import detectors

ALL = ["ewma", "robust", "seasonal", "cusum", "page_hinkley", "isolation", "ensemble"]


def load_nab(root: Path) -> list[tuple[list[float], list[float]]]:
    out = []
    for path in sorted(root.rglob("*.csv")):
        ts, vs = [], []
        with open(path, newline="") as f:
            r = csv.reader(f)
            next(r)
            for t, v in r:
                ts.append(datetime.fromisoformat(t).replace(tzinfo=UTC).timestamp())
                vs.append(float(v))
        out.append((ts, vs))
    return out


def bench_nab(name: str, series: list[tuple[list[float], list[float]]]) -> dict:
    points = 0
    elapsed = 0.0
    sizes = []
    for ts, vs in series:
        det = detectors.build(name)
        update = det.update
        t0 = time.process_time()
        for t, v in zip(ts, vs, strict=True):
            update(t, v)
        elapsed += time.process_time() - t0
        points += len(ts)
        sizes.append(len(det.to_bytes()))
    return {"points": points, "seconds": round(elapsed, 3), "us_per_point": round(1e6 * elapsed / points, 2),
            "points_per_s": round(points / elapsed), "state_bytes_mean": round(sum(sizes) / len(sizes)),
            "state_bytes_max": max(sizes)}


def synthetic(rng: random.Random, i: int, k: int, level: float, amp: float) -> float:
    x = level + amp * math.sin(2 * math.pi * (k % 288) / 288 + i) + rng.gauss(0, 0.1 * amp + 0.01)
    return x + (5 * amp if rng.random() < 0.001 else 0.0)


def bench_fleet(name: str, n_series: int, rounds: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    warm = detectors.build(name)
    for k in range(2 * 288):
        warm.update(1.7e9 + 300 * k, synthetic(rng, 0, k, 100.0, 10.0))
    blob = warm.to_bytes()
    gc.collect()
    tracemalloc.start()
    fleet = [detectors.from_bytes(blob) for _ in range(n_series)]
    mem = tracemalloc.get_traced_memory()[0] / n_series
    tracemalloc.stop()
    params = [(100.0 * (1 + i % 7), 1.0 + i % 13) for i in range(n_series)]
    # values are drawn before timing so that the loop measures the detectors only
    elapsed = 0.0
    for r in range(rounds):
        k = 2 * 288 + r
        ts = 1.7e9 + 300 * k
        values = [synthetic(rng, i, k, *params[i]) for i in range(n_series)]
        t0 = time.process_time()
        for det, v in zip(fleet, values, strict=True):
            det.update(ts, v)
        elapsed += time.process_time() - t0
    sizes = [len(fleet[i].to_bytes()) for i in range(0, n_series, max(1, n_series // 200))]
    points = n_series * rounds
    del fleet
    gc.collect()
    return {"series": n_series, "rounds": rounds, "points": points, "seconds": round(elapsed, 3),
            "us_per_point": round(1e6 * elapsed / points, 2), "points_per_s": round(points / elapsed),
            "state_bytes_mean": round(sum(sizes) / len(sizes)), "mem_bytes_per_series": round(mem)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nab", type=Path, default=None,
                    help="a folder of NAB series (timestamp,value CSVs) that you supply; without it, the fleet only")
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--isolation-series", type=int, default=100,
                    help="fleet size for the isolation forest (each refit costs milliseconds)")
    ap.add_argument("--detectors", default=",".join(ALL))
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    names = [n for n in args.detectors.split(",") if n]
    nab = load_nab(args.nab) if args.nab and args.nab.exists() else []
    results = {}
    print(f"{'detector':14s} {'workload':22s} {'us/pt':>8s} {'pts/s/core':>11s} {'state B':>8s} {'mem B':>7s}")
    for name in names:
        res = {}
        if nab:
            r = bench_nab(name, nab)
            res["nab"] = r
            print(f"{name:14s} {'NAB ' + str(len(nab)) + ' files':22s} {r['us_per_point']:8.2f} "
                  f"{r['points_per_s']:11d} {r['state_bytes_mean']:8d} {'':>7s}", flush=True)
        n = args.isolation_series if name == "isolation" else args.series
        if n > 0:
            r = bench_fleet(name, n, args.rounds)
            res["fleet"] = r
            print(f"{name:14s} {f'{n} series x {args.rounds}':22s} {r['us_per_point']:8.2f} "
                  f"{r['points_per_s']:11d} {r['state_bytes_mean']:8d} {r['mem_bytes_per_series']:7d}", flush=True)
        results[name] = res
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
