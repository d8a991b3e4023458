"""The shipper against the real local Kafka: end to end, restarts, rotation styles, bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from logtide.schemas import LogEvent

from tests.shippers.conftest import running_shipper, ship_once, shipper_config, wait_acked
from tests.shippers.helpers import ACCESS, LOGHUB, consume, lines, wait_for

pytestmark = pytest.mark.integration


def write_lines(path: Path, texts: list[str], mode: str = "a") -> None:
    with open(path, mode, encoding="utf-8") as f:
        for t in texts:
            f.write(t + "\n")


def messages(events: list[dict]) -> Counter[str]:
    return Counter(e["message"] for e in events)


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logtide.cli", "ship", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def test_cli_once_real_access_and_syslog(tmp_path: Path, kafka_bootstrap: str, topic: str) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copy(ACCESS, logs / "access.log")
    shutil.copy(LOGHUB / "Linux_2k.log", logs / "syslog")
    cfg = tmp_path / "shipper.yaml"
    cfg.write_text(
        f"""
kafka:
  bootstrap_servers: ["{kafka_bootstrap}"]
shipper:
  state_dir: {tmp_path / "state"}
  topic: {topic}
  host_name: ci-host
  inputs:
    - id: nginx
      paths: ["{logs}/access.log"]
      parser: {{type: access_log}}
      start_position: beginning
      labels: {{service: web}}
    - id: syslog
      paths: ["{logs}/syslog"]
      parser: {{type: syslog, timezone: UTC}}
      start_position: beginning
