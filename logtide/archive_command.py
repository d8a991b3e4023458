"""`logtide archive`: closed days of logs and anomalies from ClickHouse into Parquet files with a
manifest, in a local directory or an S3-compatible store; `--verify` re-reads what is there."""

from __future__ import annotations

from datetime import UTC, date, datetime

import click

from logtide.config_command import load_for_command
from logtide.sinks.config import ClickHouseConfig


@click.command("archive")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Configuration file (sinks.clickhouse).")
@click.option("--clickhouse-path", type=click.Path(file_okay=False), help="Read an embedded ClickHouse (chdb) here instead.")
@click.option("--dest", required=True, help="A directory, or s3://bucket/prefix (credentials: the AWS variables).")
@click.option("--endpoint-url", help="S3-compatible endpoint (MinIO, ...); default: AWS.")
@click.option("--tables", default="logs,anomalies", show_default=True, help="Comma-separated tables.")
@click.option("--before", "before", type=click.DateTime(["%Y-%m-%d"]), help="Archive days before this one (default: today, UTC).")
@click.option("--verify", "verify_only", is_flag=True, help="Only check every file against the manifest.")
def archive(  # noqa: PLR0917 - click passes every option
    config_path: str | None,
    clickhouse_path: str | None,
    dest: str,
    endpoint_url: str | None,
    tables: str,
    before: datetime | None,
    verify_only: bool,
) -> None:
    """Write closed days as zstd Parquet with a manifest (time range, rows, bytes, SHA-256)."""
    from logtide.sink_command import clickhouse_backend
    from logtide.sinks import archive as arch

    store = arch.open_store(dest, endpoint_url)
    if verify_only:
        problems = arch.verify(store)
        files = arch.read_manifest(store)
        for p in problems:
            click.echo(p, err=True)
        click.echo(f"{len(files)} files, {sum(f.rows for f in files)} rows: {'OK' if not problems else 'PROBLEMS'}")
        raise SystemExit(1 if problems else 0)
    if clickhouse_path:
        ch = ClickHouseConfig(mode="embedded", path=clickhouse_path)
    else:
        ch = load_for_command(config_path).sinks.clickhouse
        if ch is None:
            raise click.ClickException("archive reads ClickHouse: configure sinks.clickhouse or give --clickhouse-path")
    today: date = (before or datetime.now(UTC)).date()
    backend = clickhouse_backend(ch)
    try:
        new = arch.archive(backend, store, ch.database, [t.strip() for t in tables.split(",") if t.strip()], today)
    finally:
        backend.close()
    for f in new:
        click.echo(f"{f.path}: {f.rows} rows, {f.bytes} bytes, sha256 {f.sha256[:12]}")
    click.echo(f"archived {len(new)} new files to {dest}")
