"""Writes event documents into ClickHouse: a server through clickhouse-connect, or the embedded
engine (chdb) for the quick start and tests. Both take the same rows and the same DDL."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import orjson

from sinks.clickhouse_rows import to_row
from sinks.clickhouse_schema import DATABASE, ddl

_INSERT_SETTINGS = "SETTINGS date_time_input_format='best_effort', input_format_skip_unknown_fields=1"


class ClickHouseBackend(Protocol):
    def command(self, sql: str) -> None: ...
    def insert_json_rows(self, table: str, rows: list[dict[str, Any]]) -> None: ...
    def query_rows(self, sql: str) -> list[dict[str, Any]]: ...


class ChdbBackend:
    """The real ClickHouse engine in-process, data kept under `path`."""

    def __init__(self, path: str | Path) -> None:
        from chdb import session

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
        import clickhouse_connect

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


class ClickHouseSink:
    """Groups documents by table and inserts them in one statement per table."""

    def __init__(self, backend: ClickHouseBackend, database: str = DATABASE) -> None:
        self.backend = backend
        self.database = database
        self.skipped = 0
        for stmt in ddl(database):
            backend.command(stmt)

    def write(self, docs: Iterable[dict[str, Any]]) -> int:
        """Insert the documents ClickHouse stores; returns how many rows were written."""
        by_table: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for doc in docs:
            tr = to_row(doc)
            if tr is None:
                self.skipped += 1
                continue
            by_table[tr[0]].append(tr[1])
        for table, rows in by_table.items():
            self.backend.insert_json_rows(f"{self.database}.{table}", rows)
        return sum(len(r) for r in by_table.values())