"""
    )
    res = _cli("--config", str(cfg), "--once")
    assert res.returncode == 0, res.stderr
    events = await consume(kafka_bootstrap, topic, 4000)
    assert len(events) == 4000
    for ev in events:
        ev.pop("_partition"), ev.pop("_key")
        LogEvent.model_validate(ev)
    by_ds = Counter(e["event"]["dataset"] for e in events)
    assert by_ds == {"nginx": 2000, "syslog": 2000}
    assert not [e for e in events if "parse_failure" in e["logtide"]["flags"]]
    assert len({e["event"]["id"] for e in events}) == 4000
    access_msgs = [e["message"] for e in events if e["event"]["dataset"] == "nginx"]
    assert access_msgs == lines(ACCESS)  # one file, one key, one partition: order kept
    # a second run ships nothing new: the registry holds the acknowledged offsets
    res = _cli("--config", str(cfg), "--once")
    assert res.returncode == 0, res.stderr
    assert len(await consume(kafka_bootstrap, topic, 4000, idle_s=2)) == 4000


async def test_flags_only_cli_and_one_partition_per_file(
    tmp_path: Path, kafka_bootstrap: str, topic: str
) -> None:
    for i in range(6):
        write_lines(tmp_path / f"f{i}.log", [f"file{i} line{j}" for j in range(300)], "w")
    res = _cli("--path", str(tmp_path / "*.log"), "--bootstrap", kafka_bootstrap, "--topic", topic,
               "--state-dir", str(tmp_path / "st"), "--from-beginning", "--once")  # fmt: skip
    assert res.returncode == 0, res.stderr
    events = await consume(kafka_bootstrap, topic, 1800)
    assert len(events) == 1800
    for i in range(6):
        mine = [e for e in events if e["message"].startswith(f"file{i} ")]
        assert len({e["_partition"] for e in mine}) == 1
        assert [e["message"] for e in mine] == [f"file{i} line{j}" for j in range(300)]
        assert [e["log"]["offset"] for e in mine] == sorted(e["log"]["offset"] for e in mine)


async def test_restart_resumes_at_checkpoint(tmp_path: Path, kafka_bootstrap: str, topic: str) -> None:
    log = tmp_path / "app.log"
    write_lines(log, [f"first {i}" for i in range(1000)])
    cfg = shipper_config(tmp_path, [str(log)])
    await ship_once(cfg, kafka_bootstrap, topic)
    write_lines(log, [f"second {i}" for i in range(500)])
    await ship_once(cfg, kafka_bootstrap, topic)
    events = await consume(kafka_bootstrap, topic, 1500)
    assert sorted(messages(events).elements()) == sorted([f"first {i}" for i in range(1000)]
                                                          + [f"second {i}" for i in range(500)])  # fmt: skip
    ids = {e["event"]["id"] for e in events}
    assert len(ids) == 1500


async def test_start_position_end_and_new_files_from_beginning(
    tmp_path: Path, kafka_bootstrap: str, topic: str
) -> None:
    old = tmp_path / "old.log"
    write_lines(old, ["before start"] * 10)
    cfg = shipper_config(tmp_path, [str(tmp_path / "*.log")], input={"start_position": "end"})
    async with running_shipper(cfg, kafka_bootstrap, topic) as shipper:
        write_lines(old, ["after start"])
        new = tmp_path / "new.log"
        write_lines(new, ["new file line 1", "new file line 2"])
        assert await wait_for(lambda: len(shipper.states) == 2)
        assert await wait_acked(shipper, old) and await wait_acked(shipper, new)
    got = messages(await consume(kafka_bootstrap, topic, 3))
    assert got == {"after start": 1, "new file line 1": 1, "new file line 2": 1}


async def test_rename_and_create_rotation(tmp_path: Path, kafka_bootstrap: str, topic: str) -> None:
    log = tmp_path / "app.log"
    cfg = shipper_config(tmp_path, [str(tmp_path / "app.log*")])
    expected = []
    async with running_shipper(cfg, kafka_bootstrap, topic) as shipper:
        writer = open(log, "a", encoding="utf-8")  # noqa: SIM115 - the writer keeps its fd across the rename
        for gen in range(3):
            for i in range(400):
                writer.write(f"gen{gen} {i}\n")
                expected.append(f"gen{gen} {i}")
            writer.flush()
            # logrotate's default: rename, the application writes a little more to the old fd, then reopens
            for k in range(3, 0, -1):
                if (tmp_path / f"app.log.{k}").exists():
                    os.rename(tmp_path / f"app.log.{k}", tmp_path / f"app.log.{k + 1}")
            os.rename(log, tmp_path / "app.log.1")
            for i in range(50):
                writer.write(f"gen{gen} late {i}\n")
                expected.append(f"gen{gen} late {i}")
            writer.flush()
            writer.close()
            writer = open(log, "a", encoding="utf-8")  # noqa: SIM115
        writer.write("final\n")
        expected.append("final")
        writer.close()
        for p in tmp_path.glob("app.log*"):
            assert await wait_acked(shipper, p)
    got = messages(await consume(kafka_bootstrap, topic, len(expected)))
    assert set(got) == set(expected)
    assert all(n == 1 for n in got.values())


async def test_copytruncate_rotation(tmp_path: Path, kafka_bootstrap: str, topic: str) -> None:
    log = tmp_path / "app.log"
    cfg = shipper_config(tmp_path, [str(tmp_path / "app.log*")])
    expected: list[str] = []
    async with running_shipper(cfg, kafka_bootstrap, topic) as shipper:
        for gen in range(3):
            batch = [f"ct{gen} {i} " + "x" * 40 for i in range(500)]
            write_lines(log, batch)
            expected += batch
            if gen == 1:
                assert await wait_acked(shipper, log)
            # copytruncate: copy, then truncate in place (the writer keeps appending with O_APPEND)
            shutil.copyfile(log, tmp_path / f"app.log.{gen + 1}")
            os.truncate(log, 0)
        tail = [f"after {i}" for i in range(100)]
        write_lines(log, tail)
        expected += tail
        for p in tmp_path.glob("app.log*"):
            assert await wait_acked(shipper, p)
    got = messages(await consume(kafka_bootstrap, topic, len(expected)))
    missing = set(expected) - set(got)
    assert not missing, f"{len(missing)} lines lost, e.g. {sorted(missing)[:3]}"
    assert set(got) <= set(expected)


async def test_truncation_to_zero(tmp_path: Path, kafka_bootstrap: str, topic: str) -> None:
    log = tmp_path / "t.log"
    cfg = shipper_config(tmp_path, [str(log)])
    async with running_shipper(cfg, kafka_bootstrap, topic) as shipper:
        write_lines(log, [f"before {i}" for i in range(300)])
        assert await wait_acked(shipper, log)
        os.truncate(log, 0)
        write_lines(log, [f"after {i}" for i in range(10)])  # shorter than before: detected by size
        assert await wait_for(
            lambda: shipper.metrics.rotations.labels(str(log), "truncated")._value.get() >= 1
        )
        assert await wait_acked(shipper, log)
    events = await consume(kafka_bootstrap, topic, 310)
    got = messages(events)
    assert set(got) == {f"before {i}" for i in range(300)} | {f"after {i}" for i in range(10)}
    # the new content's ids differ from the old content's at the same offsets (no false dedup downstream)
    assert len({e["event"]["id"] for e in events}) == len(events)


async def test_delete_while_open_finishes_then_releases(
    tmp_path: Path, kafka_bootstrap: str, topic: str
) -> None:
    log = tmp_path / "d.log"
    cfg = shipper_config(tmp_path, [str(log)], read_chunk_bytes=4096, max_inflight_bytes=1 << 20)
    async with running_shipper(cfg, kafka_bootstrap, topic) as shipper:
        write_lines(log, [f"one {i}" for i in range(100)])
        assert await wait_for(lambda: len(shipper.active) == 1)
        key = next(iter(shipper.active))
        # more than the harvester can have read yet, then delete while it holds the file open
        write_lines(log, [f"two {i} " + "y" * 100 for i in range(5000)])
        os.unlink(log)
        assert await wait_for(lambda: key not in shipper.active and key not in shipper.states, 60)
        assert shipper.metrics.open_files._value.get() == 0
    got = messages(await consume(kafka_bootstrap, topic, 5100))
    assert set(got) == {f"one {i}" for i in range(100)} | {f"two {i} " + "y" * 100 for i in range(5000)}


async def test_inode_reuse_does_not_resume_at_old_offset(
    tmp_path: Path, kafka_bootstrap: str, topic: str
) -> None:
    from logtide.shippers.checkpoint_store import CheckpointStore, FileState
    from logtide.shippers.reconcile import head_hash

    log = tmp_path / "r.log"
    write_lines(log, [f"new file {i}" for i in range(50)])
    st = os.stat(log)
    # The registry remembers an older file with this very device and inode, read far past this size
    # of content that started differently: exactly what a deleted-then-reused inode leaves behind.
    store = CheckpointStore(tmp_path / "state")
    key = f"{st.st_dev}:{st.st_ino}"
    old_head = b"old content that was here before\n" * 40
    store.save({key: FileState(key=key, path=str(log), dev=st.st_dev, ino=st.st_ino, head_len=1024,
                               head_hash=head_hash(old_head[:1024]), fp_id="old", offset=200)})  # fmt: skip
    await ship_once(shipper_config(tmp_path, [str(log)]), kafka_bootstrap, topic)
    got = messages(await consume(kafka_bootstrap, topic, 50))
    assert set(got) == {f"new file {i}" for i in range(50)}


async def test_real_inode_reuse(tmp_path: Path, kafka_bootstrap: str, topic: str) -> None:
    """Delete and recreate until the filesystem hands out the same inode (ext4, tmpfs do quickly)."""
    log = tmp_path / "reuse.log"
    cfg = shipper_config(tmp_path, [str(log)])
    write_lines(log, [f"A{i} " + "a" * 60 for i in range(40)], "w")
    ino = os.stat(log).st_ino
    await ship_once(cfg, kafka_bootstrap, topic)
    os.unlink(log)
    for _ in range(5000):  # other processes (Kafka, Elasticsearch) may take a freed inode first
        write_lines(log, ["B short"], "w")
        if os.stat(log).st_ino == ino:
            break
        os.unlink(log)
    else:
        pytest.fail(
            f"the filesystem under {tmp_path} did not hand inode {ino} out again in 5000 tries: this "
            "test needs one that reuses freed inodes (ext4, tmpfs, xfs)"
        )
    write_lines(log, [f"B{i}" for i in range(30)])
    await ship_once(cfg, kafka_bootstrap, topic)
    got = messages(await consume(kafka_bootstrap, topic, 71))
    assert {f"B{i}" for i in range(30)} | {"B short"} <= set(got)


async def test_multiline_java_and_python(tmp_path: Path, kafka_bootstrap: str, topic: str) -> None:
    from tests.shippers.test_multiline import JAVA, PY

    log = tmp_path / "app.log"
    write_lines(log, JAVA + PY, "w")
    cfg = shipper_config(
        tmp_path, [str(log)],
        input={"multiline": {"mode": "start", "pattern": r"^\d{4}-\d{2}-\d{2} ", "flush_timeout_s": 0.3},
               "parser": {"type": "regex", "pattern": r"^(?P<ts>\S+ \S+) (?P<level>[A-Z]+) (?P<message>.*)$",
                          "timestamp_formats": ["%Y-%m-%d %H:%M:%S,%f", "%Y-%m-%d %H:%M:%S"]}},
    )  # fmt: skip
    async with running_shipper(cfg, kafka_bootstrap, topic) as shipper:
        # the last event has no following start line: the flush timeout ships it
        assert await wait_acked(shipper, log)
    events = await consume(kafka_bootstrap, topic, 4)
    assert len(events) == 4
    java = events[0]
    assert java["message"].startswith("[main] c.e.App - request failed\njava.lang.IllegalStateException")
    assert java["message"].endswith("\t... 2 more") and java["log"]["level"] == "error"
    assert events[2]["message"].endswith("ValueError: bad input") and "Traceback" in events[2]["message"]
    assert events[3]["message"] == "restarted" and events[3]["log"]["level"] == "info"


async def test_one_thousand_files(tmp_path: Path, kafka_bootstrap: str, topic: str) -> None:
    d = tmp_path / "many"
    d.mkdir()
    for i in range(1000):
        write_lines(d / f"f{i:04d}.log", [f"f{i} l{j}" for j in range(10)], "w")
    cfg = shipper_config(tmp_path, [str(d / "*.log")], max_open_files=200)
    shipper = await ship_once(cfg, kafka_bootstrap, topic)
    assert len(shipper.states) == 1000
    got = messages(await consume(kafka_bootstrap, topic, 10_000, timeout_s=120))
    assert set(got) == {f"f{i} l{j}" for i in range(1000) for j in range(10)}


async def test_bad_input(tmp_path: Path, kafka_bootstrap: str, topic: str) -> None:
    d = tmp_path / "in"
    d.mkdir()
    (d / "utf8.log").write_bytes(b"ok line\nbad \xff\xfe bytes\n")
    (d / "long.log").write_bytes(b"L" * 100_000 + b"\nshort after long\n")
    (d / "app.bin").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 10 + b"\n")
    (d / "old.log.gz").write_bytes(b"\x1f\x8b\x08\x00 compressed rotated file\n")
    (d / "ts.log").write_text('{"ts": "the 31st of Smarch", "msg": "bad time"}\nnot json at all\n')
    cfg = shipper_config(tmp_path, [str(d / "*")], max_line_bytes=1024)
    from logtide.shippers.config import LogInputConfig

    cfg = cfg.model_copy(update={"inputs": [
        LogInputConfig(paths=[str(d / "ts.log")], parser={"type": "json"}, start_position="beginning"),
        cfg.inputs[0].model_copy(update={"exclude": ["ts.log"]}),
    ]})  # fmt: skip
    shipper = await ship_once(cfg, kafka_bootstrap, topic)
    events = await consume(kafka_bootstrap, topic, 6)
    by_msg = {e["message"]: e for e in events}
    assert len(events) == 6, [e["message"][:30] for e in events]
    assert by_msg["ok line"]["logtide"]["flags"] == []
    bad = by_msg["bad \ufffd\ufffd bytes"]
    assert bad["logtide"]["flags"] == ["invalid_utf8"]
    long = by_msg["L" * 1024]
    assert long["logtide"]["flags"] == ["truncated"]
    assert "short after long" in by_msg
    tsbad = by_msg["bad time"]
    assert "ts_unparsed" in tsbad["logtide"]["flags"] and tsbad["event"]["original"].startswith('{"ts"')
    notjson = by_msg["not json at all"]
    assert (
        "parse_failure" in notjson["logtide"]["flags"] and notjson["event"]["original"] == "not json at all"
    )
    skipped = {s.labels["reason"] for m in shipper.metrics.registry.collect() for s in m.samples
               if m.name == "logtide_shipper_skipped_files" and s.value > 0 and s.name.endswith("_total")}  # fmt: skip
    assert skipped == {"binary", "compressed"}


async def test_vanishing_file_does_not_stop_the_others(
    tmp_path: Path, kafka_bootstrap: str, topic: str
) -> None:
    d = tmp_path / "v"
    d.mkdir()
    cfg = shipper_config(tmp_path, [str(d / "*.log")])
    async with running_shipper(cfg, kafka_bootstrap, topic) as shipper:
        for round_ in range(20):
            p = d / f"gone{round_}.log"
            write_lines(p, ["ephemeral"], "w")
            os.unlink(p)  # may vanish before or after it is opened
            write_lines(d / "stay.log", [f"stay {round_}"])
        assert await wait_acked(shipper, d / "stay.log")
    got = messages(await consume(kafka_bootstrap, topic, 20))
    assert {f"stay {i}" for i in range(20)} <= set(got)


async def test_sigterm_flushes_checkpoints_and_exits(
    tmp_path: Path, kafka_bootstrap: str, topic: str
) -> None:
    import signal

    from logtide.shippers.checkpoint_store import CheckpointStore

    log = tmp_path / "s.log"
    write_lines(log, [f"s {i}" for i in range(20_000)], "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "logtide.cli", "ship", "--path", str(log), "--bootstrap", kafka_bootstrap,
         "--topic", topic, "--state-dir", str(tmp_path / "st"), "--from-beginning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        events = await consume(kafka_bootstrap, topic, 20_000, idle_s=0.5)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        proc.kill()
    assert rc == 0, proc.stderr.read() if proc.stderr else ""
    assert len(events) >= 20_000
    states = CheckpointStore(tmp_path / "st").load()
    assert [s.offset for s in states.values()] == [os.stat(log).st_size]


async def test_own_metrics_endpoint_host_metrics_and_scrape(
    tmp_path: Path, kafka_bootstrap: str, topic: str
) -> None:
    import socket

    import httpx
    from logtide.schemas import MetricSample

    from tests.shippers.helpers import create_topic

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mtopic = topic + "-metrics"
    await create_topic(kafka_bootstrap, mtopic, 1)
    log = tmp_path / "m.log"
    write_lines(log, [f"m {i}" for i in range(100)], "w")
    cfg = shipper_config(
        tmp_path, [str(log)], metrics_listen=f"127.0.0.1:{port}", metrics_topic=mtopic,
        host_metrics={"enabled": True, "interval_s": 0.3, "labels": {"role": "test"}},
        prometheus_scrapes=[{"url": f"http://127.0.0.1:{port}/metrics", "interval_s": 0.3, "job": "self"}],
    )  # fmt: skip
    async with running_shipper(cfg, kafka_bootstrap, topic) as shipper:
        assert await wait_acked(shipper, log)
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        samples = await consume(
            kafka_bootstrap, mtopic, 0,
            until=lambda evs: {"system_load1", "logtide_shipper_lines_read_total"} <= {e["metric"]["name"] for e in evs},
        )  # fmt: skip
    for name in ("logtide_shipper_lines_read_total", "logtide_shipper_bytes_read_total",
                 "logtide_shipper_events_sent_total", "logtide_shipper_bytes_sent_total",
                 "logtide_shipper_batches_total", "logtide_shipper_send_retries_total",
                 "logtide_shipper_parse_failures_total", "logtide_shipper_bytes_behind",
                 "logtide_shipper_checkpoint_age_seconds"):  # fmt: skip
        assert name in text, name
    assert f'logtide_shipper_lines_read_total{{input="{log}"}} 100.0' in text
    names = set()
    for ev in samples:
        ev.pop("_partition"), ev.pop("_key")
        MetricSample.model_validate(ev)
        names.add(ev["metric"]["name"])
    assert {"system_cpu_utilization_ratio", "system_memory_used_bytes", "system_load1",
            "system_network_receive_bytes_total", "system_filesystem_used_bytes", "up"} <= names  # fmt: skip
    assert "logtide_shipper_lines_read_total" in names  # scraped from our own endpoint
    scraped = [e for e in samples if e["metric"]["name"] == "logtide_shipper_lines_read_total"]
    assert scraped[0]["labels"]["job"] == "self" and scraped[0]["metric"]["type"] == "counter"
    assert scraped[0]["labels"]["instance"] == f"127.0.0.1:{port}"
    host = [e for e in samples if e["metric"]["name"] == "system_load1"]
    assert host[0]["labels"] == {"role": "test"} and host[0]["host"]["name"] == "test-host"
