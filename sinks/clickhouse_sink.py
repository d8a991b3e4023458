"""Writes event documents into ClickHouse: a server through clickhouse-connect, or the embedded
engine (chdb) for the quick start and tests. Both take the same rows and the same DDL."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson
from logtide.sinks.clickhouse_rows import to_row
from logtide.sinks.clickhouse_schema import DATABASE, ddl

_INSERT_SETTINGS = "SETTINGS date_time_input_format='best_effort', input_format_skip_unknown_fields=1"


class ClickHouseBackend(Protocol):
    def command(self, sql: str) -> None: ...
    def close(self) -> None: ...
    def insert_json_rows(self, table: str, rows: list[dict[str, Any]]) -> None: ...
    def query_rows(self, sql: str) -> list[dict[str, Any]]: ...


class ChdbBackend:
    """The real ClickHouse engine in-process, data kept under `path`."""

    def __init__(self, path: str | Path) -> None:
        try:
            from chdb import session
        except ImportError as exc:
            raise RuntimeError("the embedded ClickHouse target needs chdb: pip install 'logtide[chdb]'") from exc

        self._session = session.Session(str(path))

    def command(self, sql: str) -> None:
        self._session.query(sql)

    def insert_json_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        body = b"\n".join(orjson.dumps(r) for r in rows).decode()
        self._session.query(f"INSERT INTO {table} {_INSERT_SETTINGS} FORMAT JSONEachRow {body}")

    def query_rows(self, sql: str) -> list[dict[str, Any]]:
        out = self._session.query(sql, "JSONEachRow").bytes()
        return [orjson.loads(line) for line in out.splitlines() if line.strip()]

    def close(self) -> None:
        self._session.close()


class ServerBackend:
    """A ClickHouse server over HTTP (clickhouse-connect)."""

    def __init__(self, **client_kwargs: Any) -> None:
        try:
            import clickhouse_connect
        except ImportError as exc:
            raise RuntimeError(
                "a ClickHouse server target needs clickhouse-connect: pip install 'logtide[clickhouse]'"
            ) from exc

        self._client = clickhouse_connect.get_client(**client_kwargs)

    def command(self, sql: str) -> None:
        self._client.command(sql)

    def insert_json_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        body = b"\n".join(orjson.dumps(r) for r in rows)
        self._client.raw_insert(
            table, insert_block=body, fmt="JSONEachRow", settings={"date_time_input_format": "best_effort"}
        )

    def query_rows(self, sql: str) -> list[dict[str, Any]]:
        result = self._client.query(sql)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def close(self) -> None:
        self._client.close()


class ClickHouseSink:
    """Groups documents by table and inserts them in one statement per table."""

    def __init__(self, backend: ClickHouseBackend, database: str = DATABASE) -> None:
        self.backend = backend
        self.database = database
        self.skipped = 0
        self.written = 0
        for stmt in ddl(database):
            backend.command(stmt)

    def write(self, docs: Sequence[dict[str, Any]]) -> list[tuple[int, str]]:
        """Insert the documents ClickHouse stores, one statement per table.

        Returns (position, reason) for documents that cannot become a row; an insert that fails
        raises, so the caller retries the batch (rows are deduplicated by event id).
        """
        by_table: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        rejected: list[tuple[int, str]] = []
        for pos, doc in enumerate(docs):
            try:
                tr = to_row(doc)
            except (KeyError, TypeError, ValueError) as exc:
                rejected.append((pos, f"cannot map to a ClickHouse row: {type(exc).__name__}: {exc}"))
                continue
            if tr is None:
                self.skipped += 1
                continue
            by_table[tr[0]].append((pos, tr[1]))
        for table, rows in by_table.items():
            rejected += self._insert(f"{self.database}.{table}", rows)
        return sorted(rejected)

    def _insert(self, table: str, rows: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, str]]:
        try:
            self.backend.insert_json_rows(table, [r for _, r in rows])
        except Exception:
            if len(rows) == 1:
                raise
        else:
            self.written += len(rows)
            return []
        # The batch failed: one row at a time tells a poison row (rejected) from an outage (raised).
        rejected, errors = [], []
        for pos, row in rows:
            try:
                self.backend.insert_json_rows(table, [row])
                self.written += 1
            except Exception as exc:
                errors.append(exc)
                rejected.append((pos, f"ClickHouse refused the row: {str(exc).splitlines()[0][:300]}"))
        if len(errors) == len(rows):
            raise errors[0]
        return rejected
