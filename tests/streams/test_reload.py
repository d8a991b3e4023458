"""Configuration reload of a running streams worker (SIGHUP).

The worker is a real `logtide streams` process on the real local Kafka. The same input as a reference
run of the pure operators (with the same reload between the two halves) must give the same anomalies:
the threshold in force before the reload holds back a moderate incident, the one after it lets the
second incident through, and the detector is not warmed up again (its state stays). A broken file is
refused with its key path and a restart-only key is named and kept.
"""

from __future__ import annotations

import random
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from logtide.schemas import Anomaly, Topics
from logtide.streams.config import StreamsConfig
from logtide.streams.pipeline import Stateful, Stateless
from logtide.streams.reload import apply_stateful, apply_stateless

from tests.streams.kafka_util import (
    Worker,
    committed_all,
    create_topics,
    produce,
    read_until,
    wait_for,
    write_config,
)
from tests.streams.test_faust_integration import closers, log_record, streams_cfg, t_base

RATE = 0.17  # error ratio of the moderate incidents: scores ~0.45, between the two thresholds
BEFORE, AFTER = 0.9, 0.3


def logs(t0: datetime, a: int, b: int, incident: tuple[int, int]) -> list[tuple[bytes, bytes]]:
    rnd = random.Random(7 + a)
    out = []
    for k in range(a * 5, b * 5):
        ts = t0 + timedelta(milliseconds=200 * k)
        for svc in ("api", "web"):
            burst = svc == "api" and incident[0] <= k / 5 < incident[1]
            out.append(log_record(ts, svc, k, rnd.random() < (RATE if burst else 0.03)))
    return out


def reference(cfg1: StreamsConfig, cfg2: StreamsConfig, part1: list, part2: list) -> tuple[list[Anomaly], list[Anomaly], set[str]]:
    """Anomalies of part 1 under cfg1 and of part 2 after the live settings of cfg2 were applied (the
    embedded path, point by point, a wall-clock minute after each part); and the aggregate ids part 1
    closes on its own."""
    sl, sf = Stateless(cfg1), Stateful(cfg1)
    start = int(datetime.now(UTC).timestamp() * 1000)
    now = datetime.now(UTC)
    clock = [start]
    aggs: set[str] = set()

    def feed(recs: list) -> list[Anomaly]:
        out: list[Anomaly] = []
        for _, v in recs:
            clock[0] += 1
            r = sl.log(v, now)
            for p in r.points:
                sf.add(p, src=r.src, now_ms=clock[0])
            for src, wm in sl.take_marks():
                sf.mark(src, wm, clock[0])
            a, n = sf.advance(clock[0])
            aggs.update(x.event.id for x in a)
            out += n
        clock[0] += 60_000
        a, n = sf.advance(clock[0])
        aggs.update(x.event.id for x in a)
        return out + n

    first = feed(part1)
    closed_by_part1 = set(aggs)
    apply_stateful(sf, cfg2)
    apply_stateless(sl, cfg2)
    return first, feed(part2), closed_by_part1


def test_live_keys_keep_detector_state_and_gates_move() -> None:
    """Pure: the reference's own premises (no broker)."""
    t0 = t_base()
    d = streams_cfg("x")
    d["detect"]["threshold"] = BEFORE
    cfg1 = StreamsConfig.model_validate(d)
    cfg2 = cfg1.model_copy(update={"detect": cfg1.detect.model_copy(update={"threshold": AFTER})})
    p1, p2 = logs(t0, 0, 603, (400, 440)), logs(t0, 603, 900, (700, 740)) + closers(t0, 930)
    first, second, _ = reference(cfg1, cfg2, p1, p2)
    assert first == [], "the threshold before the reload holds the first incident back"
    assert [a.status.value for a in second][-1] == "resolved" and second[0].detector.threshold == AFTER
    assert all(AFTER <= a.score < BEFORE for a in second if a.status.value == "firing")
    # with the new threshold from the start the first incident fires: the old one was in force
    all_along, _, _ = reference(cfg2, cfg2, p1, [])
    assert any(a.window.start < t0 + timedelta(seconds=603) for a in all_along)
    # a detector warmed up again at the reload could not fire: fewer windows than its warm-up
    assert d["detect"]["params"]["warmup"] > (700 - 603) / 10


