"""`logtide config check`: validate a file before deploying it."""

from __future__ import annotations

import click

from logtide.config import Config, ConfigError, load_config


@click.group()
def config() -> None:
    """Work with configuration files."""


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def check(file: str) -> None:
    """Validate FILE; print the effective configuration (secrets masked) or the errors."""
    try:
        cfg = load_config(file)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(2) from None
    click.echo(f"{file}: OK")
    click.echo(cfg.model_dump_json(indent=2, exclude_none=True))


def load_for_command(config_path: str | None, bootstrap: str | None = None) -> Config:
    """What every process command does first: load and validate, apply `--bootstrap`, or exit with the errors."""
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if bootstrap:
        cfg.kafka.bootstrap_servers = bootstrap.split(",")
    return cfg
