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
from logtide.sinks.config import ClickHouseConfig, ElasticsearchConfig, SinksConfig
from logtide.sinks.metrics import SinkMetrics
from logtide.sinks.retry import RetryPolicy


def _policy(target: str, sinks: SinksConfig, metrics: SinkMetrics, stopping: asyncio.Event) -> RetryPolicy:
    return RetryPolicy(
        target,
        metrics,
        max_backoff_s=sinks.retry_max_backoff_s,
        give_up_after_s=sinks.retry_give_up_after_s,
        stopping=stopping,
    )


def es_client(cfg: ElasticsearchConfig) -> Any:
    from elasticsearch import AsyncElasticsearch

    auth: dict[str, Any] = {}
    if cfg.api_key is not None:
        auth["api_key"] = cfg.api_key.get_secret_value()
    elif cfg.username is not None:
        auth["basic_auth"] = (cfg.username, cfg.password.get_secret_value() if cfg.password else "")
    if cfg.ca_file is not None:
        auth["ca_certs"] = str(cfg.ca_file)
    # Retries are ours (logged, counted, backoff); the client's own would hide an outage.
    return AsyncElasticsearch(cfg.hosts, request_timeout=cfg.request_timeout_s, max_retries=0, **auth)


async def _es_writer(cfg: ElasticsearchConfig, policy: RetryPolicy) -> tuple[Any, Any]:
    from logtide.sinks.elasticsearch_sink import ElasticsearchSink

    client = es_client(cfg)
    sink = ElasticsearchSink(
        client,
        prefix=cfg.index_prefix,
        retry=policy,
        max_batch_bytes=cfg.max_batch_bytes,
        max_concurrency=cfg.max_concurrency,
        replicas=cfg.replicas,
        retention_days=cfg.retention_days,
    )
    await policy.call(lambda: _retry_on_connection(sink.ensure_templates))

    async def write(docs: Sequence[dict[str, Any]]) -> list[tuple[int, str]]:
        result = await sink.write(docs)
        policy.metrics.written.labels("elasticsearch").inc(result.indexed)
        policy.metrics.rejected.labels("elasticsearch").inc(len(result.rejected))
        return result.rejected

    return write, client


async def _retry_on_connection(call: Any) -> Any:
    from logtide.sinks.elasticsearch_sink import _is_retryable_exception
    from logtide.sinks.retry import TargetUnavailable

    try:
        return await call()
    except Exception as exc:
        if _is_retryable_exception(exc):
            raise TargetUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from exc
        raise


def clickhouse_backend(cfg: ClickHouseConfig) -> Any:
    from logtide.sinks.clickhouse_sink import ChdbBackend, ServerBackend

    if cfg.mode == "embedded":
        cfg.path.mkdir(parents=True, exist_ok=True)
        return ChdbBackend(cfg.path)
    return ServerBackend(
        host=cfg.host,
        port=cfg.port,
        username=cfg.username,
        password=cfg.password.get_secret_value() if cfg.password else "",
        secure=cfg.secure,
    )


async def _clickhouse_writer(cfg: ClickHouseConfig, policy: RetryPolicy) -> tuple[Any, Any]:
    from logtide.sinks.clickhouse_sink import ClickHouseSink, error_code
    from logtide.sinks.retry import TargetUnavailable

    async def connect() -> tuple[Any, ClickHouseSink]:
        try:
            backend = await asyncio.to_thread(clickhouse_backend, cfg)
            return backend, await asyncio.to_thread(ClickHouseSink, backend, cfg.database, dict(cfg.ttl_days))
        except Exception as exc:
            if cfg.mode == "server" and error_code(exc) is None:
                raise TargetUnavailable(f"ClickHouse not reachable: {exc}"[:300]) from exc
            raise

    backend, sink = await policy.call(connect)

    async def write(docs: Sequence[dict[str, Any]]) -> list[tuple[int, str]]:
        # An insert that fails for want of an answer is retried whole (rows dedup by event id).
        before = sink.written
        rejected = await policy.call(lambda: asyncio.to_thread(sink.write, docs))
        policy.metrics.written.labels("clickhouse").inc(sink.written - before)
        policy.metrics.rejected.labels("clickhouse").inc(len(rejected))
        return rejected

    return write, backend


async def run_sinks(cfg: Config, once: bool, metrics: SinkMetrics | None = None) -> dict[str, Any]:
    from logtide.sinks.kafka_runner import KafkaSinkRunner

    topics = Topics(cfg.topics.prefix)
    metrics = metrics or SinkMetrics()
    stopping = asyncio.Event()
    writers, closers = [], []
    if cfg.sinks.metrics_listen:
        from prometheus_client import start_http_server

        host, _, port = cfg.sinks.metrics_listen.rpartition(":")
        server, _thread = start_http_server(int(port), addr=host or "0.0.0.0", registry=metrics.registry)

        async def stop_metrics() -> None:
            server.shutdown()
            server.server_close()

        closers.append(stop_metrics)
    loop = asyncio.get_running_loop()
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        if cfg.sinks.elasticsearch is not None:
            es_write, client = await _es_writer(
                cfg.sinks.elasticsearch, _policy("elasticsearch", cfg.sinks, metrics, stopping)
            )
            writers.append(es_write)
            closers.append(client.close)
        if cfg.sinks.clickhouse is not None:
            ch_write, backend = await _clickhouse_writer(
                cfg.sinks.clickhouse, _policy("clickhouse", cfg.sinks, metrics, stopping)
            )
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
            metrics=metrics,
            stopping=stopping,
        )
        counters = await runner.run(once=once)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
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
