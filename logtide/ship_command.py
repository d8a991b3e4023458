"""`logtide ship`: tail files (and host metrics, Prometheus scrapes) into Kafka, losing nothing.

The wiring lives here (it may import everything): the config file or flags become a
`ShipperConfig`, `producer_kwargs` builds the aiokafka producer (TLS, SASL, acks=all, idempotence),
and `shippers.Shipper` runs until SIGTERM/SIGINT, or until every file is read with `--once`.
SIGHUP (and `--watch-config`, on a change of the file) reloads the configuration: see
`Shipper.reload`; an invalid file is refused with its key path and the running configuration kept.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import click

from logtide.config import ConfigError, load_config
from logtide.log_setup import configure_logging


@click.command("ship")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Configuration file (YAML).")
@click.option(
    "--path", "paths", multiple=True, help="Glob of files to ship (repeatable); adds a plain input."
)
@click.option("--exclude", "excludes", multiple=True, help="Glob to exclude from --path (repeatable).")
@click.option("--parser", type=click.Choice(["plain", "json", "logfmt", "access_log", "syslog"]), default="plain",
              show_default=True, help="Parser for --path files.")  # fmt: skip
@click.option("--bootstrap", help="Kafka bootstrap servers HOST:PORT[,HOST:PORT] (overrides the config).")
@click.option("--topic", help="Log topic (default: <topics.prefix>logs.raw).")
@click.option(
    "--state-dir", type=click.Path(file_okay=False), help="Where the registry of read offsets lives."
)
@click.option(
    "--from-beginning", is_flag=True, help="Read files found at start without a checkpoint from the start."
)
@click.option(
    "--once", is_flag=True, help="Read every matched file to its end, wait for acks, checkpoint, exit."
)
@click.option("--metrics-listen", help="Serve the shipper's /metrics on HOST:PORT.")
@click.option("--compression", type=click.Choice(["lz4", "zstd", "gzip", "snappy", "none"]), help="Override.")
@click.option(
    "--watch-config", is_flag=True, help="Reload the configuration file when it changes (as SIGHUP)."
)
@click.option("-v", "--verbose", count=True, help="More logging.")
def ship(  # noqa: PLR0917 - click passes every option
    config_path: str | None,
    paths: tuple[str, ...],
    excludes: tuple[str, ...],
    parser: str,
    bootstrap: str | None,
    topic: str | None,
    state_dir: str | None,
    from_beginning: bool,
    once: bool,
    metrics_listen: str | None,
    compression: str | None,
    watch_config: bool,
    verbose: int,
) -> None:
    """Ship log files and metrics to Kafka (at-least-once; the registry resumes after any crash)."""
    from logtide.config_reload import file_state
    from logtide.shippers.config import LogInputConfig, ParserConfig

    since = file_state(config_path) if config_path else None  # a change during start-up is a reload too
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(2) from None
    level = "DEBUG" if verbose > 1 else "INFO" if verbose else cfg.logging.level
    configure_logging(level, cfg.logging.format)

    def shipper_section(cfg):  # type: ignore[no-untyped-def]
        """The shipper section with the command line's options applied (at start and on reload)."""
        sc = cfg.shipper
        updates: dict[str, object] = {}
        if paths:
            inp = LogInputConfig(paths=list(paths), exclude=list(excludes), parser=ParserConfig(type=parser))  # type: ignore[arg-type]
            updates["inputs"] = [*sc.inputs, inp]
        if from_beginning:
            inputs = updates.get("inputs", sc.inputs)
            updates["inputs"] = [i.model_copy(update={"start_position": "beginning"}) for i in inputs]  # type: ignore[attr-defined]
        if state_dir:
            updates["state_dir"] = Path(state_dir)
        if topic:
            updates["topic"] = topic
        if metrics_listen:
            updates["metrics_listen"] = metrics_listen
        return sc.model_copy(update=updates)

    sc = shipper_section(cfg)
    kafka = cfg.kafka
    if bootstrap:
        kafka = kafka.model_copy(update={"bootstrap_servers": bootstrap.split(",")})
    if compression:
        kafka = kafka.model_copy(
            update={"producer": kafka.producer.model_copy(update={"compression": compression})}
        )
    if not sc.inputs and not sc.host_metrics.enabled and not sc.prometheus_scrapes:
        click.echo("nothing to ship: give --path GLOB or inputs in the config's shipper section", err=True)
        raise SystemExit(2)
    from logtide.kafka_preflight import preflight
    from logtide.schemas import Topics

    names = Topics(cfg.topics.prefix)
    wanted = [sc.topic or names.logs_raw] if sc.inputs else []
    if sc.host_metrics.enabled or sc.prometheus_scrapes:
        wanted.append(sc.metrics_topic or names.metrics_raw)
    preflight(kafka, wanted, logging.getLogger("logtide.shipper"))

    def reread():  # type: ignore[no-untyped-def]
        """The new shipper section; changed connection, topic and logging settings are named as needing
        a restart (the shipper section's own are sorted out by `Shipper.reload`)."""
        from logtide.config_reload import log_restart_needed, split_changes

        new = load_config(config_path)
        _live, restart = split_changes(cfg, new, (), sections=("kafka", "topics", "logging"))
        log_restart_needed(logging.getLogger("logtide.ship"), restart)
        return shipper_section(new)

    if watch_config and not config_path:
        click.echo("--watch-config needs --config FILE", err=True)
        raise SystemExit(2)
    raise SystemExit(
        asyncio.run(
            _run(
                cfg,
                kafka,
                sc,
                once,
                reread=reread if config_path else None,
                watch=config_path if watch_config else None,
                since=since,
            )
        )
    )


async def _reload(shipper, reread) -> None:  # type: ignore[no-untyped-def]
    """Validate the file again; an invalid one is refused with the key path and the running one kept."""
    await _reloader(shipper, reread).reload()


def _reloader(shipper, reread):  # type: ignore[no-untyped-def]
    from logtide.config_reload import Reloader

    async def apply(new) -> None:  # type: ignore[no-untyped-def]
        await shipper.started.wait()  # valid: applied once the shipper runs (the output may still be starting)
        await shipper.reload(new)

    return Reloader(reread, apply, logging.getLogger("logtide.ship"))


async def _run(cfg, kafka, sc, once: bool, *, reread=None, watch: str | None = None, since=None) -> int:  # type: ignore[no-untyped-def]
    from logtide.kafka_client import producer_kwargs
    from logtide.schemas import Topics
    from logtide.shippers.checkpoint_store import StateDirError
    from logtide.shippers.kafka_output import KafkaOutput
    from logtide.shippers.malloc_tuning import keep_freed_buffers
    from logtide.shippers.shipper import Shipper

    keep_freed_buffers()  # this process only: a fifth of the CPU was page faults on read buffers

    topics = Topics(cfg.topics.prefix)
    output = KafkaOutput(producer_kwargs(kafka))
    shipper = Shipper(sc, output, log_topic=topics.logs_raw, metrics_topic=topics.metrics_raw, once=once)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shipper.request_stop)
    from logtide.config_reload import install

    watcher = install(_reloader(shipper, reread), watch if not once else None, since)
    try:
        await shipper.run()
    except StateDirError as exc:
        logging.getLogger("logtide.ship").error("%s", exc)
        return 2
    finally:
        if watcher is not None:
            watcher.cancel()
    return 0
