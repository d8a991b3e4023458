"""Group membership changes under load: every closed window stays exact.

- A `logtide streams` worker frozen with SIGSTOP past the consumer session timeout loses its
  partitions to a second worker; then SIGCONT: the frozen one wakes up in the middle of whatever it
  was doing (a batch mapped, outputs half produced, table writes pending) and must not corrupt what
  the other one did meanwhile, then rejoins the group.
- Scaling 1 -> 3 -> 1 workers while records keep arriving: two join, then one leaves gracefully (SIGTERM)
  and one is killed (SIGKILL).

A burst of records is produced first, the rest keeps arriving in small chunks (`Feeder`) through
the membership changes. Input, reference and recount are those of the kill -9 test (`tests/streams/recount.py`): every window
on `metrics.agg` must equal the point-by-point reference and the brute-force recount of the input,
and copies of one window must be identical. The session timeout is the broker's minimum (6 s), so a
takeover takes seconds. LOGTIDE_MEMBERSHIP_SEED repeats a run's random moments.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest
from logtide.schemas import Topics
from logtide.streams.config import StreamsConfig

from tests.streams.kafka_util import Feeder, Fleet, Worker, create_topics, produce, wait_for, write_config
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

PARTITIONS = {0, 1, 2, 3}
SESSION_TIMEOUT_S = 6  # the broker's group.min.session.timeout.ms


def _seed() -> int:
    return int(os.environ.get("LOGTIDE_MEMBERSHIP_SEED") or random.SystemRandom().randrange(1 << 30))


async def _setup(kafka: str, unique: str, tmp_path: Path, seconds: int) -> tuple[Topics, str, Path, dict, dict, list]:
    """Topics, the app id, a config with the short session timeout, the reference windows, the
    recount and the input (`seconds` of two services' logs, then the records that close the last windows)."""
    prefix, app_id = f"m{unique}.", f"m{unique}"
    topics = Topics(prefix)
    sc = streams_cfg(app_id) | {"batch_size": 2000, "session_timeout_seconds": SESSION_TIMEOUT_S}
    cfg = StreamsConfig.model_validate(sc)
    config = write_config(tmp_path / "logtide.yaml", kafka, prefix, sc)
    await create_topics(kafka, topics, len(PARTITIONS))
    t0 = t_base()
    data = make_logs(t0, 0, seconds, incident=(seconds * 4 // 5, seconds * 4 // 5 + 60)) + closers(t0, seconds + 30)
    want, _ = expected(cfg, data)
    return topics, app_id, config, want, brute_counts(data, cfg.window.lateness_seconds), data


def _split(data: list, shares: list[float]) -> list[list]:
    """`data` cut into consecutive parts of the given shares (the last part takes the rest)."""
    out, i = [], 0
    for share in shares:
        n = round(len(data) * share)
        out.append(data[i:i + n])
        i += n
    out.append(data[i:])
    return out


def _owns_all(topics: Topics, app_id: str, *workers: Worker) -> bool:
    """The workers are ready and, between them, own every partition of the raw and points topics, each
    partition once."""
    if not all(w.settled() for w in workers):
        return False
    for topic in (topics.logs_raw, f"{app_id}-points"):
        got = [w.assigned(topic) or set() for w in workers]
        if set().union(*got) != PARTITIONS or sum(len(g) for g in got) != len(PARTITIONS):
            return False
    return True


@pytest.mark.timeout(900)
async def test_sigstop_past_session_timeout_then_sigcont_windows_stay_exact(
    kafka: str, unique: str, tmp_path: Path
) -> None:
    seed = _seed()
    rnd = random.Random(seed)
    topics, app_id, config, want, brute, data = await _setup(kafka, unique, tmp_path, 6000)  # 60,000 lines
    burst, rest = _split(data, [0.2])
    fleet = Fleet(config, tmp_path)
    feeder = Feeder(kafka, topics.logs_raw, rest)

    def check() -> None:
        fleet.check()
        feeder.check()

    history: list[str] = []
    try:
        a = fleet.start("a")
        await wait_for(a.settled, "worker a ready", 180, check)
        await produce(kafka, topics.logs_raw, burst)
        feeder.start()  # and the rest keeps arriving throughout
        delay = rnd.uniform(0.1, 1.5)
        await asyncio.sleep(delay)
        a.pause()
        history.append(f"a stopped {delay:.1f}s into a backlog of {len(burst)} lines")
        b = fleet.start("b")
        await wait_for(lambda: _owns_all(topics, app_id, b), "b to take over every partition", 240, check)
        delay = rnd.uniform(0.0, 3.0)
        await asyncio.sleep(delay)
        a.resume()
        history.append(f"b took over; a continued {delay:.1f}s later ({feeder.sent} of {len(rest)} fed)")
        await wait_for(lambda: _owns_all(topics, app_id, a, b) and bool(a.assigned(f"{app_id}-points")),
                       "a to rejoin next to b", 240, check)
        history.append(f"a rejoined with points partitions {sorted(a.assigned(f'{app_id}-points') or [])} "
                       f"({feeder.sent} of {len(rest)} fed)")
        await feeder.finish()
        got_all = await collect_windows(
            kafka, topics.metrics_agg, want, timeout=420, check=check,
            context=lambda: f"seed={seed} ({'; '.join(history)}); logs in {tmp_path}")
        assert a.alive() and b.alive(), "a worker died"
    finally:
        fleet.stop_all()
        await feeder.finish()
    context = (f"seed={seed} ({'; '.join(history)}); {fleet.count_in_logs('resumes an announced batch')} "
               f"announced batch(es) replayed; logs in {tmp_path}")
    print(f"SIGSTOP run: {context}")
    assert_windows_exact(got_all, want, brute, context)


@pytest.mark.timeout(900)
async def test_scale_one_three_one_under_load_windows_stay_exact(kafka: str, unique: str, tmp_path: Path) -> None:
    seed = _seed()
    rnd = random.Random(seed)
    topics, app_id, config, want, brute, data = await _setup(kafka, unique, tmp_path, 6000)  # 60,000 lines
    burst, rest = _split(data, [0.15])
    points = f"{app_id}-points"
    fleet = Fleet(config, tmp_path)
    feeder = Feeder(kafka, topics.logs_raw, rest, chunk=250)

    def check() -> None:
        fleet.check()
        feeder.check()

    history: list[str] = []
    try:
        a = fleet.start("a")
        await wait_for(a.settled, "worker a ready", 180, check)
        await produce(kafka, topics.logs_raw, burst)
        feeder.start()
        await asyncio.sleep(rnd.uniform(0.1, 1.5))
        b, c = fleet.start("b"), fleet.start("c")  # 1 -> 3 while a works through its backlog
        await wait_for(lambda: _owns_all(topics, app_id, a, b, c) and all(w.assigned(points) for w in (b, c)),
                       "three workers to share the partitions", 300, check)
        history.append("1 -> 3: " + ", ".join(f"{n} {sorted(w.assigned(points) or [])}"
                                              for n, w in (("a", a), ("b", b), ("c", c)))
                       + f" ({feeder.sent} of {len(rest)} fed)")
        await asyncio.sleep(rnd.uniform(0.1, 2.0))
        # 3 -> 1 while busy: b leaves gracefully, c is killed, in random order
        order = rnd.sample([("b", "SIGTERM"), ("c", "SIGKILL")], 2)
        for name, how in order:
            w = b if name == "b" else c
            if how == "SIGTERM":
                w.stop()
            else:
                w.kill()
            await asyncio.sleep(rnd.uniform(0.0, 1.0))
        history.append("3 -> 1: " + ", then ".join(f"{n} by {h}" for n, h in order)
                       + f" ({feeder.sent} of {len(rest)} fed)")
        await wait_for(lambda: _owns_all(topics, app_id, a), "a to own every partition again", 300, check)
        await feeder.finish()
        got_all = await collect_windows(
            kafka, topics.metrics_agg, want, timeout=420, check=check,
            context=lambda: f"seed={seed} ({'; '.join(history)}); logs in {tmp_path}")
        assert a.alive(), "worker a died"
    finally:
        fleet.stop_all()
        await feeder.finish()
    context = (f"seed={seed} ({'; '.join(history)}); {fleet.count_in_logs('resumes an announced batch')} "
               f"announced batch(es) replayed; logs in {tmp_path}")
    print(f"scaling run: {context}")
    assert_windows_exact(got_all, want, brute, context)
