"""`logtide anomalies tail` and `from logtide import subscribe` against the real local Kafka."""

from __future__ import annotations

import asyncio
import re
import select
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from logtide.anomaly_filter import AnomalyFilter, service_of
from tests.replay.anomaly_data import NOW, anomaly_set, as_records, make_anomaly
from tests.replay.kafka_data import create_topic, produce_at

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BASE = NOW - timedelta(hours=3)
ITEMS = anomaly_set(BASE)
EXTRA = [  # a resolve (the field another change adds) and a record that is not an anomaly
    (0, int((BASE + timedelta(minutes=20)).timestamp() * 1000), None,
     orjson.dumps({**orjson.loads(as_records([ITEMS[0]])[0][3]), "status": "resolved"})),
    (1, int((BASE + timedelta(minutes=21)).timestamp() * 1000), None, b"garbage"),
]  # fmt: skip


def logtide(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "logtide.cli", *args], check=False, capture_output=True,
                          timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def prefix(kafka_bootstrap: str) -> str:
    prefix = f"tail-{uuid.uuid4().hex[:8]}."

    async def setup() -> None:
        await create_topic(kafka_bootstrap, prefix + "anomalies", 2)
        await produce_at(kafka_bootstrap, prefix + "anomalies", [*as_records(ITEMS), *EXTRA])

    asyncio.run(setup())
    return prefix


def write_cfg(tmp_path: Path, bootstrap: str, prefix: str) -> str:
    p = tmp_path / "cfg.yaml"
    p.write_text(f"kafka: {{bootstrap_servers: ['{bootstrap}']}}\ntopics: {{prefix: '{prefix}'}}\n")
    return str(p)


