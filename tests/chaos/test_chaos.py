"""Whole-pipeline chaos, short schedule: each fault kind at least once while known lines are written.

The longer run is `bench/chaos.py --minutes 10`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import ChaosRun, schedule

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)
def test_every_line_once_exact_windows_and_no_process_needs_a_human_under_faults(tmp_path: Path, es_url: str) -> None:
    run = ChaosRun(tmp_path, es_url, rate=20.0)
    faults = schedule(90.0, seed=3)
    assert {f.kind for f in faults} == {"kill_shipper", "kill_streams", "es_outage", "kill_sink",
                                        "broker_restart", "disk_full"}  # fmt: skip
    try:
        run.setup()
        report = run.run(90.0, faults)
    finally:
        run.teardown()
    print(report.text())
    tails = {name: p.tail() for name, p in run.procs.items()}
    assert report.lines_written > 1000
    assert report.died == [], tails
    assert report.lost == 0, (report.text(), tails)
    assert report.duplicates == 0, report.text()
    # Every closed log.events window (summed over its series) equals the recount of the lines written
    # in it: each line once, the lines stamped a day ahead excluded (kept out of windows by the
    # wall-clock skew policy). Only the last two windows of the run may still be open (lateness).
    print("windows:", report.windows_checked, "checked,", len(report.windows_wrong), "wrong:", report.windows_wrong[:5])
    for n in report.notes[:30]:
        print("note:", n)
    assert report.windows_checked >= 6, report.text()
    assert report.windows_open <= 2, report.text()
    assert report.windows_wrong == [], (report.windows_wrong, report.notes[:20])
