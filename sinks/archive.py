"""`logtide archive`: closed days of logs and anomalies as zstd-compressed Parquet files, in a local
directory or any S3-compatible store (AWS S3, MinIO, ...), with a manifest that says what each file
holds (day, time range, rows, bytes, SHA-256) so a later replay, or a chdb/DuckDB query over the
files, can read them back and check them.

The rows come from the ClickHouse tables (`FINAL`: one row per event id) through the engine's own
Parquet writer; a day is archived once it is closed (before today, UTC) and not yet in the manifest.
Layout: `<table>/dt=YYYY-MM-DD/<table>-YYYY-MM-DD.parquet` and `manifest.json` at the root.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import orjson

log = logging.getLogger("logtide.archive")
TIME_COLUMN = {"logs": "ts", "anomalies": "ts", "metrics_agg": "window_end", "deadletter": "ts"}
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ArchivedFile:
    table: str
    day: str
    path: str
    rows: int
    bytes: int
    sha256: str
    min_ts: str
    max_ts: str
    format: str = "parquet"
    compression: str = "zstd"


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes | None: ...


class LocalStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def put(self, key: str, data: bytes) -> None:
        from logtide.shippers.checkpoint_store import atomic_write

        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)

    def get(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None


class S3Store:
    """Any S3-compatible store (AWS S3, MinIO, ...) through the MinIO client; credentials from
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY unless given."""

    def __init__(
        self,
        url: str,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str | None = None,
    ) -> None:
        from urllib.parse import urlsplit

        from minio import Minio
        from minio.credentials import EnvAWSProvider

        if not url.startswith("s3://"):
            raise ValueError(f"not an s3:// URL: {url}")
        self.bucket, _, prefix = url[5:].partition("/")
        self.prefix = prefix.strip("/")
        endpoint = urlsplit(endpoint_url or "https://s3.amazonaws.com")
        creds = {"access_key": access_key, "secret_key": secret_key} if access_key else {"credentials": EnvAWSProvider()}
        self.client = Minio(endpoint.netloc, secure=endpoint.scheme == "https", region=region, **creds)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(self.bucket, self._key(key), io.BytesIO(data), len(data))

    def get(self, key: str) -> bytes | None:
        from minio.error import S3Error

        try:
            response = self.client.get_object(self.bucket, self._key(key))
        except S3Error as exc:
            if exc.code == "NoSuchKey":
                return None
            raise
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()


def open_store(dest: str, endpoint_url: str | None = None, **client_kwargs: Any) -> ObjectStore:
    return S3Store(dest, endpoint_url, **client_kwargs) if dest.startswith("s3://") else LocalStore(dest)


def read_manifest(store: ObjectStore) -> list[ArchivedFile]:
    raw = store.get(MANIFEST)
    return [ArchivedFile(**f) for f in orjson.loads(raw)["files"]] if raw else []


def parquet_rows(data: bytes) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(io.BytesIO(data)).num_rows


def closed_days(backend: Any, database: str, table: str, today: date) -> list[str]:
    col = TIME_COLUMN[table]
    rows = backend.query_rows(
        f"SELECT DISTINCT toString(toDate({col})) AS day FROM {database}.{table} "
        f"WHERE toDate({col}) < toDate('{today.isoformat()}') ORDER BY day"
    )
    return [r["day"] for r in rows]


def archive_day(backend: Any, store: ObjectStore, database: str, table: str, day: str) -> ArchivedFile:
    col = TIME_COLUMN[table]
    where = f"FROM {database}.{table} FINAL WHERE toDate({col}) = toDate('{day}')"
    data = backend.query_bytes(
        f"SELECT * {where} ORDER BY {col} SETTINGS output_format_parquet_compression_method = 'zstd'", "Parquet"
    )
    stats = backend.query_rows(f"SELECT count() AS n, toString(min({col})) AS lo, toString(max({col})) AS hi {where}")[0]
    path = f"{table}/dt={day}/{table}-{day}.parquet"
    rows = parquet_rows(data)
    if rows != stats["n"]:
        raise RuntimeError(f"{path}: {rows} rows written, {stats['n']} in the table")
    store.put(path, data)
    return ArchivedFile(table, day, path, rows, len(data), hashlib.sha256(data).hexdigest(), stats["lo"], stats["hi"])


def archive(
    backend: Any, store: ObjectStore, database: str, tables: list[str], today: date
) -> list[ArchivedFile]:
    """Archive every closed day not yet in the manifest; the manifest is rewritten after each file."""
    files = read_manifest(store)
    done = {(f.table, f.day) for f in files}
    new = []
    for table in tables:
        for day in closed_days(backend, database, table, today):
            if (table, day) in done:
                continue
            entry = archive_day(backend, store, database, table, day)
            files.append(entry)
            new.append(entry)
            store.put(MANIFEST, orjson.dumps({"version": 1, "files": [asdict(f) for f in files]}, option=orjson.OPT_INDENT_2))
            log.info("archived %s %s: %d rows, %d bytes", table, day, entry.rows, entry.bytes)
    return new


def verify(store: ObjectStore) -> list[str]:
    """Problems found re-reading every file of the manifest (empty: all files match)."""
    problems = []
    for f in read_manifest(store):
        data = store.get(f.path)
        if data is None:
            problems.append(f"{f.path}: missing")
        elif hashlib.sha256(data).hexdigest() != f.sha256:
            problems.append(f"{f.path}: checksum differs")
        elif parquet_rows(data) != f.rows:
            problems.append(f"{f.path}: {parquet_rows(data)} rows, manifest says {f.rows}")
    return problems
