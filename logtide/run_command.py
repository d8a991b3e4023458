"""`logtide run` (the embedded pipeline, no Kafka) and `logtide demo` (generated logs with an incident).

Heavy imports (the shipper, the operators, the detectors) stay inside the functions so that
`logtide --help` stays fast.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from logtide.config import ConfigError, load_config
from logtide.log_setup import configure_logging

PARSERS = ["plain", "json", "logfmt", "access_log", "syslog"]


def _setup_logging(level_name: str, verbose: int, fmt: str = "text") -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else getattr(logging, level_name)
    if not verbose:
        level = max(level, logging.WARNING)  # the command prints its own progress; warnings still show
    configure_logging(level, fmt)


def build_config(
    config_path: str | None,
    paths: tuple[str, ...] = (),
    parser: str = "plain",
    from_beginning: bool = False,
) -> Any:
    """The validated configuration with the command-line inputs added (`--path` reads from the start:
    the embedded runner is the quick start over files that already exist)."""
    from logtide.shippers.config import LogInputConfig, ParserConfig

    cfg = load_config(config_path)
    sc = cfg.shipper
    inputs = list(sc.inputs)
    if from_beginning:
        inputs = [i.model_copy(update={"start_position": "beginning"}) for i in inputs]
    if paths:
        inputs.append(
            LogInputConfig(paths=list(paths), parser=ParserConfig(type=parser), start_position="beginning")  # type: ignore[arg-type]
        )
    return cfg.model_copy(update={"shipper": sc.model_copy(update={"inputs": inputs})})


def run_pipeline(
    cfg: Any, data_dir: Path, once: bool, *, clickhouse: bool = False, quiet: bool = False,
    alerts: Any = None,
) -> Any:
    """Run the embedded pipeline in this process (signals stop it gracefully); returns its Summary.
    `alerts` (an EmbeddedAlerts) gets every anomaly in the same event loop."""
    from logtide.embedded import EmbeddedRunner, format_anomaly_line

    def show(a: Any) -> None:
        if not quiet:
            click.echo(format_anomaly_line(a))
        if alerts is not None:
            alerts.ingest(a)

    runner = EmbeddedRunner(cfg, data_dir, once=once, on_anomaly=show, clickhouse=clickhouse)

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.request_stop)
        if alerts is None:
            return await runner.run()
        await alerts.start()
        try:
            return await runner.run()
        finally:
            await alerts.finish()

    return asyncio.run(main())


def read_docs(path: Path) -> list[dict[str, Any]]:
    """The documents of one NDJSON output file."""
    import orjson

    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _summary_text(s: Any, data_dir: Path, seconds: float) -> str:
    text = (
        f"processed {s.events} events ({s.flagged} flagged by the parser, {s.skewed} with clock skew) "
        f"in {seconds:.1f}s: {s.dead_letters} dead letters ({s.late} events late), {s.aggregates} aggregates, "
        f"{s.anomalies} anomalies -> {data_dir}/"
    )
    if getattr(s, "kept_out", 0):
        text += (
            f"\n{s.kept_out} events kept out of the windows: clock skew beyond streams.max_future_skew_seconds"
            " / streams.max_past_skew_seconds (wall clock); raise or unset those settings to window them"
        )
    if getattr(s, "untimed", 0):
        text += (
            f"\n{s.untimed} events kept out of the windows: the parser found no event time in the line"
            " (flags ts_missing / ts_unparsed / parse_failure); choose the parser that fits the file"
        )
    if s.late:
        text += (
            f"\n{s.late} events late (behind their series' watermark by more than"
            " streams.window.lateness_seconds; the reasons are in deadletter.ndjson): raise that setting"
            " to fold them in"
        )
    return text


@click.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Configuration file (YAML).")
@click.option("--data-dir", type=click.Path(file_okay=False), default="./data", show_default=True,
              help="Where the NDJSON outputs and the state (offsets, windows, detectors) live.")  # fmt: skip
@click.option(
    "--once", is_flag=True, help="Read the files to their end, close every window, print a summary, exit."
)
@click.option("--path", "paths", multiple=True, help="Glob of files to read (repeatable); adds an input.")
@click.option(
    "--parser", type=click.Choice(PARSERS), default="plain", show_default=True, help="Parser for --path."
)
@click.option(
    "--from-beginning", is_flag=True, help="Config inputs without a checkpoint start at the beginning."
)
@click.option(
    "--clickhouse", is_flag=True, help="Also write into the embedded ClickHouse (chdb) under the data dir."
)
@click.option("-q", "--quiet", is_flag=True, help="Do not print anomalies as they are found.")
@click.option("-v", "--verbose", count=True, help="More logging.")
def run(  # noqa: PLR0917 - click passes every option
    config_path: str | None,
    data_dir: str,
    once: bool,
    paths: tuple[str, ...],
    parser: str,
    from_beginning: bool,
    clickhouse: bool,
    quiet: bool,
    verbose: int,
) -> None:
    """Run the whole pipeline in this process, no Kafka: shipper inputs, operators and detectors.

    Enriched events, aggregates, anomalies and dead letters go to NDJSON files under --data-dir;
    anomalies are also printed, one line each. Stop with Ctrl-C (the state is kept; a restart resumes).
    """
    from logtide.embedded import DataDirLocked

    try:
        cfg = build_config(config_path, paths, parser, from_beginning)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(2) from None
    _setup_logging(cfg.logging.level, verbose, cfg.logging.format)
    sc = cfg.shipper
    if not sc.inputs and not sc.host_metrics.enabled and not sc.prometheus_scrapes:
        click.echo("nothing to read: give --path GLOB or inputs in the config's shipper section", err=True)
        raise SystemExit(2)
    out = Path(data_dir)
    t0 = time.monotonic()
    alerts = None
    if cfg.alerts.enabled and any(
        r.webhook_configs or r.slack_configs or r.pagerduty_configs or r.alertmanager_configs
        for r in cfg.alerts.receivers
    ):  # the alert core in-process when the config names receivers
        from logtide.alerts_embedded import EmbeddedAlerts

        out.mkdir(parents=True, exist_ok=True)
        alerts = EmbeddedAlerts(cfg.alerts, out / "alerts.ndjson", None if quiet else click.echo, live=not once)
    try:
        s = run_pipeline(cfg, out, once, clickhouse=clickhouse, quiet=quiet, alerts=alerts)
    except DataDirLocked as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(1) from None
    click.echo(_summary_text(s, out, time.monotonic() - t0))


def _settings_text(detect: Any) -> str:
    """What the demo's configuration set for detection, read from the configuration that ran."""
    params = ", ".join(f"{k} {v}" for k, v in sorted((detect.params or {}).items()))
    return f"the demo sets that cut-off to {detect.threshold:g}" + (f" and {params} windows" if params else "")


