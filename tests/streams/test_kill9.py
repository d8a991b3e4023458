"""`logtide streams` killed with SIGKILL at random moments while busy: every closed window stays exact.

One JSON log per service in time order is produced once to `logs.raw` (so the input holds each line
exactly once), then workers are killed while they work through it: the same worker restarted on its
own state directory, and a second worker taking the partitions over (its own, empty, state
directory), in random order and at random moments. Afterwards every window on `metrics.agg` must
equal both the point-by-point reference path and a brute-force recount of the input: nothing counted
twice, nothing missing. Copies of one window (a window re-emitted after a kill) must be identical.
LOGTIDE_KILL9_SEED repeats a run; LOGTIDE_KILL9_ROUNDS sets how many kills (default 4).
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest

from tests.streams.kafka_util import Fleet, create_topics, produce, wait_for, write_config
from tests.streams.recount import (
    assert_windows_exact,
    brute_counts,
    closers,
    collect_windows,
    expected,
    make_logs,
    streams_cfg,
    t_base,
)

pytestmark = pytest.mark.integration


@pytest.mark.timeout(1200)  # several session timeouts and restarts on a shared box
async def test_kill9_at_random_moments_windows_stay_exact(kafka: str, unique: str, tmp_path: Path) -> None:
    from logtide.schemas import Topics
    from logtide.streams.config import StreamsConfig

    seed = int(os.environ.get("LOGTIDE_KILL9_SEED") or random.SystemRandom().randrange(1 << 30))
    rounds = int(os.environ.get("LOGTIDE_KILL9_ROUNDS", "4"))
    rnd = random.Random(seed)
    prefix, app_id = f"k{unique}.", f"k{unique}"
    topics = Topics(prefix)
    sc = streams_cfg(app_id) | {"batch_size": 2000}
    cfg = StreamsConfig.model_validate(sc)
    config = write_config(tmp_path / "logtide.yaml", kafka, prefix, sc)
    await create_topics(kafka, topics, 4)

    t0 = t_base()
    data = make_logs(t0, 0, 6000, incident=(4800, 4860)) + closers(t0, 6030)  # 60,000 lines over 100 min
    want, _ = expected(cfg, data)
    brute = brute_counts(data, cfg.window.lateness_seconds)
    # produced in parts, one before each kill, so that every kill hits a worker with a backlog
    step = len(data) // (rounds + 1)
    parts = [data[i * step:(i + 1) * step] for i in range(rounds)] + [data[rounds * step:]]

    fleet = Fleet(config, tmp_path)
    start, check = fleet.start, fleet.check

    history: list[str] = []
    try:
        current = {"a": start("a")}
        for r in range(rounds):
            victim_name = rnd.choice(sorted(current))
            victim = current[victim_name]
            await wait_for(victim.settled, f"worker {victim_name} ready", 180, check)
            await produce(kafka, topics.logs_raw, parts[r])
            delay = rnd.uniform(0.1, 3.0)
            await asyncio.sleep(delay)
            victim.kill()
            del current[victim_name]
            how = rnd.choice(["restart", "takeover", "both"])
            history.append(f"round {r}: killed {victim_name} {delay:.1f}s after ready, then {how}")
            if how == "restart":
                current[victim_name] = start(victim_name)
            elif how == "takeover" or not current:
                other = "b" if victim_name == "a" else "a"
                if other not in current:
                    current[other] = start(other)
                if how == "both" and victim_name not in current:
                    current[victim_name] = start(victim_name)
            else:  # "both" while the other one runs: the victim comes back next to it
                current[victim_name] = start(victim_name)

        await produce(kafka, topics.logs_raw, parts[rounds])
        got_all = await collect_windows(
            kafka, topics.metrics_agg, want, timeout=420, check=check,
            context=lambda: f"seed={seed} ({'; '.join(history)}); logs in {tmp_path}")
    finally:
        fleet.stop_all()
    resumed = fleet.count_in_logs("resumes an announced batch")
    context = f"seed={seed} ({'; '.join(history)}); {resumed} announced batch(es) replayed; logs in {tmp_path}"
    print(f"kill -9 run: {context}")
    assert_windows_exact(got_all, want, brute, context)
    assert len(history) == rounds
