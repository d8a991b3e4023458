"""`logtide replay --process`: a range of raw logs through the streams operators again, from the real
local Kafka. The reference is the operators folded point by point over the same input, the reference
the live Faust worker is held to in tests/streams/test_faust_integration.py; the replay must give the
same anomalies (same ids), whichever partitions the records sit on. With Elasticsearch as the sink,
two replays of the same range store every document once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest
from logtide.schemas import Topics
from logtide.streams.config import StreamsConfig

from logtide.config import parse_config
from logtide.replay import Window
from logtide.replay_command import run_replay
from logtide.replay_sinks import ProcessSink
from tests.replay.kafka_data import create_topic, produce_at
from tests.streams.recount import closers, expected, make_logs, streams_cfg, t_base
from tests.streams.zdetector import register

pytestmark = pytest.mark.integration
register()


def read(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


async def test_process_reproduces_the_reference_anomalies_and_backfills_es_once(
    kafka_bootstrap: str, es_url: str, unique: str, tmp_path: Path
) -> None:
    prefix = f"rp{unique}."
    topics = Topics(prefix)
    sc = streams_cfg(f"rp{unique}")
    cfg = parse_config({"kafka": {"bootstrap_servers": [kafka_bootstrap]}, "topics": {"prefix": prefix},
                        "streams": sc})  # fmt: skip
    t0 = t_base()
    data = make_logs(t0, 0, 1800, incident=(1200, 1260)) + closers(t0, 1830)
    want_aggs, want_anoms = expected(StreamsConfig.model_validate(sc), data)
    assert want_anoms, "the reference sees the incident"

    # as a shipper sends them: record time a little after the event time, one partition per service
    part = {b"api": 0, b"web": 2}
    recs = []
    for k, v in data:
        ts = int(datetime.fromisoformat(orjson.loads(v)["@timestamp"]).timestamp() * 1000) + 150
        recs.append((part[k], ts, k, v))
    bad_ts = recs[100][1]
    recs.insert(101, (0, bad_ts, None, b"{not json"))
    await create_topic(kafka_bootstrap, topics.logs_raw, 4)
    await produce_at(kafka_bootstrap, topics.logs_raw, recs)

    from logtide.sinks.config import ElasticsearchConfig

    from logtide.replay_sinks import elasticsearch_writer

    es_cfg = ElasticsearchConfig(hosts=[es_url], index_prefix=f"rp{unique}", request_timeout_s=60)
    window = Window(int((t0 - timedelta(minutes=1)).timestamp() * 1000), int((t0 + timedelta(hours=1)).timestamp() * 1000))
    for run in ("first", "second"):
        es_write, client = await elasticsearch_writer(cfg, es_cfg)
        try:
            sink = ProcessSink(cfg, tmp_path / run, f"replay-{run}", metrics=False, topic=topics.logs_raw,
                               es_write=es_write)  # fmt: skip
            res = await run_replay(cfg, topics.logs_raw, window, sink, progress=False, install_signals=False)
        finally:
            await client.close()
        assert res["selected"] == len(recs)
        anoms = read(tmp_path / run / "anomalies.ndjson")
        assert {a["event"]["id"] for a in anoms} == {a.event.id for a in want_anoms}
        assert {a["labels"]["replay"] for a in anoms} == {f"replay-{run}"}
        assert all(a["service"]["name"] == "api" for a in anoms)  # service at its ECS place
        aggs = {a["event"]["id"]: a for a in read(tmp_path / run / "aggregates.ndjson")}
        assert set(want_aggs) <= set(aggs)  # plus the windows still open at the end, closed by the replay
        assert all(aggs[i]["stats"]["count"] == w["stats"]["count"] for i, w in want_aggs.items())
        dead = read(tmp_path / run / "deadletter.ndjson")
        assert [d["error"]["type"] for d in dead] == ["invalid_json"]
        assert (dead[0]["source"]["partition"], dead[0]["source"]["offset"]) == (0, 51)  # its place in Kafka

    from elasticsearch import AsyncElasticsearch

    es = AsyncElasticsearch(es_url)
    try:
        await es.indices.refresh(index=f"rp{unique}-*")
        got = await es.count(index=f"rp{unique}-anomalies-*")
        assert got["count"] == len(want_anoms)  # twice replayed, stored once
        n_aggs = len(read(tmp_path / "second" / "aggregates.ndjson"))
        assert (await es.count(index=f"rp{unique}-metrics-agg-*"))["count"] == n_aggs
    finally:
        await es.indices.delete(index=f"rp{unique}-*", ignore_unavailable=True)
        await es.close()


def test_process_cli_names_the_replay_and_backfills_clickhouse_once(kafka_bootstrap: str, unique: str,
                                                                     tmp_path: Path) -> None:  # fmt: skip
    """The command line path: --process writes under --data-dir, says what it did; run twice into the
    same embedded ClickHouse, each document is there once."""
    import subprocess
    import sys

    topic = f"rpc{unique}.logs.raw"
    asyncio.run(create_topic(kafka_bootstrap, topic, 1))
    k, v = make_logs(t_base(), 0, 2, None)[0]
    asyncio.run(produce_at(kafka_bootstrap, topic, [(0, 5_000, k, v), (0, 6_000, None, b"oops")]))
    for run in ("a", "b"):
        r = subprocess.run([sys.executable, "-m", "logtide.cli", "replay", "--bootstrap", kafka_bootstrap, "--topic",
                            topic, "--from", "0", "--to", "10000", "--process", "--data-dir", str(tmp_path / run),
                            "--replay-id", "what-if-1", "--clickhouse-path", str(tmp_path / "ch")],
                           check=False, capture_output=True, timeout=180)  # fmt: skip
        assert r.returncode == 0, r.stderr.decode()
        err = r.stderr.decode()
        assert "2 records processed (replay id what-if-1): 1 events" in err and "1 dead letters" in err
        assert len(read(tmp_path / run / "enriched.ndjson")) == 1
    from logtide.sinks.clickhouse_sink import ChdbBackend

    backend = ChdbBackend(tmp_path / "ch")
    try:
        logs = backend.query_rows("SELECT count() AS n FROM logtide.logs FINAL")
        dead = backend.query_rows("SELECT count() AS n FROM logtide.deadletter FINAL")
    finally:
        backend.close()
    assert int(logs[0]["n"]) == 1 and int(dead[0]["n"]) == 1


async def test_process_metric_samples(kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    """A metrics topic is read as metric samples (the embedded runner's metric path): every sample in
    the range lands in exactly one tumbling window."""
    prefix = f"rpm{unique}."
    topics = Topics(prefix)
    cfg = parse_config({"kafka": {"bootstrap_servers": [kafka_bootstrap]}, "topics": {"prefix": prefix},
                        "streams": {"window": {"size_seconds": 60, "group_by": ["host"]}}})  # fmt: skip
    t0 = t_base()
    recs = []
    for i in range(60):
        ts = t0 + timedelta(seconds=10 * i)
        doc = {"@timestamp": ts.isoformat(), "metric": {"name": "system.cpu.pct", "value": 0.4 + (i % 5) / 100},
               "host": {"name": "web-1"}, "event": {"id": f"m{i}", "kind": "metric"},
               "logtide": {"schema": "metric_sample"}}  # fmt: skip
        recs.append((i % 2, int(ts.timestamp() * 1000) + 50, b"web-1", orjson.dumps(doc)))
    await create_topic(kafka_bootstrap, topics.metrics_raw, 2)
    await produce_at(kafka_bootstrap, topics.metrics_raw, recs)
    sink = ProcessSink(cfg, tmp_path / "out", "m", metrics=True, topic=topics.metrics_raw)
    window = Window(int(t0.timestamp() * 1000), int((t0 + timedelta(hours=1)).timestamp() * 1000))
    res = await run_replay(cfg, topics.metrics_raw, window, sink, progress=False, install_signals=False)
    assert res["selected"] == 60
    aggs = [a for a in read(tmp_path / "out" / "aggregates.ndjson") if "cpu" in a["series"]["metric"]]
    assert aggs and sum(a["stats"]["count"] for a in aggs) == 60
    assert read(tmp_path / "out" / "deadletter.ndjson") == []


async def test_state_from_a_previous_run_continues_its_detectors(kafka_bootstrap: str, unique: str,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    """Replaying [t0, cut) and then [cut, end) from the first run's saved state gives the anomalies of
    one replay of [t0, end); started fresh at the cut, the detectors are still warming up and miss the
    incident. Other settings are refused."""
    prefix = f"rps{unique}."
    topics = Topics(prefix)
    sc = streams_cfg(f"rps{unique}")
    cfg = parse_config({"kafka": {"bootstrap_servers": [kafka_bootstrap]}, "topics": {"prefix": prefix},
                        "streams": sc})  # fmt: skip
    t0 = t_base()
    data = make_logs(t0, 0, 1800, incident=(1200, 1260)) + closers(t0, 1830)
    recs = [({b"api": 0, b"web": 1}[k], int(datetime.fromisoformat(orjson.loads(v)["@timestamp"]).timestamp() * 1000),
             k, v) for k, v in data]  # fmt: skip
    await create_topic(kafka_bootstrap, topics.logs_raw, 2)
    await produce_at(kafka_bootstrap, topics.logs_raw, recs)
    ms = lambda s: int((t0 + timedelta(seconds=s)).timestamp() * 1000)  # noqa: E731
    start, cut, end = ms(-60), ms(1100), ms(3600)

    async def run(name: str, lo: int, hi: int, state_from: Path | None = None) -> set[str]:
        sink = ProcessSink(cfg, tmp_path / name, name, metrics=False, topic=topics.logs_raw, state_from=state_from)
        await run_replay(cfg, topics.logs_raw, Window(lo, hi), sink, progress=False, install_signals=False)
        return {a["event"]["id"] for a in read(tmp_path / name / "anomalies.ndjson")}

    whole = await run("whole", start, end)
    first = await run("first", start, cut)
    second = await run("second", cut, end, state_from=tmp_path / "first")
    fresh = await run("fresh", cut, end)
    incident = {a["event"]["id"] for a in read(tmp_path / "whole" / "anomalies.ndjson")
                if a["window"]["start"] >= (t0 + timedelta(seconds=1200)).isoformat()}  # fmt: skip
    assert incident, "the whole replay sees the incident"
    assert first | second == whole
    assert not incident & fresh, "fresh detectors at the cut are still warming up"

    other = parse_config({**cfg.model_dump(mode="json", exclude_none=True),
                          "streams": {**sc, "window": {**sc["window"], "size_seconds": 20}}})  # fmt: skip
    import click

    with pytest.raises(click.ClickException, match="other window, derive or detect settings"):
        ProcessSink(other, tmp_path / "x", "x", metrics=False, topic=topics.logs_raw, state_from=tmp_path / "first")


def test_ctrl_c_then_resume_with_state_gives_the_whole_replays_anomalies(kafka_bootstrap: str, unique: str,
                                                                         tmp_path: Path) -> None:  # fmt: skip
    """Ctrl-C during --process keeps the open windows in the saved state (nothing half-closed is
    emitted); `--resume TOKEN --state-from` the same data directory finishes with exactly the anomalies
    of one uninterrupted replay."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    import yaml

    prefix = f"rpr{unique}."
    topics = Topics(prefix)
    sc = streams_cfg(f"rpr{unique}")
    cfg_doc = {"kafka": {"bootstrap_servers": [kafka_bootstrap]}, "topics": {"prefix": prefix}, "streams": sc}
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg_doc))
    cfg = parse_config(cfg_doc)
    t0 = t_base()
    data = make_logs(t0, 0, 1500, incident=(1200, 1260)) + closers(t0, 1530)
    recs = [({b"api": 0, b"web": 1}[k], int(datetime.fromisoformat(orjson.loads(v)["@timestamp"]).timestamp() * 1000),
             k, v) for k, v in data]  # fmt: skip
    asyncio.run(create_topic(kafka_bootstrap, topics.logs_raw, 2))
    asyncio.run(produce_at(kafka_bootstrap, topics.logs_raw, recs))
    lo, hi = str(int((t0 - timedelta(minutes=1)).timestamp() * 1000)), str(int((t0 + timedelta(hours=1)).timestamp() * 1000))

    whole_sink = ProcessSink(cfg, tmp_path / "whole", "w", metrics=False, topic=topics.logs_raw)
    asyncio.run(run_replay(cfg, topics.logs_raw, Window(int(lo), int(hi)), whole_sink, progress=False,
                           install_signals=False))  # fmt: skip
    whole = {a["event"]["id"] for a in read(tmp_path / "whole" / "anomalies.ndjson")}
    assert whole

    root = Path(__file__).resolve().parents[2]
    cli = [sys.executable, "-c", "from tests.streams.zdetector import register; register(); "
           "from logtide.cli import main; main()", "replay", "--config", str(cfg_path)]  # fmt: skip
    out = tmp_path / "run"
    proc = subprocess.Popen([*cli, "--topic", topics.logs_raw, "--from", lo, "--to", hi, "--process", "--data-dir",
                             str(out), "--max-rate", "4000"], cwd=root, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    # Ctrl-C once the replay is reading (its first progress line), not while Python is still importing:
    # click turns a KeyboardInterrupt before the replay's own handler into "Aborted!" and exit 1.
    assert proc.stderr is not None
    head = b""
    while b"replay: started" not in head:
        line = proc.stderr.readline()
        assert line, f"the replay ended before it started reading: {head.decode()}"
        head += line
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    err = head + rest
    assert proc.returncode == 130, err.decode()
    token = re.search(r"--resume (\S+)", err.decode())
    assert token, err.decode()
    r = subprocess.run([*cli, "--resume", token.group(1), "--process", "--data-dir", str(out), "--state-from", str(out)],
                       cwd=root, capture_output=True, timeout=300, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    got = read(out / "anomalies.ndjson")
    assert {a["event"]["id"] for a in got} == whole
    assert len(got) == len(whole)  # none twice
