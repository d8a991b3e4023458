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
from datetime import datetime
from pathlib import Path

import pytest

from tests.streams.kafka_util import Worker, create_topics, produce, read_until, wait_for, write_config
from tests.streams.test_faust_integration import (
    brute_counts,
    closers,
    expected,
    make_logs,
    same_stats,
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

    workers: list[Worker] = []
    names = iter(range(1000))

    def start(state: str) -> Worker:
        w = Worker(config, tmp_path / f"state-{state}", tmp_path / f"{state}-{next(names)}.log")
        workers.append(w)
        return w

    def check() -> None:
        for w in workers:
            w.check()

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
        seen: list[list[dict]] = []

        def done(rs: list[dict]) -> bool:
            if not seen:
                seen.append(rs)  # read_until's own list: what was read so far, kept if it times out
            return {x["event"]["id"] for x in rs} >= set(want)

        try:
            got_all = await read_until(kafka, topics.metrics_agg, done, 420, check)
        except TimeoutError:
            got_ids = {x["event"]["id"] for x in (seen[0] if seen else [])}
            missing = [want[k] for k in want if k not in got_ids]
            pytest.fail(f"{len(missing)} of {len(want)} windows never emitted, e.g. "
                        + "; ".join(f"{x['series']['key']} {x['window']['start']}" for x in missing[:6])
                        + f"; seed={seed} ({'; '.join(history)}); logs in {tmp_path}")
    finally:
        for w in workers:
            w.stop()
    resumed = sum(p.read_text(errors="replace").count("resumes an announced batch") for p in tmp_path.glob("*.log"))
    context = f"seed={seed} ({'; '.join(history)}); {resumed} announced batch(es) replayed; logs in {tmp_path}"
    print(f"kill -9 run: {context}")

    by_id: dict[str, list[dict]] = {}
    for x in got_all:
        by_id.setdefault(x["event"]["id"], []).append(x)
    # copies of one window (re-emitted after a kill) are identical
    differing = [k for k, xs in by_id.items() if any(not same_stats(x, xs[0]) for x in xs)]
    assert not differing, f"{len(differing)} windows emitted with different contents; {context}"
    got = {k: xs[0] for k, xs in by_id.items()}
    bad = [k for k in want if not same_stats(got[k], want[k])]
    assert not bad, (
        f"{len(bad)} of {len(want)} windows differ from the reference; "
        + "; ".join(f"{want[k]['series']['key']} {want[k]['window']['start']}: {got[k]['stats']['count']} "
                    f"!= {want[k]['stats']['count']}" for k in bad[:6])
        + f"; {context}"
    )
    counted = {}
    for x in got.values():
        if x["series"]["metric"] == "log.events":
            start_ts = datetime.fromisoformat(x["window"]["start"])
            counted[(x["labels"]["service"], x["labels"]["level"], start_ts)] = x["stats"]["count"]
    over = {k: (counted[k], n) for k, n in brute.items() if counted.get(k, 0) != n}
    assert not over, f"{len(over)} windows differ from the brute-force recount, e.g. {list(over.items())[:5]}; {context}"
    assert len(history) == rounds
