"""`logtide replay` against the real local Kafka: records spread over hours on several partitions,
ranges inside partitions, at their edges and past their ends, compared with what the data says and
with kcat's own time-range read (`-o s@FROM -o e@TO`) of the same data."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest

from tests.replay.kafka_data import (
    BASE,
    HOUR,
    MINUTE,
    create_topic,
    kcat_range,
    produce_at,
    spread_records,
)

pytestmark = pytest.mark.integration

DATA = spread_records()


def logtide(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "logtide.cli", *args], check=False, capture_output=True, timeout=timeout)


def expected(from_ms: int, to_ms: int) -> list[bytes]:
    return [v for _p, ts, _k, v in DATA if from_ms <= ts < to_ms]


@pytest.fixture(scope="module")
def spread_topic(kafka_bootstrap: str) -> str:
    topic = f"replay-{uuid.uuid4().hex[:10]}"

    async def setup() -> None:
        await create_topic(kafka_bootstrap, topic, 4)
        await produce_at(kafka_bootstrap, topic, DATA)

    asyncio.run(setup())
    return topic


RANGES = {
    # starts and ends inside partitions 0, 1 and 3
    "inside": (BASE + 30 * MINUTE + 1, BASE + 3 * HOUR + 7 * MINUTE),
    # exactly at record timestamps: the first is kept, the last is not ([from, to))
    "edges": (BASE + HOUR, BASE + 2 * HOUR),
    # starts inside, ends past the end of every partition
    "past_ends": (BASE + 3 * HOUR + 30 * MINUTE, BASE + 10 * HOUR),
    # everything
    "all": (BASE - HOUR, BASE + 100 * HOUR),
    # after partition 1 ended, before partition 3 started: only partition 0
    "gap": (BASE + 2 * HOUR + 1, BASE + 2 * HOUR + 9 * MINUTE),
}


@pytest.mark.parametrize("name", list(RANGES))
def test_range_matches_data_and_kcat(name: str, spread_topic: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    from_ms, to_ms = RANGES[name]
    out = tmp_path / "out.ndjson"
    r = logtide("replay", "--bootstrap", kafka_bootstrap, "--topic", spread_topic, "--from", str(from_ms),
                "--to", str(to_ms), "--output", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    lines = out.read_bytes().splitlines()
    want = expected(from_ms, to_ms)
    assert want, "each range selects something"
    assert sorted(lines) == sorted(want)
    assert sorted(lines) == sorted(kcat_range(kafka_bootstrap, spread_topic, from_ms, to_ms))
    # timestamp order within each partition
    by_part: dict[int, list[int]] = {}
    for line in lines:
        d = orjson.loads(line)
        by_part.setdefault(d["partition"], []).append(d["ts"])
    assert all(ts == sorted(ts) for ts in by_part.values())
    assert f"replay: {len(want)} records of {spread_topic}" in r.stderr.decode()


def test_iso_and_relative_forms_select_the_same(spread_topic: str, kafka_bootstrap: str) -> None:
    r = logtide("replay", "--bootstrap", kafka_bootstrap, "--topic", spread_topic,
                "--from", "2026-01-01T02:00:00+01:00", "--to", "2026-01-01T02:00:00Z", "--output", "-")  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(r.stdout.splitlines()) == sorted(expected(BASE + HOUR, BASE + 2 * HOUR))
    # relative: the whole history is older than 1 day ago... and newer than 100000 days ago
    rel = logtide("replay", "--bootstrap", kafka_bootstrap, "--topic", spread_topic, "--from", "-100000d",
                  "--to", "1d", "--output", "-")  # fmt: skip
    assert rel.returncode == 0, rel.stderr.decode()
    assert sorted(rel.stdout.splitlines()) == sorted(v for *_, v in DATA)


def test_range_selecting_nothing(spread_topic: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    out = tmp_path / "none.ndjson"
    for from_ms, to_ms in ((BASE - 10 * HOUR, BASE - 5 * HOUR), (BASE + 50 * HOUR, BASE + 60 * HOUR),
                           (BASE + HOUR, BASE + HOUR)):  # fmt: skip
        r = logtide("replay", "--bootstrap", kafka_bootstrap, "--topic", spread_topic, "--from", str(from_ms),
                    "--to", str(to_ms), "--output", str(out))  # fmt: skip
        assert r.returncode == 0, r.stderr.decode()
        assert out.read_bytes() == b""
        assert "no records of" in r.stderr.decode()
        if to_ms > from_ms:  # the peer agrees (an empty range is not asked of it)
            assert kcat_range(kafka_bootstrap, spread_topic, from_ms, to_ms) == []


def test_to_before_from_is_an_error(spread_topic: str, kafka_bootstrap: str) -> None:
    r = logtide("replay", "--bootstrap", kafka_bootstrap, "--topic", spread_topic, "--from", str(BASE + HOUR),
                "--to", str(BASE), "--output", "-")  # fmt: skip
    assert r.returncode == 2
    assert "--to is before --from" in r.stderr.decode()
    assert r.stdout == b""


def test_unknown_topic_is_named_and_not_created(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = f"replay-missing-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "keep.ndjson"
    out.write_bytes(b'{"earlier": "work"}\n')
    r = logtide("replay", "--bootstrap", kafka_bootstrap, "--topic", topic, "--from", "0", "--to", "1",
                "--output", str(out))  # fmt: skip
    assert r.returncode == 1
    assert f"unknown topic '{topic}'" in r.stderr.decode()
    assert out.read_bytes() == b'{"earlier": "work"}\n'  # an existing output is left alone

    async def exists() -> bool:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            return topic in await admin.list_topics()
        finally:
            await admin.close()

    assert not asyncio.run(exists())


def test_malformed_records_are_counted_and_replay_continues(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = f"replay-bad-{uuid.uuid4().hex[:8]}"
    good = [orjson.dumps({"i": i}) for i in range(6)]
    recs = [
        (0, BASE, None, good[0]), (0, BASE + 1, None, b"not json {"), (0, BASE + 2, None, good[1]),
        (1, BASE, None, good[2]), (1, BASE + 1, None, b'{"pretty":\n  true}'), (1, BASE + 2, None, b"\xff\xfe"),
        (1, BASE + 3, None, good[3]),
    ]  # fmt: skip

    async def setup() -> None:
        await create_topic(kafka_bootstrap, topic, 2)
        await produce_at(kafka_bootstrap, topic, recs)

    asyncio.run(setup())
    out = tmp_path / "out.ndjson"
    r = logtide("replay", "--bootstrap", kafka_bootstrap, "--topic", topic, "--from", str(BASE), "--to",
                str(BASE + 10), "--output", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    lines = out.read_bytes().splitlines()
    assert sorted(lines) == sorted([*good[:4], b'{"pretty":true}'])
    assert "2 malformed (not JSON) skipped" in r.stderr.decode()


def test_into_topic_keeps_keys_and_timestamps(spread_topic: str, kafka_bootstrap: str) -> None:
    target = f"replay-into-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topic(kafka_bootstrap, target, 4))
    from_ms, to_ms = RANGES["inside"]
    r = logtide("replay", "--bootstrap", kafka_bootstrap, "--topic", spread_topic, "--from", str(from_ms),
                "--to", str(to_ms), "--into-topic", target)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()

    async def read_all() -> list[tuple[int, bytes | None, int, bytes]]:
        from aiokafka import AIOKafkaConsumer

        c = AIOKafkaConsumer(target, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             group_id=None, enable_auto_commit=False)  # fmt: skip
        await c.start()
        try:
            got: list[tuple[int, bytes | None, int, bytes]] = []
            batch = await c.getmany(timeout_ms=3000)
            while batch:
                got += [(m.partition, m.key, m.timestamp, m.value) for ms in batch.values() for m in ms]
                batch = await c.getmany(timeout_ms=1000)
            return got
        finally:
            await c.stop()

    got = asyncio.run(read_all())
    want = [(p, k, ts, v) for p, ts, k, v in DATA if from_ms <= ts < to_ms]
    assert sorted(got) == sorted(want)


def test_into_unknown_topic_is_an_error(spread_topic: str, kafka_bootstrap: str) -> None:
    target = f"replay-into-missing-{uuid.uuid4().hex[:8]}"
    r = logtide("replay", "--bootstrap", kafka_bootstrap, "--topic", spread_topic, "--from", "0", "--to",
                str(BASE + HOUR), "--into-topic", target)  # fmt: skip
    assert r.returncode == 1
    assert target in r.stderr.decode()


def test_ctrl_c_then_resume_gives_every_record_once(spread_topic: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    out = tmp_path / "out.ndjson"
    from_ms, to_ms = RANGES["all"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "logtide.cli", "replay", "--bootstrap", kafka_bootstrap, "--topic", spread_topic,
         "--from", str(from_ms), "--to", str(to_ms), "--output", str(out), "--max-rate", "10"],
        stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while (not out.exists() or out.stat().st_size == 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    text = err.decode()
    assert proc.returncode == 130, text
    first = out.read_bytes().splitlines()
    assert 0 < len(first) < len(DATA), text
    m = re.search(r"--resume (\S+)", text)
    assert m, text
    assert "last record timestamp 2026-01-01T" in text
    r = logtide("replay", "--bootstrap", kafka_bootstrap, "--resume", m.group(1), "--output", str(out))
    assert r.returncode == 0, r.stderr.decode()
    lines = out.read_bytes().splitlines()
    assert len(lines) == len(set(lines)) == len(DATA)
    assert sorted(lines) == sorted(v for *_, v in DATA)


def test_by_event_time_finds_backfilled_history(kafka_bootstrap: str) -> None:
    """Old log lines shipped today: the record times are now, the events' own times are last year."""
    topic = f"replay-evt-{uuid.uuid4().hex[:8]}"
    sent = int(time.time() * 1000) - 60_000  # shipped today, months later
    recs = []
    for i in range(30):
        event_ts = f"2026-01-01T{i // 6:02d}:{(i % 6) * 10:02d}:00Z"
        recs.append((i % 2, sent + i, None, orjson.dumps({"@timestamp": event_ts, "i": i})))
    recs.append((0, sent + 100, None, b'{"message": "no time"}'))

    async def setup() -> None:
        await create_topic(kafka_bootstrap, topic, 2)
        await produce_at(kafka_bootstrap, topic, recs)

    asyncio.run(setup())
    args = ["replay", "--bootstrap", kafka_bootstrap, "--topic", topic, "--from", "2026-01-01T01:00:00Z",
            "--to", "2026-01-01T03:00:00Z", "--output", "-"]  # fmt: skip
    by_record = logtide(*args)
    assert by_record.returncode == 0 and by_record.stdout == b""
    by_event = logtide(*args, "--by", "event-time", "--margin", "all")
    assert by_event.returncode == 0, by_event.stderr.decode()
    got = sorted(orjson.loads(line)["i"] for line in by_event.stdout.splitlines())
    assert got == list(range(6, 18))
    assert "1 without a readable @timestamp" in by_event.stderr.decode()
    # a margin too small to cover the shipping delay finds nothing, and says so
    short = logtide(*args, "--by", "event-time", "--margin", "1h")
    assert short.returncode == 0 and short.stdout == b""


