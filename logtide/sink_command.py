"""`logtide sink`: Kafka topics into Elasticsearch and ClickHouse, offsets committed after the writes."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from typing import Any

import click

from logtide.config import Config
from logtide.config_command import load_for_command
from logtide.kafka_client import connection_kwargs, producer_kwargs
from logtide.log_setup import configure_logging
from logtide.schemas import Topics
from logtide.sinks.config import ClickHouseConfig, ElasticsearchConfig


async def _es_writer(cfg: ElasticsearchConfig) -> tuple[Any, Any]:
    from elasticsearch import AsyncElasticsearch

    from logtide.sinks.elasticsearch_sink import ElasticsearchSink

    auth: dict[str, Any] = {}
    if cfg.api_key is not None:
        auth["api_key"] = cfg.api_key.get_secret_value()
    elif cfg.username is not None:
        auth["basic_auth"] = (cfg.username, cfg.password.get_secret_value() if cfg.password else "")
    if cfg.ca_file is not None:
        auth["ca_certs"] = str(cfg.ca_file)
    client = AsyncElasticsearch(cfg.hosts, request_timeout=cfg.request_timeout_s, **auth)
    sink = ElasticsearchSink(client, prefix=cfg.index_prefix)
    await sink.ensure_template()

    async def write(docs: Sequence[dict[str, Any]]) -> list[tuple[int, str]]:
        return (await sink.write(docs)).rejected

    return write, client


def _clickhouse_writer(cfg: ClickHouseConfig) -> tuple[Any, Any]:
    from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

    from logtide.sinks.clickhouse_sink import ChdbBackend, ClickHouseSink, ServerBackend

    if cfg.mode == "embedded":
        cfg.path.mkdir(parents=True, exist_ok=True)
        backend: Any = ChdbBackend(cfg.path)
    else:
        backend = ServerBackend(
            host=cfg.host,
            port=cfg.port,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password else "",
            secure=cfg.secure,
        )
    sink = ClickHouseSink(backend, cfg.database)

    async def write(docs: Sequence[dict[str, Any]]) -> list[tuple[int, str]]:
        # An insert that fails is retried whole (rows dedup by event id); offsets wait meanwhile.
        async for attempt in AsyncRetrying(
            wait=wait_exponential_jitter(initial=0.2, max=30), retry=retry_if_exception_type(Exception)
        ):
            with attempt:
                return await asyncio.to_thread(sink.write, docs)
        raise AssertionError("unreachable")

    return write, backend


async def run_sinks(cfg: Config, once: bool) -> dict[str, Any]:
    from logtide.sinks.kafka_runner import KafkaSinkRunner

    topics = Topics(cfg.topics.prefix)
    writers, closers = [], []
    if cfg.sinks.elasticsearch is not None:
        es_write, client = await _es_writer(cfg.sinks.elasticsearch)
        writers.append(es_write)
        closers.append(client.close)
    if cfg.sinks.clickhouse is not None:
        ch_write, backend = _clickhouse_writer(cfg.sinks.clickhouse)
        writers.append(ch_write)
        closers.append(lambda: asyncio.to_thread(backend.close))
    if not writers:
        raise click.ClickException("sinks: configure elasticsearch and/or clickhouse")
    runner = KafkaSinkRunner(
        consumer_kwargs={**connection_kwargs(cfg.kafka), "group_id": cfg.sinks.group_id},
        producer_kwargs=producer_kwargs(cfg.kafka),
        topics=[topics.name(s) for s in cfg.sinks.sources],
        deadletter_topic=topics.deadletter,
        writers=writers,
        batch_max_records=cfg.sinks.batch_max_records,
        batch_wait_ms=cfg.sinks.batch_wait_ms,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runner.stop)
    try:
        counters = await runner.run(once=once)
    finally:
        for close in closers:
            await close()
    return vars(counters)


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Configuration file.")
@click.option("--bootstrap", help="Override kafka.bootstrap_servers.")
@click.option("--es", "es_hosts", help="Override sinks.elasticsearch.hosts (comma-separated URLs).")
@click.option(
    "--clickhouse-path", type=click.Path(file_okay=False), help="Also write to embedded ClickHouse here."
)
@click.option("--once", is_flag=True, help="Stop when the topics' current end is reached (backfills, tests).")
def sink(
    config_path: str | None,
    bootstrap: str | None,
    es_hosts: str | None,
    clickhouse_path: str | None,
    once: bool,
) -> None:
    """Write enriched events, aggregates, anomalies and dead letters to Elasticsearch and ClickHouse."""
    cfg = load_for_command(config_path, bootstrap)
    if es_hosts:
        cfg.sinks.elasticsearch = (cfg.sinks.elasticsearch or ElasticsearchConfig()).model_copy(
            update={"hosts": es_hosts.split(",")}
        )
    if clickhouse_path:
        cfg.sinks.clickhouse = ClickHouseConfig(mode="embedded", path=clickhouse_path)
    configure_logging(cfg.logging.level, cfg.logging.format)
    from logtide.kafka_preflight import preflight

    topics = Topics(cfg.topics.prefix)
    preflight(cfg.kafka, [topics.name(s) for s in cfg.sinks.sources], logging.getLogger("logtide.sinks"))
    counters = asyncio.run(run_sinks(cfg, once))
    click.echo(
        f"records {counters['records']}  written {counters['written']}  dead letters {counters['dead_letters']}"
        + (f"  ({counters['by_reason']})" if counters["by_reason"] else "")
    )
