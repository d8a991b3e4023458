"""Detectors: NAB scores (dev set and leave-one-category-out), cost per point, state per series.

For every detector (and the production default, marked ``*``), in one process:

- NAB (only with ``--nab DIR --scorer nab_score.py``, which you supply; nothing here reads them
  otherwise): standard / low-FP / low-FN scores on the dev set, the leave-one-category-out mean
  (``bench/nab_eval.py``: threshold chosen on four categories, scored on the fifth), and µs per point
  over the NAB files, each run through a fresh detector as ``logtide backtest`` does;
- fleet: ``--series`` synthetic series (daily cycle + noise + rare spikes, each with its own level and
  amplitude), every series warmed on ``--warm`` points of its own data (the steady state: nothing
  restored from a shared state), then updated in turn, one point per series per round, for
  ``--rounds`` rounds: the streams worker's access pattern.

Peers in the same run: river's ``GaussianScorer`` and ``HalfSpaceTrees`` (min-max scaled input), each
point scored then learned (river's ``score_one``/``learn_one``). Their fleet is ``--peer-series``
series (a half-space-trees model holds ~10 k nodes: 100,000 of them do not fit in RAM). Ratios are
ours / peer: µs per point (fleet) and NAB standard score.

Times are CPU time of this process (``time.process_time``), so other work on a shared machine inflates
them less than wall time would. State bytes: ``to_bytes()`` (what a Faust table stores per series; a
pickle for the peers); ``mem``: Python heap per live detector (tracemalloc, on 200 of them).

    .venv/bin/python bench/bench_detectors.py --nab ../shared/datasets/nab --scorer ../shared/eval/nab_score.py
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import pickle
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import nab_eval

from logtide import detectors

ALL = ["ewma", "robust", "seasonal", "cusum", "page_hinkley", "context", "isolation", "ensemble"]
PEERS = ["river_gaussian", "river_hst"]


class RiverPeer:
    """A river anomaly model behind ``update(ts, value) -> Score`` (score the point, then learn it)."""

    def __init__(self, kind: str) -> None:
        from river import anomaly, compose, preprocessing

        self.kind = kind
        if kind == "river_gaussian":
            self.model = anomaly.GaussianScorer(grace_period=100)
        else:
            self.model = compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=42))

    def update(self, ts: float, value: float) -> detectors.Score:
        if not math.isfinite(value):
            return detectors.Score(0.0, math.nan, math.nan, math.nan)
        m = self.model
        if self.kind == "river_gaussian":
            s = m.score_one(None, value)
            m.learn_one(None, value)
        else:
            x = {"v": value}
            s = m.score_one(x)
            m.learn_one(x)
        s = float(s)
        s = min(1.0, max(0.0, s)) if math.isfinite(s) else 0.0
        return detectors.Score(s, math.nan, math.nan, math.nan)

    def to_bytes(self) -> bytes:
        return pickle.dumps(self.model)


def factory(name: str) -> Callable[[], Any]:
    if name in PEERS:
        return lambda: RiverPeer(name)
    return lambda: detectors.build(name)


def synthetic(rng: random.Random, i: int, k: int, level: float, amp: float) -> float:
    x = level + amp * math.sin(2 * math.pi * (k % 288) / 288 + i) + rng.gauss(0, 0.1 * amp + 0.01)
    return x + (5 * amp if rng.random() < 0.001 else 0.0)


def _warmed(det: Any, rng: random.Random, i: int, warm: int, param: tuple[float, float]) -> Any:
    for k in range(warm):
        det.update(1.7e9 + 300 * k, synthetic(rng, i, k, *param))
    return det


def bench_fleet(make: Callable[[], Any], n_series: int, rounds: int, warm: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    params = [(100.0 * (1 + i % 7), 1.0 + i % 13) for i in range(n_series)]
    # heap per live detector, on a sample (tracing every allocation of the whole fleet is slow)
    sample = min(n_series, 200)
    make()  # imports and shared settings outside the measurement
    gc.collect()
    tracemalloc.start()
    kept = [_warmed(make(), random.Random(seed + 1), i, warm, params[i]) for i in range(sample)]
    mem = tracemalloc.get_traced_memory()[0] / sample
    tracemalloc.stop()
    del kept
    # its own data for every series: nothing shared between series but the configuration
    fleet = [_warmed(make(), rng, i, warm, params[i]) for i in range(n_series)]
    elapsed = 0.0
    for r in range(rounds):
        k = warm + r
        ts = 1.7e9 + 300 * k
        values = [synthetic(rng, i, k, *params[i]) for i in range(n_series)]  # drawn before timing
        t0 = time.process_time()
        for det, v in zip(fleet, values, strict=True):
            det.update(ts, v)
        elapsed += time.process_time() - t0
    sizes = [len(fleet[i].to_bytes()) for i in range(0, n_series, max(1, n_series // 200))]
    points = n_series * rounds
    del fleet
    gc.collect()
    return {"series": n_series, "rounds": rounds, "warm": warm, "points": points, "seconds": round(elapsed, 3),
            "us_per_point": round(1e6 * elapsed / points, 2), "state_bytes_mean": round(sum(sizes) / len(sizes)),
            "state_bytes_max": max(sizes), "mem_bytes_per_series": round(mem)}


def bench_nab(make: Callable[[], Any], nab: Any, series: list, windows: dict) -> dict:
    scores, cpu = nab_eval.run_detector(make, None, series)
    points = sum(len(s.values) for s in series)
    r = nab_eval.evaluate(nab, series, windows, scores)
    return {**{k: r[k] for k in ("standard", "low_fp", "low_fn", "loco_mean", "loco")},
            "us_per_point": round(1e6 * cpu / points, 2)}


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:6.2f}" if a is not None and b else f"{'-':>6s}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nab", type=Path, default=None,
                    help="a NAB dev folder (CSVs + windows.json) that you supply; without it, the fleet only")
    ap.add_argument("--scorer", type=Path, default=None, help="NAB's scorer (nab_score.py), needed with --nab")
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warm", type=int, default=220, help="points each series is warmed on (its own data)")
    ap.add_argument("--isolation-series", type=int, default=100,
                    help="fleet size for the isolation forest (each refit costs milliseconds)")
    ap.add_argument("--peer-series", type=int, default=1000, help="fleet size for the river peers")
    ap.add_argument("--detectors", default=",".join(ALL))
    ap.add_argument("--peers", default=",".join(PEERS), help="river peers to run ('' for none)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    names = [n for n in args.detectors.split(",") if n] + [p for p in args.peers.split(",") if p]
    nab = series = windows = None
    if args.nab:
        if args.scorer is None:
            ap.error("--nab needs --scorer (NAB's nab_score.py)")
        nab = nab_eval.load_scorer(args.scorer)
        series, windows = nab_eval.load_series(args.nab)
    results: dict[str, dict] = {}
    for name in names:
        res: dict[str, Any] = {}
        make = factory(name)
        if nab is not None:
            res["nab"] = bench_nab(make, nab, series, windows)
        n = (args.isolation_series if name == "isolation" else args.peer_series if name in PEERS else args.series)
        if n > 0:
            res["fleet"] = bench_fleet(make, n, args.rounds, args.warm)
        results[name] = res
        print(f"done {name}: {json.dumps(res)}", file=sys.stderr, flush=True)
    peer_us = {p: results[p].get("fleet", {}).get("us_per_point") for p in PEERS if p in results}
    peer_nab = {p: results[p].get("nab", {}).get("standard") for p in PEERS if p in results}
    print(f"{'detector':16s} {'xGauss us':>9s} {'xHST us':>8s} {'xGauss NAB':>10s} {'xHST NAB':>8s} "
          f"{'NAB std':>7s} {'lowFP':>6s} {'lowFN':>6s} {'LOCO':>6s} {'us NAB':>7s} {'us fleet':>8s} "
          f"{'series':>7s} {'state B':>7s} {'mem B':>7s}")
    for name, res in results.items():
        nb, fl = res.get("nab", {}), res.get("fleet", {})
        us = fl.get("us_per_point")
        std = nb.get("standard")
        label = name + ("*" if name == detectors.DEFAULT else "")

        def fmt(v: float | None, w: int, p: int = 2) -> str:
            return f"{v:{w}.{p}f}" if v is not None else f"{'-':>{w}s}"

        print(f"{label:16s} {_ratio(us, peer_us.get('river_gaussian')):>9s} {_ratio(us, peer_us.get('river_hst')):>8s} "
              f"{_ratio(std, peer_nab.get('river_gaussian')):>10s} {_ratio(std, peer_nab.get('river_hst')):>8s} "
              f"{fmt(std, 7)} {fmt(nb.get('low_fp'), 6)} {fmt(nb.get('low_fn'), 6)} {fmt(nb.get('loco_mean'), 6)} "
              f"{fmt(nb.get('us_per_point'), 7)} {fmt(us, 8)} {fl.get('series', 0):7d} "
              f"{fl.get('state_bytes_max', 0):7d} {fl.get('mem_bytes_per_series', 0):7d}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
