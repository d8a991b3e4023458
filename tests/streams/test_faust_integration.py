"""The Faust streams app end to end against the real local Kafka.

Workers run as real processes (`logtide streams`, with the test detector registered). Each test has
its own topic prefix, consumer group and state directories. Expected aggregates are computed by the
pure operators on the same input, folded point by point (the embedded runner's path), and must match
exactly; a brute-force count per series and window checks those in turn. No timing thresholds: tests
wait on conditions (records on a topic, committed offsets) with generous timeouts.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest
from logtide.schemas import Topics
from logtide.streams.config import StreamsConfig

from tests.streams.kafka_util import (
    Worker,
    committed_all,
    create_topics,
    produce,
    read_until,
    wait_for,
    write_config,
)
from tests.streams.recount import (
    brute_counts,
    closers,
    expected,
    log_record,
    make_logs,
    same_stats,
    streams_cfg,
    t_base,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def env(kafka: str, unique: str, tmp_path: Path):
    prefix = f"t{unique}."
    app_id = f"t{unique}"
    topics = Topics(prefix)
    cfg_dict = streams_cfg(app_id)
    config = write_config(tmp_path / "logtide.yaml", kafka, prefix, cfg_dict)
    workers: list[Worker] = []

    def start(name: str) -> Worker:
        w = Worker(config, tmp_path / f"state-{name}", tmp_path / f"{name}.log")
        workers.append(w)
        return w

    import asyncio

    asyncio.run(create_topics(kafka, topics, 4))

    def check() -> None:
        for w in workers:
            w.check()

    yield {
        "kafka": kafka,
        "topics": topics,
        "cfg": StreamsConfig.model_validate(cfg_dict),
        "start": start,
        "app_id": app_id,
        "tmp": tmp_path,
        "check": check,
    }
    for w in workers:
        w.stop()


async def wait_aggs(env: dict, want: dict) -> dict[str, dict]:
    recs = await read_until(
        env["kafka"],
        env["topics"].metrics_agg,
        lambda rs: {r["event"]["id"] for r in rs} >= set(want),
        240,
        env["check"],
    )
    return {r["event"]["id"]: r for r in recs}


def check_aggs(got: dict[str, dict], want: dict[str, dict]) -> None:
    missing = set(want) - set(got)
    assert not missing
    bad = [k for k in want if not same_stats(got[k], want[k])]
    assert not bad, f"{len(bad)} aggregates differ: " + "; ".join(
        f"{want[k]['series']['key']} {want[k]['window']['start']}: {got[k]['stats']['count']} != {want[k]['stats']['count']}"
        for k in bad[:6]
    )


async def test_end_to_end_exact_aggregates_incident_dead_letters_lateness(env) -> None:
    kafka, topics, cfg = env["kafka"], env["topics"], env["cfg"]
    t0 = t_base()
    logs = make_logs(t0, 0, 1800, incident=(1200, 1260))
    data = logs + closers(t0, 1830)
    want, want_anoms = expected(cfg, data)
    assert want_anoms, "the reference pipeline must see the incident"
    assert [a.status.value for a in want_anoms][-1] == "resolved", "the incident's episode resolves"

    worker = env["start"]("a")
    await wait_for(worker.settled, "the worker to be ready", check=env["check"])
    bad = [
        (None, b"{not json"),
        (None, b'{"message": "no timestamp"}'),
        (
            None,
            orjson.dumps(
                {
                    "@timestamp": "yesterday",
                    "event": {"id": "x"},
                    "logtide": {"schema": "log_event"},
                    "message": "m",
                }
            ),
        ),
    ]
    await produce(kafka, topics.logs_raw, bad + data)

    got = await wait_aggs(env, want)
    check_aggs(got, want)
    # and the counts against a brute-force recount of the input
    brute = brute_counts(data, cfg.window.lateness_seconds)
    counted = {}
    for r in got.values():
        if r["series"]["metric"] == "log.events" and r["stats"]["count"]:
            start = datetime.fromisoformat(r["window"]["start"])
            counted[(r["labels"]["service"], r["labels"]["level"], start)] = r["stats"]["count"]
    assert counted == brute

    # the incident: anomalies on api's error ratio inside the incident minute, identical to the reference
    anoms = await read_until(
        kafka, topics.anomalies, lambda rs: len(rs) >= len(want_anoms), 120, env["check"]
    )
    assert {a["event"]["id"] for a in anoms} == {a.event.id for a in want_anoms}
    first = min(anoms, key=lambda a: a["window"]["start"])
    assert first["series"]["key"] == "log.error_ratio{service=api}"
    assert (
        t0 + timedelta(seconds=1200)
        <= datetime.fromisoformat(first["window"]["start"])
        < t0 + timedelta(seconds=1260)
    )
    assert first["value"] > first["band"]["upper"] and first["context"]

    # a late event (its only window closed long ago) goes to the dead-letter topic, not into a window
    late = log_record(t0 + timedelta(seconds=65), "api", 99_999_999, True)
    await produce(kafka, topics.logs_raw, [late])
    dead = await read_until(
        kafka,
        topics.deadletter,
        lambda rs: sum(r["error"]["type"] == "late_event" for r in rs) >= 4,
        120,
        env["check"],
    )
    reasons = [r["error"]["type"] for r in dead]
    assert set(reasons) == {"invalid_json", "missing_field", "validation", "late_event"}
    # the late log line is dead-lettered once per point derived from it (count, error ratio, status, latency)
    assert reasons.count("late_event") == 4
    raw_bad = {base64.b64decode(r["dead_letter"]["original_base64"]) for r in dead}
    assert b"{not json" in raw_bad
    assert worker.alive(), worker.tail()


async def test_restart_carries_state_from_the_changelog(env) -> None:
    """Worker A processes the first part and stops; worker B, with an empty state directory, carries on:
    windows spanning the cut-over are exact and the detector does not warm up again (incident shortly
    after the restart, fewer windows after it than the warm-up, is detected)."""
    kafka, topics, cfg = env["kafka"], env["topics"], env["cfg"]
    t0 = t_base()
    part1 = make_logs(t0, 0, 603, None)  # cut in the middle of a window
    part2 = make_logs(t0, 603, 900, incident=(700, 740)) + closers(t0, 930)
    want, want_anoms = expected(cfg, part1 + part2)
    assert want_anoms

    a = env["start"]("a")
    await wait_for(a.settled, "worker a to be ready", check=env["check"])
    await produce(kafka, topics.logs_raw, part1)
    await committed_all(kafka, f"{env['app_id']}-raw", topics.logs_raw, check=env["check"])
    await committed_all(kafka, env["app_id"], f"{env['app_id']}-points", check=env["check"])
    a.stop()
    b = env["start"]("b")
    await wait_for(b.settled, "worker b to be ready", check=env["check"])
    await produce(kafka, topics.logs_raw, part2)
    got = await wait_aggs(env, want)
    check_aggs(got, want)
    anoms = await read_until(
        kafka, topics.anomalies, lambda rs: len(rs) >= len(want_anoms), 120, env["check"]
    )
    assert {x["event"]["id"] for x in anoms} == {x.event.id for x in want_anoms}
    assert b.alive(), b.tail()


async def test_two_workers_four_partitions_one_killed(env) -> None:
    """Two workers split 4 partitions; one is killed (SIGKILL) after its work was committed; the other
    takes over its partitions and their state, and every aggregate is still exact."""
    kafka, topics, cfg = env["kafka"], env["topics"], env["cfg"]
    t0 = t_base()
    part1 = make_logs(t0, 0, 605, None)
    part2 = make_logs(t0, 605, 900, incident=(700, 740)) + closers(t0, 930)
    want, want_anoms = expected(cfg, part1 + part2)
    assert want_anoms, "the reference pipeline must see the incident"

    a, b = env["start"]("a"), env["start"]("b")
    points = f"{env['app_id']}-points"

    def split() -> bool:
        pa, pb = a.assigned(points), b.assigned(points)
        return bool(pa) and bool(pb) and pa | pb == {0, 1, 2, 3} and not pa & pb and a.settled() and b.settled()

    await wait_for(split, "both workers to share the 4 partitions", check=env["check"])
    await produce(kafka, topics.logs_raw, part1)
    await committed_all(kafka, f"{env['app_id']}-raw", topics.logs_raw, check=env["check"])
    await committed_all(kafka, env["app_id"], f"{env['app_id']}-points", check=env["check"])
    assert split(), "the group rebalanced while part 1 was processed"
    a.kill()
    await wait_for(lambda: b.assigned(points) == {0, 1, 2, 3} and b.settled(), "worker b to take over",
                   check=env["check"])
    await produce(kafka, topics.logs_raw, part2)
    got = await wait_aggs(env, want)
    check_aggs(got, want)
    anoms = await read_until(
        kafka, topics.anomalies, lambda rs: len(rs) >= len(want_anoms), 120, env["check"]
    )
    assert {x["event"]["id"] for x in anoms} == {x.event.id for x in want_anoms}
    assert b.alive(), b.tail()


async def test_upgrade_resumes_where_the_faust_group_stopped(env) -> None:
    """Before the batch reader, the Faust group read the raw topics: a worker whose raw group has no
    commit yet starts at that group's offsets, so an upgrade does not replay what was processed."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    kafka, topics = env["kafka"], env["topics"]
    t0 = t_base()
    done, new = make_logs(t0, 0, 20, None), make_logs(t0, 20, 40, None)
    await produce(kafka, topics.logs_raw, done)
    c = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=env["app_id"], enable_auto_commit=False)
    await c.start()
    try:  # the old worker's commits: everything of `done`
        tps = [TopicPartition(topics.logs_raw, p) for p in range(4)]
        c.assign(tps)
        ends = await c.end_offsets(tps)
        await c.commit({tp: n for tp, n in ends.items() if n})
    finally:
        await c.stop()
    await produce(kafka, topics.logs_raw, new)
    env["start"]("a")
    want = {orjson.loads(v)["event"]["id"] for _, v in new}
    got = await read_until(kafka, topics.logs_enriched, lambda rs: len(rs) >= len(want), 180, env["check"])
    ids = [r["event"]["id"] for r in got]
    assert set(ids) == want and len(ids) == len(want)
