"""Fuzzing campaign over every decoder: mutated real inputs through each target, failures grouped.

    .venv/bin/python bench/fuzz.py --inputs 1000000 [--seed 1] [--targets shipper.json,config]

Targets and their contracts are in tests/security/fuzz_targets.py (the same the test suite runs
with a small budget). The configuration loaders (the whole file, and the alerts section with its
routing tree) are the slowest targets (pydantic over YAML), so each gets a smaller share
(--config-share; all of --inputs, split, when only they are chosen). Prints inputs tried and rate
per target, then each distinct failure (target, exception, where) with a count and a shortened example.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.security.fuzz_targets import TARGETS, campaign

SLOW = ("config", "alerts.config")  # pydantic over YAML: a few hundred inputs/s, so a share of their own


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=1_000_000, help="inputs in total across the targets")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--config-share", type=float, default=0.02, help="share of the inputs for each config loader")
    args = ap.parse_args(argv)
    names = [n for n in args.targets.split(",") if n]
    slow = [n for n in names if n in SLOW]
    others = [n for n in names if n not in SLOW]
    config_n = int(args.inputs * args.config_share) if others else args.inputs // max(1, len(slow))
    per = (args.inputs - config_n * len(slow)) // max(1, len(others))
    total, failures = 0, {}
    print(f"{'target':22s} {'inputs':>9s} {'seconds':>8s} {'inputs/s':>9s} {'failures':>8s}", flush=True)
    for i, name in enumerate(names):
        n = config_n if name in SLOW else per
        t0 = time.process_time()
        res = campaign([name], n, seed=args.seed * 1000 + i)
        dt = time.process_time() - t0
        total += res["tried"]
        failures.update(res["failures"])
        print(f"{name:22s} {res['tried']:9d} {dt:8.1f} {res['tried'] / max(dt, 1e-9):9.0f} "
              f"{sum(f['count'] for f in res['failures'].values()):8d}", flush=True)  # fmt: skip
    print(f"\ninputs tried: {total}; distinct failures: {len(failures)}")
    for (name, exc, where), f in sorted(failures.items()):
        print(f"- {name}: {exc} at {where} x{f['count']}: {f['message']!r}\n  example: {f['example'][:160]!r}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
