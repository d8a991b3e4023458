"""`logtide anomalies tail`: read the anomalies topic like `journalctl --since` / `kubectl logs -f`.

Contract for scripts: `logtide anomalies tail --bootstrap HOST:PORT --from-beginning --json` prints
every record of `logtide.anomalies` as one JSON object per line (the record value as stored) and exits
0 at the end of the topic. No consumer group, nothing committed: tailing never moves anyone's offsets.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any

import click
import orjson

from logtide.anomaly_filter import SEVERITY_RANK, STATUSES, AnomalyFilter, status_of
from logtide.config_command import load_for_command
from logtide.kafka_client import connection_kwargs
from logtide.timespec import TimeSpecError, format_ms, parse_duration_ms, parse_time_ms

_COLOURS = {"critical": "red", "warning": "yellow", "info": "cyan"}


def readable_line(a: Any, status: str) -> str:
    """The demo's one-line format, with the status when the anomaly resolved; styled (colour is
    dropped by click when stdout is not a terminal)."""
    from logtide.embedded import format_anomaly_line

    line = format_anomaly_line(a)
    sev = a.severity.value.upper()
    line = line.replace(f" {sev}", " " + click.style(f"{sev}", fg=_COLOURS.get(a.severity.value), bold=True), 1)
    svc = f"  service={a.service.name}" if getattr(a, "service", None) else ""
    if status != "firing":
        line += "  " + click.style(status.upper(), fg="green")
    return line + svc


async def tail_topic(
    client_kwargs: dict[str, Any], topic: str, from_ms: int, *, follow: bool, filt: AnomalyFilter, as_json: bool
) -> dict[str, int]:
    from logtide.schemas import Anomaly, DeadLetter, decode
    from logtide.topic_range import RangeReader

    reader = RangeReader(client_kwargs, topic, from_ms, None, follow=follow)
    counts = {"shown": 0, "filtered": 0, "invalid": 0}
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before connecting: Ctrl-C at any moment stops cleanly
        loop.add_signal_handler(sig, reader.stop)
    out = sys.stdout.buffer
    held: list[tuple[Any, str]] = []  # readable and not following: printed in time order at the end
    try:
        await reader.open()
        async for batch in reader.batches():
            for r in batch.records:
                try:
                    doc = orjson.loads(r.value) if r.value else None
                except orjson.JSONDecodeError:
                    doc = None
                if doc is None:
                    counts["invalid"] += 1
                    continue
                if not filt.matches(doc):
                    counts["filtered"] += 1
                    continue
                if as_json:
                    out.write((r.value if b"\n" not in r.value else orjson.dumps(doc)) + b"\n")
                else:
                    a = decode(r.value, Anomaly)
                    if isinstance(a, DeadLetter):
                        counts["invalid"] += 1
                        click.echo(f"tail: {topic}[{batch.partition}]@{r.offset} is not a valid anomaly: "
                                   f"{a.error.message}", err=True)  # fmt: skip
                        continue
                    if follow:
                        out.flush()
                        click.echo(readable_line(a, status_of(doc)))
                    else:
                        held.append((a, status_of(doc)))
                counts["shown"] += 1
            out.flush()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await reader.close()
    for a, status in sorted(held, key=lambda x: (x[0].timestamp, x[0].series.key)):
        click.echo(readable_line(a, status))
    return counts


@click.group()
def anomalies() -> None:
    """Read the anomalies topic."""


@anomalies.command("tail")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Configuration file.")
@click.option("--bootstrap", help="Override kafka.bootstrap_servers (HOST:PORT[,HOST:PORT]).")
@click.option("--topic", help="Topic to read (default: the config's prefix + anomalies).")
@click.option("--since", metavar="DURATION", help="Start this long ago (e.g. 1h, 30m, 2d; by the time records were "
              "published). Default: 1h.")
@click.option("--from", "from_", metavar="TS", help="Start at this time (ISO 8601 with zone, epoch ms, -2h).")
@click.option("--from-beginning", is_flag=True, help="Start at the beginning of the topic.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new anomalies (Ctrl-C to stop).")
@click.option("--service", multiple=True, help="Only this service (repeat for several).")
@click.option("--severity", type=click.Choice(list(SEVERITY_RANK)), help="Only this severity and above.")
@click.option("--status", type=click.Choice(list(STATUSES)), help="Only firing or only resolved.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (the records as stored).")
def tail(  # noqa: PLR0917 - click passes every option
    config_path: str | None, bootstrap: str | None, topic: str | None, since: str | None, from_: str | None,
    from_beginning: bool, follow: bool, service: tuple[str, ...], severity: str | None, status: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Print anomalies, one per line, and exit at the end of the topic (unless --follow)."""
    from logtide.schemas import Topics
    from logtide.topic_range import UnknownTopic

    if sum(bool(x) for x in (since, from_, from_beginning)) > 1:
        raise click.UsageError("use one of --since, --from, --from-beginning")
    now_ms = int(time.time() * 1000)
    try:
        if from_beginning:
            from_ms = 0
        elif from_:
            from_ms = parse_time_ms(from_, now_ms)
        else:
            from_ms = now_ms - parse_duration_ms((since or "1h").lstrip("-"))
    except TimeSpecError as exc:
        raise click.UsageError(str(exc)) from None
    cfg = load_for_command(config_path, bootstrap)
    name = topic or Topics(cfg.topics.prefix).anomalies
    filt = AnomalyFilter.of(service, severity, status)
    try:
        counts = asyncio.run(
            tail_topic(connection_kwargs(cfg.kafka), name, from_ms, follow=follow, filt=filt, as_json=as_json)
        )
    except UnknownTopic:
        raise click.ClickException(f"unknown topic {name!r} (nothing has been detected yet, or a wrong prefix)") from None
    if counts["invalid"]:
        click.echo(f"tail: {counts['invalid']} records that are not valid anomalies skipped", err=True)
    if not counts["shown"] and not as_json:
        click.echo(f"tail: no anomalies on {name} match (since {format_ms(from_ms)})", err=True)