def what_you_saw(s: Any, spec: Any, window_s: float, detect: Any) -> str:
    """The closing paragraph of the demo, saying what the detectors actually found and what was set."""
    hit, elsewhere = [], []
    for a in s.anomaly_list:
        if a.status != "firing":
            continue  # an episode's resolve is not a new finding
        inside = spec.incident_start < a.timestamp <= spec.incident_end + timedelta(minutes=1)
        (hit if inside and a.series.labels.get("service") == spec.service else elsewhere).append(a)
    found = (
        f"The {len(hit)} anomalies above at {spec.incident_start:%H:%M} are the detectors noticing it, on "
        f"the {spec.service} series, within a minute of its start"
        if hit
        else "This time the detectors missed it (see anomalies.ndjson and aggregates.ndjson)"
    )
    quiet = (
        "; the other services and the quiet hours raised nothing."
        if not elsewhere
        else f"; {len(elsewhere)} other anomalies are statistical blips of normal traffic."
    )
    text = (
        f"What you just saw: logtide read {spec.minutes / 60:g} hours of generated nginx access logs and "
        "Java application logs (multiline stack traces included) of four services, parsed and enriched "
        f"every line, derived per-service metrics (request counts, error ratio, p90 latency) in "
        f"{window_s:g}-second event-time windows, and ran every series through the production anomaly "
        "detector, which learns each series' normal level and noise as it goes, with one cut-off on a "
        f"calibrated tail probability for all series ({_settings_text(detect)}). At "
        f"{spec.incident_start:%H:%M} UTC the {spec.service} service started failing for "
        f"{spec.incident_minutes} minutes: 5xx responses, ERROR lines with stack traces, slower requests. "
        f"{found}{quiet} The same operators run under Faust with Kafka in production "
        "(`logtide ship` + `logtide streams`)."
    )
    return textwrap.fill(text, width=100, break_on_hyphens=False)


@click.command("demo")
@click.option("--data-dir", type=click.Path(file_okay=False), default="./data/demo", show_default=True,
              help="Where the generated logs, the demo config and the outputs go (the demo's own files there are replaced).")  # fmt: skip
@click.option("--minutes", type=click.IntRange(60, 24 * 60), default=180, show_default=True,
              help="Event time covered by the generated logs, ending now.")  # fmt: skip
@click.option("--seed", type=int, default=12, show_default=True, help="Random seed of the generator.")
@click.option("--clickhouse", is_flag=True,
              help="Also leave the results in an embedded ClickHouse (chdb) database under DATA_DIR/clickhouse "
                   "(the tables the Grafana dashboards query).")  # fmt: skip