def test_follow_waits_for_records_until_to(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = f"replay-follow-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topic(kafka_bootstrap, topic, 2))
    now = int(time.time() * 1000)
    to_ms = now + 8_000
    out = tmp_path / "out.ndjson"
    proc = subprocess.Popen(
        [sys.executable, "-m", "logtide.cli", "replay", "--bootstrap", kafka_bootstrap, "--topic", topic,
         "--from", str(now), "--to", str(to_ms), "--output", str(out), "--follow"],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(2)
    assert proc.poll() is None, "with --follow it waits for records"
    recs = [(0, now + 1000, None, b'{"n":1}'), (1, now + 2000, None, b'{"n":2}'),
            (0, to_ms, None, b'{"n":3}'), (1, to_ms + 5, None, b'{"n":4}')]  # fmt: skip
    asyncio.run(produce_at(kafka_bootstrap, topic, recs))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert sorted(out.read_bytes().splitlines()) == [b'{"n":1}', b'{"n":2}']


def test_out_of_order_timestamps_inside_the_range_are_filtered_exactly(kafka_bootstrap: str) -> None:
    """A producer that stamps out of order: inside the offsets Kafka's time index gives, a record whose
    timestamp is outside [from, to) is left out (kcat's offset range keeps it)."""
    topic = f"replay-ooo-{uuid.uuid4().hex[:8]}"
    stamps = [100, 200, 150, 50, 300]
    recs = [(0, BASE + t, None, orjson.dumps({"t": t})) for t in stamps]

    async def setup() -> None:
        await create_topic(kafka_bootstrap, topic, 1)
        await produce_at(kafka_bootstrap, topic, recs)

    asyncio.run(setup())
    r = logtide("replay", "--bootstrap", kafka_bootstrap, "--topic", topic, "--from", str(BASE + 120), "--to",
                str(BASE + 250), "--output", "-")  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    assert [orjson.loads(line)["t"] for line in r.stdout.splitlines()] == [200, 150]
    assert "1 out-of-order records outside the range skipped" in r.stderr.decode()
    kcat = [orjson.loads(line)["t"] for line in kcat_range(kafka_bootstrap, topic, BASE + 120, BASE + 250)]
    assert kcat == [200, 150, 50]
