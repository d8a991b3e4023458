"""Whole-pipeline chaos for longer: `bench/chaos.py --minutes 10` (needs `logtide services up`).

Prints lines written, faults injected by kind, lines lost (must be 0), duplicates in Elasticsearch
(must be 0), windows checked against a recount, and the time to recover after each fault.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.chaos.harness import ChaosRun, schedule


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=50.0, help="lines per second written")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--es", default="http://127.0.0.1:9200")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="logtide-chaos-") as tmp:
        run = ChaosRun(Path(tmp), args.es, rate=args.rate)
        faults = schedule(args.minutes * 60, seed=args.seed)
        try:
            run.setup()
            rep = run.run(args.minutes * 60, faults)
        finally:
            run.teardown()
        print(rep.text())
        for w in rep.windows_wrong[:20]:
            print("window:", w)
        for n in rep.notes:
            print("note:", n)
        return 0 if rep.lost == 0 and rep.duplicates == 0 and not rep.windows_wrong and not rep.died else 1


if __name__ == "__main__":
    sys.exit(main())
