"""`logtide services up|down|status`: real local Kafka and Elasticsearch for development and tests."""

from __future__ import annotations

import time

import click

from logtide.services import manager
from logtide.services.config import ServiceError

_only = click.option(
    "--only",
    type=click.Choice(manager.NAMES),
    multiple=True,
    help="Act on this service only (repeatable). Default: both.",
)


def _which(only: tuple[str, ...]) -> dict[str, bool]:
    return {name: (not only or name in only) for name in manager.NAMES}


@click.group()
def services() -> None:
    """Local Kafka (KRaft, 127.0.0.1:9092) and Elasticsearch (127.0.0.1:9200) from Maven Central.

    Downloads are cached in ~/.cache/logtide (LOGTIDE_CACHE); data, logs and pid files in
    ~/.cache/logtide/state (LOGTIDE_STATE).
    """


@services.command()
@_only
@click.option("--timeout", default=manager.DEFAULT_TIMEOUT_S, show_default=True, help="Seconds to wait.")
@click.option("--secure", is_flag=True,
              help="Also a TLS + SASL/SCRAM-SHA-512 listener on 127.0.0.1:9094 with users and ACLs (kept once made).")
def up(only: tuple[str, ...], timeout: float, secure: bool) -> None:
    """Start what is not running (downloading once), wait until it answers, print the addresses."""
    t0 = time.monotonic()
    try:
        addresses = manager.ensure_up(**_which(only), timeout=timeout, echo=click.echo, secure=secure)
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc
    for name, address in addresses.items():
        click.echo(f"{name:<14} {address}")
    click.echo(f"ready in {time.monotonic() - t0:.1f}s")


@services.command()
@_only
def down(only: tuple[str, ...]) -> None:
    """Stop the services that `up` started (and only those)."""
    try:
        manager.stop(**_which(only), echo=click.echo)
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc


@services.command()
@_only
def status(only: tuple[str, ...]) -> None:
    """Report each service: running or stopped, pid, address, answering or not. Exit 1 if any is down."""
    all_ok = True
    for st in manager.status(**_which(only)):
        pid = st.pid if st.pid is not None else "-"
        answering = "answering" if st.answering else "not answering"
        click.echo(
            f"{st.name:<14} {st.state:<19} pid {pid!s:<8} {st.address:<24} {answering}   log {st.log_file}"
        )
        all_ok &= st.answering
    if not all_ok:
        raise SystemExit(1)
