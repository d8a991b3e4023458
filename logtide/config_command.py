"""`logtide config check`: validate a file before deploying it."""

from __future__ import annotations

import os

import click

from logtide.config import Config, ConfigError, load_config


@click.group()
def config() -> None:
    """Work with configuration files."""


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--show", is_flag=True, help="Also print the whole resolved configuration (secrets masked).")
def check(file: str, show: bool) -> None:
    """Validate FILE: print "ok" and a one-line summary, or the errors with their key paths."""
    try:
        cfg = load_config(file)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(2) from None
    click.echo(f"{file}: ok ({summary(cfg)})")
    if show:
        click.echo(cfg.model_dump_json(indent=2, exclude_none=True))


def summary(cfg: Config) -> str:
    """One line on what the file sets up, so a passing check still says what it checked."""
    sc, sk = cfg.shipper, cfg.sinks
    targets = [name for name in ("elasticsearch", "clickhouse") if getattr(sk, name, None) is not None]
    return (
        f"kafka {','.join(cfg.kafka.bootstrap_servers)} ({cfg.kafka.security_protocol}), "
        f"prefix {cfg.topics.prefix!r}, {len(sc.inputs)} log inputs, "
        f"{len(sc.prometheus_scrapes)} scrapes, host metrics {'on' if sc.host_metrics.enabled else 'off'}, "
        f"sinks: {', '.join(targets) or 'none'}"
    )

def load_for_command(config_path: str | None, bootstrap: str | None = None) -> Config:
    """What every process command does first: load and validate, apply `--bootstrap`, or exit with the errors."""
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if bootstrap:
        cfg.kafka.bootstrap_servers = bootstrap.split(",")
    if config_path is None and not os.environ.get("LOGTIDE_CONFIG"):
        click.echo(
            f"no --config given: built-in defaults, broker {','.join(cfg.kafka.bootstrap_servers)}, "
            f"topic prefix {cfg.topics.prefix!r}",
            err=True,
        )
    return cfg
