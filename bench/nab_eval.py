"""NAB scores of a detector, in process: full dev set and leave-one-category-out (LOCO).

The scoring rules are NAB's, taken from the scorer the user supplies (``--scorer nab_score.py``; this
repository ships no NAB data or scorer). Every series is scored online by a fresh detector exactly as
``logtide backtest`` does (scores rounded to 6 decimals as in its CSV), then:

- full dev: one threshold for the 31 series, the one maximising the total (NAB's rule), per profile;
- LOCO: for each category, the threshold is chosen on the other categories and applied unchanged to
  the held-out one, whose total is normalised as NAB does (null detector 0, perfect 100). This is what
  "one calibrated threshold for every series" promises on data the threshold never saw.
  ``artificialNoAnomaly`` has no windows, so its normalised score is 0/0: it is reported as its raw
  false-positive cost at the transferred threshold (0 is perfect) and stays out of the mean.

    .venv/bin/python bench/nab_eval.py --nab ../shared/datasets/nab --scorer ../shared/eval/nab_score.py \
        [--detector ensemble] [--config '{"tail_z": 2.5}'] ...
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from logtide import detectors


@dataclass
class Series:
    rel: str
    category: str
    raw_ts: list[str]
    ts: list[float]
    values: list[float]


def load_scorer(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("nab_score", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a Python file")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["nab_score"] = mod  # its dataclasses look themselves up here
    spec.loader.exec_module(mod)
    return mod


def load_series(root: Path) -> tuple[list[Series], dict[str, list[list[str]]]]:
    windows = json.loads((root / "windows.json").read_text())
    out = []
    for rel in sorted(windows):
        raw, ts, vs = [], [], []
        with open(root / rel, newline="") as f:
            r = csv.reader(f)
            next(r)
            for t, v in r:
                raw.append(t)
                ts.append(datetime.fromisoformat(t).replace(tzinfo=UTC).timestamp())
                vs.append(float(v))
        out.append(Series(rel, rel.split("/")[0], raw, ts, vs))
    return out, windows


def run_detector(name: str | Callable[[], Any], config: dict[str, Any] | None,
                 series: list[Series]) -> tuple[dict[str, np.ndarray], float]:
    """Scores per file (as ``logtide backtest`` writes them) and the CPU seconds spent in updates.
    ``name``: a registered detector, or a function returning a fresh detector-like object."""
    scores = {}
    cpu = 0.0
    for s in series:
        det = name() if callable(name) else detectors.build(name, config or None)
        update = det.update
        buf = []
        t0 = time.process_time()
        for t, v in zip(s.ts, s.values, strict=True):
            buf.append(update(t, v).score)
        cpu += time.process_time() - t0
        scores[s.rel] = np.array([float(f"{x:.6f}") for x in buf])
    return scores, cpu


def _rows(nab: ModuleType, series: list[Series], windows: dict, scores: dict[str, np.ndarray]) -> Any:
    parts, count = [], 0
    for s in series:
        times = nab.parse_times(s.raw_ts)
        parts.append(nab.file_rows(times, scores[s.rel], windows[s.rel], count))
        count += len(windows[s.rel])
    rows = nab.Rows(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("score", "window", "inside", "outside")))
    return rows, count


def _best_threshold(nab: ModuleType, rows: Any, weights: dict[str, float]) -> float:
    """The threshold (detect when score >= it) at which ``nab.best_total`` finds its best total."""
    max_tp = float(nab.scaled_sigmoid(np.array([-1.0]))[0])
    order = np.argsort(-rows.score, kind="stable")
    score, window = rows.score[order], rows.window[order]
    reward = np.where(window >= 0, rows.inside[order] * weights["tp"] / max_tp, rows.outside[order] * weights["fp"])
    best_in = {int(w): -weights["fn"] for w in np.unique(window[window >= 0])}
    total = -weights["fn"] * len(best_in)
    best, thr = total, np.inf
    i, n = 0, len(score)
    while i < n:
        j = i
        while j < n and score[j] == score[i]:
            w = int(window[j])
            if w < 0:
                total += reward[j]
            elif reward[j] > best_in[w]:
                total += reward[j] - best_in[w]
                best_in[w] = reward[j]
            j += 1
        if total > best:
            best, thr = total, float(score[i])
        i = j
    return thr


def _total_at(nab: ModuleType, rows: Any, weights: dict[str, float], thr: float) -> float:
    max_tp = float(nab.scaled_sigmoid(np.array([-1.0]))[0])
    det = rows.score >= thr
    total = float(np.sum(rows.outside[det & (rows.window < 0)])) * weights["fp"]
    for w in np.unique(rows.window[rows.window >= 0]):
        hit = det & (rows.window == w)
        total += float(rows.inside[hit].max()) * weights["tp"] / max_tp if hit.any() else -weights["fn"]
    return total


def evaluate(nab: ModuleType, series: list[Series], windows: dict, scores: dict[str, np.ndarray]) -> dict[str, Any]:
    """Full-dev scores per profile, LOCO per category (standard profile) and the LOCO mean."""
    rows, count = _rows(nab, series, windows, scores)
    full = nab.normalised(rows, count)
    std = nab.PROFILES["standard"]
    loco: dict[str, float] = {}
    cats = sorted({s.category for s in series})
    for cat in cats:
        train = [s for s in series if s.category != cat]
        test = [s for s in series if s.category == cat]
        trows, _ = _rows(nab, train, windows, scores)
        thr = _best_threshold(nab, trows, std)
        hrows, hcount = _rows(nab, test, windows, scores)
        got = _total_at(nab, hrows, std, thr)
        if hcount == 0:
            loco[cat] = got  # raw false-positive cost (0 = perfect): NAB's normalisation is 0/0 here
            continue
        null = nab.Rows(np.full(len(hrows.score), 0.5), hrows.window, hrows.inside, hrows.outside)
        base = nab.best_total(null, std)
        loco[cat] = 100.0 * (got - base) / (hcount * std["tp"] - base)
    with_windows = [c for c in cats if any(windows[s.rel] for s in series if s.category == c)]
    return {
        "standard": full["standard"], "low_fp": full["reward_low_FP_rate"], "low_fn": full["reward_low_FN_rate"],
        "loco": loco, "loco_mean": sum(loco[c] for c in with_windows) / len(with_windows),
        "threshold": _best_threshold(nab, rows, std),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nab", type=Path, required=True, help="NAB dev folder (CSVs and windows.json)")
    ap.add_argument("--scorer", type=Path, required=True, help="nab_score.py")
    ap.add_argument("--detector", default=detectors.DEFAULT)
    ap.add_argument("--config", action="append", default=[],
                    help="JSON settings; repeat for several candidates ('{}' = defaults)")
    ap.add_argument("--reference", action="store_true", help="run the ensemble's reference path (prototypes)")
    args = ap.parse_args(argv)
    if args.reference:
        from logtide.detectors.ensemble import EnsembleDetector

        EnsembleDetector.update = EnsembleDetector._update_reference
    nab = load_scorer(args.scorer)
    series, windows = load_series(args.nab)
    for text in args.config or ["{}"]:
        cfg = json.loads(text)
        scores, cpu = run_detector(args.detector, cfg, series)
        r = evaluate(nab, series, windows, scores)
        loco = " ".join(f"{c[:14]}={v:.1f}" for c, v in r["loco"].items())
        print(f"{args.detector} {text}: standard {r['standard']:.2f} lowFP {r['low_fp']:.2f} "
              f"lowFN {r['low_fn']:.2f} LOCO {r['loco_mean']:.2f} thr {r['threshold']:.3f} [{loco}] "
              f"cpu {cpu:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
