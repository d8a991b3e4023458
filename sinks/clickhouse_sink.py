"""Writes event documents into ClickHouse: a server through clickhouse-connect, or the embedded
engine (chdb) for the quick start and tests. Both take the same rows and the same DDL."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson
from logtide.sinks.clickhouse_rows import to_row
from logtide.sinks.clickhouse_schema import DATABASE, ddl
from logtide.sinks.retry import TargetUnavailable

_CODE = re.compile(r"\bcode:? (\d+)", re.IGNORECASE)
# Codes of a server that is busy or going away, not of a row: the insert is retried whole.
TRANSIENT_CODES = frozenset({
    3,  # UNEXPECTED_END_OF_FILE (body cut short)
    159, 209, 210,  # TIMEOUT_EXCEEDED, SOCKET_TIMEOUT, NETWORK_ERROR
    202, 203,  # TOO_MANY_SIMULTANEOUS_QUERIES, NO_FREE_CONNECTION
    241, 252,  # MEMORY_LIMIT_EXCEEDED, TOO_MANY_PARTS
    242, 236,  # TABLE_IS_READ_ONLY, ABORTED
    394, 425, 999,  # QUERY_WAS_CANCELLED, SYSTEM_ERROR, KEEPER_EXCEPTION
})
# Codes that name something wrong with the data of a row (parse, type, range).
ROW_CODES = frozenset({6, 26, 27, 38, 41, 53, 69, 70, 72, 117, 131, 321, 349})
_INSERT_SETTINGS = "SETTINGS date_time_input_format='best_effort', input_format_skip_unknown_fields=1"


class ClickHouseBackend(Protocol):
    def command(self, sql: str) -> None: ...
    def close(self) -> None: ...
    def insert_json_rows(self, table: str, rows: list[dict[str, Any]]) -> None: ...
    def query_rows(self, sql: str) -> list[dict[str, Any]]: ...
    def query_bytes(self, sql: str, fmt: str) -> bytes: ...


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

    def query_bytes(self, sql: str, fmt: str) -> bytes:
        return self._session.query(sql, fmt).bytes()

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

    def query_bytes(self, sql: str, fmt: str) -> bytes:
        return self._client.raw_query(sql, fmt=fmt)

    def query_rows(self, sql: str) -> list[dict[str, Any]]:
        result = self._client.query(sql)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def close(self) -> None:
        self._client.close()


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code the server (or chdb) named in its answer; None when none answered."""
    if type(exc).__name__ == "OperationalError":  # clickhouse-connect: no answer (connection, timeout)
        return None
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


class ClickHouseSink:
    """Groups documents by table and inserts them in one statement per table.

    An insert the server refuses with a code it names is split in halves until the rows it
    refuses are found; those are rejected with the server's text (dead letters). Anything else
    (no answer, a dropped connection, an overloaded server, or every row refused alike: not a
    row's fault) raises `TargetUnavailable`, and the batch is retried whole; rows are
    deduplicated by event id, so what an interrupted insert already wrote is not doubled.
    """

    def __init__(
        self,
        backend: ClickHouseBackend,
        database: str = DATABASE,
        ttl_days: dict[str, int] | None = None,
    ) -> None:
        self.backend = backend
        self.database = database
        self.skipped = 0
        self.written = 0
        for stmt in ddl(database, ttl_days or {}):
            backend.command(stmt)

    def write(self, docs: Sequence[dict[str, Any]]) -> list[tuple[int, str]]:
        """Insert the documents ClickHouse stores, one statement per table.

        Returns (position, reason) for documents that cannot become a row or that the server
        refused by name; raises `TargetUnavailable` when the insert must be retried whole.
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
            refused = self._insert(f"{self.database}.{table}", rows)
            if len(refused) == len(rows) > 1 and not all(code in ROW_CODES for _, _, code in refused):
                # Every row refused, and not for its data (a missing table, a dropped column...).
                raise TargetUnavailable(f"ClickHouse refused every row of {table}: {refused[0][1]}")
            self.written += len(rows) - len(refused)
            rejected += [(pos, reason) for pos, reason, _ in refused]
        return sorted(rejected)

    def _insert(self, table: str, rows: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, str, int]]:
        """Rows the server refused by name, found by halving; raises when the server did not answer."""
        try:
            self.backend.insert_json_rows(table, [r for _, r in rows])
        except Exception as exc:
            code = error_code(exc)
            if code is None or code in TRANSIENT_CODES:
                raise TargetUnavailable(f"ClickHouse insert into {table} failed: {_first_line(exc)}") from exc
            if len(rows) == 1:
                return [(rows[0][0], f"ClickHouse refused the row: {_first_line(exc)}", code)]
            half = len(rows) // 2
            return self._insert(table, rows[:half]) + self._insert(table, rows[half:])
        return []


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