def test_json_contract_prints_every_record_and_exits(prefix: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    r = logtide("anomalies", "tail", "--config", write_cfg(tmp_path, kafka_bootstrap, prefix), "--from-beginning",
                "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    docs = [orjson.loads(line) for line in r.stdout.splitlines()]
    want = [orjson.loads(v) for *_, v in as_records(ITEMS)] + [orjson.loads(EXTRA[0][3])]
    assert sorted(docs, key=orjson.dumps) == sorted(want, key=orjson.dumps)
    assert "1 records that are not valid anomalies skipped" in r.stderr.decode()


def test_filters(prefix: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path, kafka_bootstrap, prefix)
    r = logtide("anomalies", "tail", "--config", cfg, "--from-beginning", "--json", "--service", "checkout",
                "--severity", "critical", "--status", "firing")  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    docs = [orjson.loads(line) for line in r.stdout.splitlines()]
    assert len(docs) == 2
    assert {d["service"]["name"] for d in docs} == {"checkout"} and {d["severity"] for d in docs} == {"critical"}
    resolved = logtide("anomalies", "tail", "--config", cfg, "--from-beginning", "--json", "--status", "resolved")
    assert [orjson.loads(line).get("status") for line in resolved.stdout.splitlines()] == ["resolved"]
    warning_up = logtide("anomalies", "tail", "--config", cfg, "--from-beginning", "--json", "--severity", "warning",
                         "--status", "firing")  # fmt: skip
    assert len(warning_up.stdout.splitlines()) == len(ITEMS)


def test_since_and_from(prefix: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path, kafka_bootstrap, prefix)
    start = BASE + timedelta(minutes=5)
    r = logtide("anomalies", "tail", "--config", cfg, "--from", start.isoformat(), "--json", "--status", "firing")
    assert sorted(orjson.loads(line)["@timestamp"] for line in r.stdout.splitlines()) == sorted(
        a.timestamp.isoformat().replace("+00:00", "Z") for _, a in ITEMS if a.timestamp >= start
    )
    assert logtide("anomalies", "tail", "--config", cfg, "--since", "1h", "--json").stdout == b""
    assert len(logtide("anomalies", "tail", "--config", cfg, "--since", "4h", "--json").stdout.splitlines()) == 9


def test_readable_lines_without_colour_when_piped(prefix: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    r = logtide("anomalies", "tail", "--config", write_cfg(tmp_path, kafka_bootstrap, prefix), "--from-beginning",
                "--service", "search", "--status", "firing")  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 4
    both = logtide("anomalies", "tail", "--config", write_cfg(tmp_path, kafka_bootstrap, prefix), "--from-beginning",
                   "--status", "firing").stdout.decode().splitlines()  # fmt: skip
    assert len(both) == len(ITEMS) and both == sorted(both)  # time order across the two partitions
    assert "\x1b[" not in r.stdout.decode()
    assert re.search(r"CRITICAL +log\.error_ratio\{host=web-1,service=search\}  mean=325\.8 vs expected 12\.5 "
                     r"\[10, 15\]  score 0\.90  service=search", lines[0]), lines[0]  # fmt: skip


def test_tail_commits_nothing_and_unknown_topic(kafka_bootstrap: str, tmp_path: Path) -> None:
    r = logtide("anomalies", "tail", "--bootstrap", kafka_bootstrap, "--topic", f"nope-{uuid.uuid4().hex[:6]}")
    assert r.returncode == 1 and "unknown topic" in r.stderr.decode()


def test_filter_core() -> None:
    a = orjson.loads(as_records([(0, make_anomaly("checkout", "warning", NOW))])[0][3])
    assert service_of(a) == "checkout"
    assert service_of({"labels": {"service": "old"}}) == "old"
    assert AnomalyFilter.of("checkout", "warning").matches(a)
    assert not AnomalyFilter.of(["search"]).matches(a)
    assert not AnomalyFilter.of(severity="critical").matches(a)
    assert AnomalyFilter.of(status="firing").matches(a)
    assert not AnomalyFilter.of(status="resolved").matches(a)
    assert not AnomalyFilter().matches([1])
    with pytest.raises(ValueError, match="severity"):
        AnomalyFilter.of(severity="loud")


async def test_subscribe_api(prefix: str, kafka_bootstrap: str) -> None:
    from logtide.schemas import Anomaly

    from logtide import subscribe

    got = []
    async with subscribe(kafka_bootstrap, prefix=prefix, start=BASE, service="checkout", status="firing",
                         follow=False) as sub:  # fmt: skip
        async for a in sub:
            assert isinstance(a, Anomaly)
            got.append(a)
    assert sorted(a.event.id for a in got) == sorted(a.event.id for _, a in ITEMS if a.service.name == "checkout")
    assert sub.skipped == 1  # the record that is not JSON
    from logtide.subscriber import UnknownTopic

    with pytest.raises(UnknownTopic):
        async for _ in subscribe(kafka_bootstrap, prefix=f"nope{uuid.uuid4().hex[:6]}.", follow=False):
            pass
    crit = [a async for a in subscribe(kafka_bootstrap, prefix=prefix, since="4h", severity="critical",
                                       status="firing", follow=False)]  # fmt: skip
    assert sorted(a.event.id for a in crit) == sorted(a.event.id for _, a in ITEMS if a.severity.value == "critical")
    assert crit[0].value == 325.76663876635376  # full precision kept


def test_readme_example_runs_against_the_broker(kafka_bootstrap: str) -> None:
    """The README's subscriber example, run as written (its topic prefix pointed at a test topic)."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- subscriber-example -->\n```python\n(.*?)```", text, re.S)
    assert m, "README has the subscriber example"
    code = m.group(1)
    assert len(code.strip().splitlines()) <= 10
    prefix = f"readme-{uuid.uuid4().hex[:8]}."
    assert 'prefix="logtide."' in code
    code = code.replace('prefix="logtide."', f'prefix="{prefix}"').replace("127.0.0.1:9092", kafka_bootstrap)
    asyncio.run(create_topic(kafka_bootstrap, prefix + "anomalies", 1))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(3)  # subscribed from now on: anomalies produced after this are printed
        a = make_anomaly("checkout", "critical", NOW)
        b = make_anomaly("search", "critical", NOW)  # another service: filtered out by the example
        asyncio.run(produce_at(kafka_bootstrap, prefix + "anomalies", as_records([(0, b), (0, a)])))
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "the example printed nothing within 60 s"
        line = proc.stdout.readline().decode()  # type: ignore[union-attr]
        assert "checkout" in line and "325.8" in line, line
    finally:
        proc.kill()
        proc.wait(10)


def test_follow_prints_new_anomalies_until_ctrl_c(kafka_bootstrap: str) -> None:
    import signal

    topic = f"tailf-{uuid.uuid4().hex[:8]}.anomalies"
    asyncio.run(create_topic(kafka_bootstrap, topic, 2))
    proc = subprocess.Popen([sys.executable, "-m", "logtide.cli", "anomalies", "tail", "--bootstrap", kafka_bootstrap,
                             "--topic", topic, "--follow", "--json", "--severity", "critical"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        time.sleep(3)
        assert proc.poll() is None, "--follow keeps reading at the end of the topic"
        items = [(1, make_anomaly("search", "warning", NOW)), (0, make_anomaly("checkout", "critical", NOW))]
        asyncio.run(produce_at(kafka_bootstrap, topic, as_records(items)))
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "nothing printed within 60 s"
        doc = orjson.loads(proc.stdout.readline())  # type: ignore[union-attr]
        assert doc["service"]["name"] == "checkout"
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        assert rest == b""  # the warning was filtered out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_replay_takes_a_short_topic_name_under_the_prefix(prefix: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    r = logtide("replay", "--config", write_cfg(tmp_path, kafka_bootstrap, prefix), "--topic", "anomalies",
                "--from", "0", "--to", "now", "--output", "-")  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    assert len(r.stdout.splitlines()) == len(ITEMS) + 1  # the resolve too; the record that is not JSON skipped
    assert f"records of {prefix}anomalies" in r.stderr.decode()