@click.option("--alert-webhook", metavar="URL", help="Also send the alert notifications to this webhook "
              "(Alertmanager webhook payload v4).")
@click.option("--alert-secret", metavar="whsec_...", envvar="LOGTIDE_ALERT_SECRET",
              help="Sign the webhook notifications (Standard Webhooks); or LOGTIDE_ALERT_SECRET.")
@click.option("--alertmanager", metavar="URL", help="Also push the alerts to this Alertmanager (POST /api/v2/alerts).")
@click.option("-v", "--verbose", count=True, help="More logging.")
def demo(*, data_dir: str, minutes: int, seed: int, clickhouse: bool, alert_webhook: str | None,
         alert_secret: str | None, alertmanager: str | None, verbose: int) -> None:
    """Generate realistic logs with an incident and run the embedded pipeline on them."""
    from logtide.alerts_embedded import EmbeddedAlerts, demo_alerts_config
    from logtide.demo_data import DemoSpec, demo_config_yaml, incident_view, write_demo_logs
    from logtide.embedded import OUTPUT_FILES, format_anomaly_line

    try:
        alerts_cfg = demo_alerts_config(alert_webhook, alert_secret, alertmanager)
    except ValueError as exc:
        raise click.BadParameter(str(exc).splitlines()[-1], param_hint="--alert-secret") from None

    _setup_logging("WARNING", verbose)
    out = Path(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("logs", "state", "clickhouse"):  # only what the demo itself creates
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (*OUTPUT_FILES, "alerts"):
        (out / f"{name}.ndjson").unlink(missing_ok=True)
    end = datetime.now(UTC).replace(second=0, microsecond=0)  # whole minutes: the last window is complete
    spec = DemoSpec(end=end, minutes=minutes, seed=seed)
    click.echo(f"generating {minutes} minutes of nginx and application logs (seed {seed}) in {out}/logs ...")
    t0 = time.monotonic()
    counts = write_demo_logs(out / "logs", spec)
    click.echo(f"  {counts['access']} access log lines, {counts['app']} application log lines "
               f"in {time.monotonic() - t0:.1f}s; incident: {spec.service} "
               f"{spec.incident_start:%H:%M}-{spec.incident_end:%H:%M} UTC")  # fmt: skip
    cfg_path = out / "demo.yaml"
    cfg_path.write_text(demo_config_yaml(out / "logs"))
    click.echo(f"running: logtide run --config {cfg_path} --data-dir {out} --once\n")
    click.echo("anomalies:")
    cfg = build_config(str(cfg_path))
    t0 = time.monotonic()
    notes: list[str] = []
    alerts = EmbeddedAlerts(alerts_cfg, out / "alerts.ndjson", on_line=notes.append)
    s = run_pipeline(cfg, out, True, clickhouse=clickhouse, quiet=True, alerts=alerts)
    for a in sorted(s.anomaly_list, key=lambda a: (a.timestamp, a.series.key)):
        line = format_anomaly_line(a)
        click.echo(line if a.status == "firing" else f"{line}  RESOLVED (episode {a.episode_id[:12]})")
    if not s.anomalies:
        click.echo("  (none)")
    targets = [x for x in (alert_webhook, alertmanager and f"Alertmanager {alertmanager}") if x]
    click.echo("\nalert notifications (grouped by service; event time)"
               + (f", sent to {', '.join(targets)}:" if targets else ":"))
    for line in notes:
        click.echo("  " + line)
    if not notes:
        click.echo("  (none)")
    click.echo("\n" + _summary_text(s, out, time.monotonic() - t0) + "\n")
    for line in incident_view(read_docs(out / "aggregates.ndjson"), spec):
        click.echo(line)
    click.echo(f"\noutputs in {out}/: " + ", ".join(f"{n}.ndjson" for n in (*OUTPUT_FILES, "alerts"))
               + f"; config {cfg_path}; logs {out}/logs/")  # fmt: skip
    click.echo(f"one anomaly in full: head -1 {out}/anomalies.ndjson | python3 -m json.tool")
    if clickhouse:
        click.echo(f"ClickHouse (chdb) database: {out}/clickhouse (tables logtide.logs, metrics_agg, anomalies, "
                   f"deadletter; the Grafana dashboards' queries run on it)")  # fmt: skip
    click.echo(
        f"re-run the pipeline yourself: logtide run --config {cfg_path} --data-dir {out}-rerun --once\n"
    )
    click.echo(what_you_saw(s, spec, cfg.streams.window.size_seconds, cfg.streams.detect))
