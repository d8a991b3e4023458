"""`logtide streams`: run a Faust streams worker (production path).

Start several with the same configuration to split the partitions; each needs its own state
directory when they share a host (`--state-dir`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from logtide.config import Config, KafkaConfig
from logtide.config_command import load_for_command


def faust_credentials(k: KafkaConfig) -> Any:
    """Faust credentials for the `kafka` section's security settings (None for PLAINTEXT)."""
    if k.security_protocol == "PLAINTEXT":
        return None
    import faust

    from logtide.kafka_client import connection_kwargs

    kw = connection_kwargs(k)
    ctx = kw.get("ssl_context")
    if k.sasl is not None:
        return faust.SASLCredentials(
            username=k.sasl.username,
            password=k.sasl.password.get_secret_value(),
            mechanism=k.sasl.mechanism,
            ssl_context=ctx,
        )
    return faust.SSLCredentials(ctx)


def build_app(cfg: Config, *, state_dir: Path | None = None, app_id: str | None = None, **settings: Any) -> Any:
    """The `StreamsApp` for a configuration (no I/O until the worker starts)."""
    from logtide.kafka_client import connection_kwargs
    from logtide.schemas import Topics
    from logtide.streams.faust_app import StreamsApp

    return StreamsApp(
        cfg.streams,
        Topics(cfg.topics.prefix),
        cfg.kafka.bootstrap_servers,
        credentials=faust_credentials(cfg.kafka),
        client_kwargs=connection_kwargs(cfg.kafka),
        partitions=cfg.topics.partitions,
        replication_factor=cfg.topics.replication_factor,
        app_id=app_id,
        state_dir=state_dir,
        settings=settings or None,
    )


def reload_wiring(sapp: Any, cfg: Config, load: Callable[[], Config] | None, *, loglevel_fixed: bool = False) -> Any:
    """The `Reloader` of a running worker: live keys (`streams.reload.LIVE_KEYS`) go to the operators
    of every partition, every other changed key of the worker's sections is named as needing a restart
    and keeps its running value. `load` reads and validates the file again."""
    from logtide.config_reload import (
        Reloader,
        apply_log_level,
        keep_running,
        log_restart_needed,
        split_changes,
    )
    from logtide.streams.reload import LIVE_KEYS, SECTIONS

    log = logging.getLogger("logtide.streams")
    running = [cfg]

    async def apply(new: Config) -> None:
        live, restart = split_changes(running[0], new, LIVE_KEYS, SECTIONS)
        log_restart_needed(log, restart)
        merged = keep_running(running[0], new, restart)
        sapp.apply_config(merged.streams)
        if "logging.level" in live and not loglevel_fixed:
            apply_log_level(merged)
        running[0] = merged
        log.info("configuration reloaded: %s", f"applied live: {', '.join(live)}" if live else "nothing to apply live")

    return Reloader(load, apply, log)