@pytest.mark.integration
async def test_sighup_moves_the_threshold_keeps_state_refuses_a_broken_file(kafka: str, unique: str,
                                                                               tmp_path: Path) -> None:
    prefix, app_id = f"t{unique}.", f"t{unique}"
    topics = Topics(prefix)
    d = streams_cfg(app_id)
    d["detect"]["threshold"] = BEFORE
    conf = write_config(tmp_path / "logtide.yaml", kafka, prefix, d)
    cfg1 = StreamsConfig.model_validate(d)
    cfg2 = cfg1.model_copy(update={"detect": cfg1.detect.model_copy(update={"threshold": AFTER})})
    t0 = t_base()
    p1, p2 = logs(t0, 0, 603, (400, 440)), logs(t0, 603, 900, (700, 740)) + closers(t0, 930)
    first, second, closed1 = reference(cfg1, cfg2, p1, p2)
    assert not first and second
    await create_topics(kafka, topics, 4)
    w = Worker(conf, tmp_path / "state", tmp_path / "worker.log")
    try:
        await wait_for(lambda: w.settled() and "configuration reload on SIGHUP" in w.log.read_text(),
                       "the worker to be ready", check=w.check)
        await produce(kafka, topics.logs_raw, p1)
        await committed_all(kafka, f"{app_id}-raw", topics.logs_raw, check=w.check)
        await read_until(kafka, topics.metrics_agg, lambda rs: {r["event"]["id"] for r in rs} >= closed1, 240,
                         w.check)
        # a broken file: refused with its key path, the worker keeps going on what it runs
        bad = {**d, "detect": {**d["detect"], "threshold": 2}}
        write_config(conf, kafka, prefix, bad)
        w.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: "configuration reload refused" in w.log.read_text(), "the refusal", check=w.check)
        assert "streams.detect.threshold" in w.log.read_text()
        # the new threshold, and a window size (restart only: named, kept)
        good = {**d, "detect": {**d["detect"], "threshold": AFTER}, "window": {**d["window"], "size_seconds": 20}}
        write_config(conf, kafka, prefix, good)
        w.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: "configuration reloaded" in w.log.read_text(), "the reload", check=w.check)
        text = w.log.read_text()
        assert "streams.window.size_seconds changed and needs a restart" in text
        assert "applied live: streams.detect.threshold" in text
        await produce(kafka, topics.logs_raw, p2)
        got = await read_until(kafka, topics.anomalies, lambda rs: len(rs) >= len(second), 240, w.check)
        assert sorted(a["event"]["id"] for a in got) == sorted(a.event.id for a in second)
        assert {a["detector"]["threshold"] for a in got} == {AFTER}
        assert {a["window"]["size_seconds"] for a in got} == {10}  # the running window size was kept
        assert w.alive(), w.tail()
    finally:
        w.stop()


@pytest.mark.integration
async def test_watch_config_reloads_the_command_on_a_change_of_the_file(kafka: str, unique: str,
                                                                         tmp_path: Path) -> None:
    """`logtide streams --watch-config` as users start it: a change of the file is a reload."""
    import subprocess
    import sys

    prefix, app_id = f"t{unique}.", f"t{unique}"
    d = {**streams_cfg(app_id), "detect": {"threshold": 0.5}}
    conf = write_config(tmp_path / "logtide.yaml", kafka, prefix, d)
    await create_topics(kafka, Topics(prefix), 2)
    log = tmp_path / "worker.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "logtide.cli", "streams", "--config", str(conf),
                                 "--watch-config", "--state-dir", str(tmp_path / "state")],
                                stdout=fh, stderr=subprocess.STDOUT)

        def check() -> None:
            if proc.poll() is not None:
                raise AssertionError(f"the worker exited:\n{log.read_text()[-3000:]}")

        try:
            await wait_for(lambda: "configuration reload on SIGHUP and on changes of" in log.read_text(),
                           "the worker to start", check=check)
            write_config(conf, kafka, prefix, {**d, "detect": {"threshold": 0.7}, "partitions": 2})
            await wait_for(lambda: "configuration reloaded" in log.read_text(), "the reload", check=check)
            text = log.read_text()
            assert "applied live: streams.detect.threshold" in text
            assert "streams.partitions changed and needs a restart" in text
        finally:
            proc.terminate()
            proc.wait(60)
