"""`logtide archive`: closed days from the real engine (chdb) into zstd Parquet with a manifest, in a
local directory and in an S3-compatible store (moto's server mode on loopback, standing in for
MinIO); counts and checksums round-trip, re-runs add nothing, damage is found by --verify."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from logtide.schemas import decode, to_document
from logtide.sinks import archive as arch
from logtide.sinks.clickhouse_sink import ChdbBackend, ClickHouseSink

from logtide.cli import main
from tests.s3_server import S3Server
from tests.samples import samples

TODAY = datetime(2026, 11, 27, tzinfo=UTC)
PER_DAY = {"2026-11-24": 40, "2026-11-25": 25, "2026-11-26": 60, "2026-11-27": 7}  # the 27th is open


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("chdb")
    by_kind = {m.KIND: to_document(decode(orjson.dumps(d), m)) for m, d in samples().items()}
    docs = []
    for day, n in PER_DAY.items():
        for i in range(n):
            t = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(minutes=17 * i)
            stamp = t.isoformat().replace("+00:00", "Z")
            log = orjson.loads(orjson.dumps(by_kind["log_event"]))
            log["event"]["id"], log["@timestamp"] = f"log-{day}-{i}", stamp
            docs.append(log)
            if i % 5 == 0:
                anomaly = orjson.loads(orjson.dumps(by_kind["anomaly"]))
                anomaly["event"]["id"], anomaly["@timestamp"] = f"an-{day}-{i}", stamp
                docs.append(anomaly)
    backend = ChdbBackend(path)
    sink = ClickHouseSink(backend)
    assert sink.write(docs) == []
    assert sink.write(docs[:30]) == []  # a replay: archived once all the same (FINAL)
    backend.close()
    return path


def _run(*args: str) -> str:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def _check_round_trip(store: arch.ObjectStore) -> None:
    files = arch.read_manifest(store)
    closed = [d for d in PER_DAY if d < TODAY.date().isoformat()]
    assert sorted((f.table, f.day) for f in files) == sorted(
        [("logs", d) for d in closed] + [("anomalies", d) for d in closed]
    )
    for f in files:
        data = store.get(f.path)
        assert data is not None and hashlib.sha256(data).hexdigest() == f.sha256 and len(data) == f.bytes
        expected = PER_DAY[f.day] if f.table == "logs" else len(range(0, PER_DAY[f.day], 5))
        assert f.rows == expected == arch.parquet_rows(data), f
        assert f.min_ts.startswith(f.day) and f.max_ts.startswith(f.day)
        assert data[:4] == b"PAR1"
    assert arch.verify(store) == []


def test_archive_to_a_local_directory_round_trips(engine: Path, tmp_path: Path) -> None:
    out = _run("archive", "--clickhouse-path", str(engine), "--dest", str(tmp_path / "arch"), "--before", "2026-11-27")
    assert "archived 6 new files" in out
    store = arch.LocalStore(tmp_path / "arch")
    _check_round_trip(store)
    # zstd inside, and the engine reads the files back with the same rows
    import pyarrow.parquet as pq

    meta = pq.read_metadata(tmp_path / "arch/logs/dt=2026-11-26/logs-2026-11-26.parquet")
    assert meta.row_group(0).column(0).compression == "ZSTD"
    backend = ChdbBackend(tmp_path / "reader")
    try:
        rows = backend.query_rows(
            f"SELECT count() AS n, uniqExact(id) AS ids FROM file('{tmp_path}/arch/logs/*/*.parquet', Parquet)"
        )
        assert rows == [{"n": 125, "ids": 125}]
    finally:
        backend.close()
    again = _run("archive", "--clickhouse-path", str(engine), "--dest", str(tmp_path / "arch"), "--before", "2026-11-27")
    assert "archived 0 new files" in again  # closed days are archived once
    assert "6 files, 150 rows: OK" in _run("archive", "--dest", str(tmp_path / "arch"), "--verify")

    target = tmp_path / "arch/anomalies/dt=2026-11-25/anomalies-2026-11-25.parquet"
    target.write_bytes(target.read_bytes()[:-10] + b"0123456789")
    res = CliRunner().invoke(main, ["archive", "--dest", str(tmp_path / "arch"), "--verify"])
    assert res.exit_code == 1 and "checksum differs" in res.output


def test_archive_to_an_s3_compatible_store_round_trips(engine: Path, tmp_path: Path, monkeypatch) -> None:
    server = S3Server(tmp_path / "moto.log")
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        store = arch.S3Store("s3://logtide-archive/prod", endpoint_url=server.url)
        store.client.make_bucket("logtide-archive")
        out = _run(
            "archive", "--clickhouse-path", str(engine), "--dest", "s3://logtide-archive/prod",
            "--endpoint-url", server.url, "--before", "2026-11-27",
        )  # fmt: skip
        assert "archived 6 new files" in out
        _check_round_trip(store)
        keys = sorted(o.object_name for o in store.client.list_objects("logtide-archive", recursive=True))
        assert "prod/manifest.json" in keys and "prod/logs/dt=2026-11-24/logs-2026-11-24.parquet" in keys
        verified = _run("archive", "--dest", "s3://logtide-archive/prod", "--endpoint-url", server.url, "--verify")
        assert "6 files, 150 rows: OK" in verified
    finally:
        server.stop()