def run_worker(cfg: Config, *, state_dir: Path | None = None, loglevel: str | None = None,
               config_path: str | None = None, watch_config: bool = False,
               prepare: Callable[[Config], Config] | None = None, since: Any = None) -> None:
    """Run one worker until SIGTERM/SIGINT (graceful: commits and flushes before it exits). SIGHUP, and a
    change of `config_path` with `watch_config`, reload the configuration (`reload_wiring`); `prepare`
    applies the command line's overrides to each configuration read again; `since` is the file's state
    before it was read (`config_reload.file_state`), so a change made during start-up is not missed."""
    import signal

    import faust

    from logtide.config import load_config
    from logtide.config_reload import install
    from logtide.log_setup import configure_logging, logging_dict
    from logtide.streams.faust_app import check_port_free, serve_metrics

    level = (loglevel or cfg.logging.level).upper()
    configure_logging(level, cfg.logging.format)
    if cfg.streams.event_loop == "uvloop":  # before anything makes a loop: Faust's App and Worker take the policy's
        import importlib.util

        import mode.loop

        if importlib.util.find_spec("uvloop") is None:
            raise click.ClickException("streams.event_loop is uvloop, which is not installed: pip install 'logtide[uvloop]'")
        mode.loop.use("uvloop")
    from logtide.kafka_preflight import preflight
    from logtide.schemas import Topics

    preflight(cfg.kafka, Topics(cfg.topics.prefix).all(), logging.getLogger("logtide.streams"))
    check_port_free(cfg.streams.metrics_port, "metrics_port")
    check_port_free(cfg.streams.web_port, "web_port")
    sapp = build_app(cfg, state_dir=state_dir)
    serve_metrics(sapp.metrics, cfg.streams.metrics_port)
    # quiet: no banner; Faust's own INFO tables go to DEBUG with the other libraries' chatter.
    worker = faust.Worker(
        sapp.app, loglevel=level.lower(), logging_config=logging_dict(level, cfg.logging.format), quiet=True
    )
    logging.getLogger("logtide.streams").info(
        "streams worker starting: broker %s, topic prefix %r, state dir %s, event loop from %s",
        ",".join(cfg.kafka.bootstrap_servers), cfg.topics.prefix, state_dir or cfg.streams.state_dir,
        type(asyncio.get_event_loop_policy()).__module__.split(".")[0],
    )
    def load() -> Config:
        new = load_config(config_path)
        return prepare(new) if prepare is not None else new

    reloader = reload_wiring(sapp, cfg, load if config_path is not None else None, loglevel_fixed=loglevel is not None)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the loop's handler is installed: never a kill

    async def reload_on_signal() -> None:
        watcher = install(reloader, config_path if watch_config and config_path else None, since)
        logging.getLogger("logtide.streams").info(
            "configuration reload on SIGHUP%s", f" and on changes of {config_path}" if watcher else "")
        if watcher is not None:
            await watcher

    sapp.app.task(reload_on_signal)
    sys.argv = sys.argv[:1]  # the worker parses argv; ours was already handled by click
    worker.execute_from_commandline()


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Configuration file.")
@click.option("--bootstrap", help="Override kafka.bootstrap_servers (HOST:PORT[,HOST:PORT]).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), help="Override streams.state_dir.")
@click.option("--metrics-port", type=int, help="Override streams.metrics_port (0 disables).")
@click.option("--web-port", type=int, help="Override streams.web_port (0 disables).")
@click.option("--loglevel", type=click.Choice(["debug", "info", "warning", "error"]), help="Worker log level.")
@click.option("--watch-config", is_flag=True, help="Reload the configuration file when it changes (as SIGHUP).")
def streams(  # noqa: PLR0917 - one parameter per click option
    config_path: str | None, bootstrap: str | None, state_dir: Path | None, metrics_port: int | None,
    web_port: int | None, loglevel: str | None, watch_config: bool,
) -> None:
    """Run a streams worker: validate, enrich, window-aggregate and detect, from the raw topics to
    logs.enriched, metrics.agg, anomalies and deadletter. SIGHUP (or --watch-config) reloads detection
    gates and enrichment tables live and names what needs a restart."""
    if watch_config and not config_path:
        raise click.UsageError("--watch-config needs --config FILE")

    def prepare(cfg: Config) -> Config:
        """The command line's overrides, on the file as read at start and at each reload."""
        if bootstrap:
            cfg.kafka.bootstrap_servers = bootstrap.split(",")
        if metrics_port is not None:
            cfg.streams.metrics_port = metrics_port
        if web_port is not None:
            cfg.streams.web_port = web_port
        return cfg

    from logtide.config_reload import file_state

    since = file_state(config_path) if config_path else None
    cfg = prepare(load_for_command(config_path, bootstrap))
    run_worker(cfg, state_dir=state_dir, loglevel=loglevel, config_path=config_path, watch_config=watch_config,
               prepare=prepare, since=since)
