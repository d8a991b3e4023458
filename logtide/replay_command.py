"""`logtide replay`: the records of a time range of a topic, to NDJSON, to another topic, or through
the streams operators again (`--process`).

Contract for scripts: `logtide replay --bootstrap HOST:PORT --topic TOPIC --from TS --to TS --output FILE`
writes exactly the values of the records whose timestamps lie in `[from, to)`, from every partition,
one per line (partitions interleaved as fetched; offset order within each, which is timestamp order
when the producer stamps in order, as the shipper does), and exits 0; a summary goes to stderr.
Range rules: `logtide/topic_range.py`; which time a record carries: `logtide/replay.py`; where the
records go: `logtide/replay_sinks.py`.

Exit codes: 0 done (also when the range selects nothing), 1 an error (unknown topic, broker), 2 bad
arguments, 130 stopped by Ctrl-C (the message says how to resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click

from logtide.config import Config
from logtide.config_command import load_for_command
from logtide.kafka_client import connection_kwargs
from logtide.replay import Window, check_window, decode_token, encode_token, event_time_ms
from logtide.replay_sinks import NdjsonSink, ProcessSink, TopicSink
from logtide.timespec import TimeSpecError, format_ms, parse_duration_ms, parse_time_ms


async def run_replay(
    cfg: Config,
    topic: str,
    window: Window,
    sink: Any,
    *,
    follow: bool = False,
    resume: dict[int, int] | None = None,
    max_rate: float | None = None,
    progress: bool | None = None,
    err: IO[str] = sys.stderr,
    install_signals: bool = True,
) -> dict[str, Any]:
    """Read the range into `sink`; returns counts and, when stopped early, the resume token."""
    from logtide.progress import Progress
    from logtide.topic_range import RangeReader

    seek_from, seek_to = window.seek_range()
    reader = RangeReader(
        connection_kwargs(cfg.kafka), topic, seek_from, seek_to, follow=follow, resume=resume, max_rate=max_rate
    )
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    if install_signals:  # before connecting: Ctrl-C at any moment stops cleanly
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, reader.stop)
    try:
        await reader.open()
    except BaseException:
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        raise
    if hasattr(sink, "bind"):
        sink.bind(reader)
    bar = Progress("replay", reader.stats.planned, bar=progress, stream=err)
    outside_event_time = untimed = 0
    try:
        if hasattr(sink, "start"):
            await sink.start()
        async for batch in reader.batches():
            records = batch.records
            if window.by == "event-time":
                keep = []
                for r in records:
                    t = event_time_ms(r.value)
                    if t is None:
                        untimed += 1
                    elif t >= window.from_ms and (window.to_ms is None or t < window.to_ms):
                        keep.append(r)
                    else:
                        outside_event_time += 1
                records = keep
            await sink.handle(batch, records)
            bar.update(batch.next_offset - reader.plans[batch.partition].position,
                       format_ms(batch.records[-1].timestamp) if batch.records else "")  # fmt: skip
    finally:
        bar.close()
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        if hasattr(sink, "interrupted"):
            sink.interrupted = not reader.done  # Ctrl-C or an error: the range is not complete
        try:
            await sink.close()
        finally:
            await reader.close()
    st = reader.stats
    out: dict[str, Any] = {
        "selected": st.read - outside_event_time - untimed,
        "outside_by_record_time": st.outside,
        "outside_by_event_time": outside_event_time,
        "without_event_time": untimed,
        "partitions": st.partitions,
        "empty_partitions": st.empty_partitions,
        "seconds": time.monotonic() - started,
        "stopped": reader.stopped and not reader.done,
        "last_ts": reader.last_ts,
        "sink_summary": sink.summary(),
    }
    if out["stopped"]:
        out["token"] = encode_token(topic, window, reader.positions)
    return out


def _parse_window(from_: str | None, to: str | None, by: str, margin: str, now_ms: int) -> Window:
    try:
        from_ms = parse_time_ms(from_, now_ms) if from_ else 0
        to_ms = parse_time_ms(to, now_ms) if to else None
        margin_ms = None if margin == "all" else parse_duration_ms(margin)
        check_window(from_ms, to_ms)
    except (TimeSpecError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    return Window(from_ms, to_ms, by, margin_ms)  # type: ignore[arg-type]


@click.command("replay", epilog="""\b
Examples:
  logtide replay --topic logs.raw --from 2026-11-30T08:00:00Z --to 2026-11-30T09:00:00Z --output hour.ndjson
  logtide replay --topic logs.raw --from -2h --to -1h --into-topic staging.logs.raw
  logtide replay --config new-detectors.yaml --topic logs.raw --from -7d --to now --process --data-dir what-if
""")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Configuration file.")
@click.option("--bootstrap", help="Override kafka.bootstrap_servers (HOST:PORT[,HOST:PORT]).")
@click.option("--topic", help="Topic to read: any topic, or a logtide short name (logs.raw) under the configured "
              "prefix; never created.")
@click.option("--from", "from_", metavar="TS", help="Start, inclusive: ISO 8601 with zone, epoch ms, or -2h / 30m ago.")
@click.option("--to", metavar="TS", help="End, exclusive (default: the topic's end now).")
@click.option("--output", metavar="FILE|-", help="Write the record values as NDJSON (- = stdout).")
@click.option("--into-topic", metavar="TOPIC", help="Re-publish the records (keys, timestamps kept).")
@click.option("--process", "process_", is_flag=True, help="Run validate, enrich, window, detect (fresh state unless --state-from).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="--process: where the NDJSON go "
              "(default ./replay-<id>).")
@click.option("--sink", "sink_es", is_flag=True, help="--process: also write to Elasticsearch (idempotent).")
@click.option("--es", "es_hosts", help="--sink: Elasticsearch URLs (overrides sinks.elasticsearch.hosts).")
@click.option("--es-index-prefix", help="--sink: index prefix (default sinks.elasticsearch.index_prefix); a what-if "
              "replay writes beside the live indices with e.g. logtide-whatif, a backfill into them without it.")
@click.option("--clickhouse-path", type=click.Path(file_okay=False),
              help="--process: also write to embedded ClickHouse here (idempotent).")
@click.option("--replay-id", help="--process: label for the anomalies (default: generated).")
@click.option("--state-from", type=click.Path(file_okay=False, exists=True),
              help="--process: start from the windows and detectors another run saved (its --data-dir).")
@click.option("--by", type=click.Choice(["record-time", "event-time"]), default="record-time", show_default=True,
              help="Select on the Kafka record timestamp (send time) or the event's @timestamp.")
@click.option("--margin", default="1h", show_default=True,
              help="--by event-time: how much earlier/later records may have been sent (or 'all').")
@click.option("--follow", is_flag=True, help="Keep reading new records until one is at or past --to.")
@click.option("--max-rate", type=click.FloatRange(min=1), help="Read at most this many records per second.")
@click.option("--resume", "resume_token", metavar="TOKEN", help="Continue a stopped replay (appends to --output).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
def replay(  # noqa: PLR0917 - click passes every option
    config_path: str | None, bootstrap: str | None, topic: str | None, from_: str | None, to: str | None,
    output: str | None, into_topic: str | None, process_: bool, data_dir: str | None, sink_es: bool,
    es_hosts: str | None, es_index_prefix: str | None, clickhouse_path: str | None, replay_id: str | None,
    state_from: str | None, by: str, margin: str, follow: bool, max_rate: float | None,
    resume_token: str | None, progress: bool | None,
) -> None:  # fmt: skip
    """Replay the records of TOPIC whose timestamps lie in [--from, --to)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if sum(x is not None and x is not False for x in (output, into_topic, process_ or None)) != 1:
        raise click.UsageError("choose one of --output FILE|-, --into-topic TOPIC, --process")
    resume = None
    if resume_token:
        try:
            t_topic, window, resume = decode_token(resume_token)
        except ValueError as exc:
            raise click.UsageError(f"--resume: {exc}") from None
        if topic and topic != t_topic:
            raise click.UsageError(f"--resume: the token is for topic {t_topic!r}, not {topic!r}")
        topic = t_topic
    else:
        if not topic:
            raise click.UsageError("--topic is required")
        window = _parse_window(from_, to, by, margin, int(time.time() * 1000))
    if into_topic is not None and into_topic == topic and follow:
        raise click.UsageError("--into-topic is the topic being read: with --follow it would replay its own output")
    cfg = load_for_command(config_path, bootstrap)
    from logtide.schemas import Topics
    from logtide.schemas.topics import ALL

    if topic in ALL:  # a short logtide name (logs.raw): the configured prefix's topic unless one is named so
        topic = asyncio.run(_short_name(cfg, topic))
    if into_topic is not None:  # a destination this user may not write: one clear error before reading
        from logtide.kafka_preflight import preflight

        preflight(cfg.kafka, [into_topic], logging.getLogger("logtide.replay"))

    async def main() -> dict[str, Any]:
        from logtide.topic_range import UnknownTopic

        sink: Any
        es_client = None
        if output is not None:
            sink = NdjsonSink(output, append=resume is not None)
        elif into_topic is not None:
            parts = await _partitions(cfg, topic)
            sink = TopicSink(cfg, into_topic, parts)
        else:
            rid = replay_id or f"replay-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"
            es_write = None
            if sink_es:
                from logtide.replay_sinks import elasticsearch_writer
                from logtide.sinks.config import ElasticsearchConfig

                es_cfg = cfg.sinks.elasticsearch or ElasticsearchConfig()
                if es_hosts:
                    es_cfg = es_cfg.model_copy(update={"hosts": es_hosts.split(",")})
                if es_index_prefix:
                    es_cfg = es_cfg.model_copy(update={"index_prefix": es_index_prefix})
                es_write, es_client = await elasticsearch_writer(cfg, es_cfg)
            metrics = topic == Topics(cfg.topics.prefix).metrics_raw
            sink = ProcessSink(cfg, Path(data_dir or rid), rid, metrics=metrics, topic=topic, es_write=es_write,
                               clickhouse_path=Path(clickhouse_path) if clickhouse_path else None,
                               state_from=Path(state_from) if state_from else None)  # fmt: skip
        try:
            return await run_replay(cfg, topic, window, sink, follow=follow, resume=resume,
                                    max_rate=max_rate, progress=progress)  # fmt: skip
        except UnknownTopic as exc:
            with contextlib.suppress(Exception):
                await sink.close()
            raise click.ClickException(f"unknown topic {exc.args[0]!r} (a replay never creates topics)") from None
        finally:
            if es_client is not None:
                await es_client.close()

    from aiokafka.errors import KafkaError, OffsetOutOfRangeError

    try:
        res = asyncio.run(main())
    except BrokenPipeError:  # stdout closed by its reader (`| head`): stop quietly, as `cat` does
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(141) from None
    except OffsetOutOfRangeError as exc:
        raise click.ClickException(f"replay failed: records were deleted (retention) while being read: {exc}") from None
    except (OSError, KafkaError) as exc:
        raise click.ClickException(f"replay failed: {type(exc).__name__}: {exc}") from None
    _report(res, topic, window, sink_summary=res.get("sink_summary"))
    if res["stopped"]:
        raise SystemExit(130)


async def _short_name(cfg: Config, short: str) -> str:
    from logtide.schemas import Topics
    from logtide.topic_range import UnknownTopic, topic_partitions

    try:
        await topic_partitions(connection_kwargs(cfg.kafka), short)
        return short
    except UnknownTopic:
        return Topics(cfg.topics.prefix).name(short)


async def _partitions(cfg: Config, topic: str) -> int:
    from logtide.topic_range import topic_partitions

    return len(await topic_partitions(connection_kwargs(cfg.kafka), topic))


def _report(res: dict[str, Any], topic: str, window: Window, sink_summary: str | None) -> None:
    rng = f"[{format_ms(window.from_ms)}, {format_ms(window.to_ms) if window.to_ms is not None else 'end'})"
    what = "event times" if window.by == "event-time" else "timestamps"
    err = sys.stderr
    if res["selected"] == 0 and not res["stopped"]:
        err.write(f"replay: no records of {topic} have {what} in {rng} "
                  f"({res['partitions']} partitions looked at)\n")  # fmt: skip
    rate = res["selected"] / res["seconds"] if res["seconds"] > 0 else 0.0
    line = (
        f"replay: {res['selected']} records of {topic} in {rng} from {res['partitions']} partitions "
        f"({res['empty_partitions']} with none) in {res['seconds']:.1f} s ({rate:.0f} records/s)"
    )
    if res["outside_by_record_time"]:
        line += f"; {res['outside_by_record_time']} out-of-order records outside the range skipped"
    if window.by == "event-time":
        line += (f"; {res['outside_by_event_time']} outside by event time, "
                 f"{res['without_event_time']} without a readable @timestamp skipped")  # fmt: skip
    err.write(line + "\n")
    if sink_summary:
        err.write(f"replay: {sink_summary}\n")
    if res["stopped"]:
        last = format_ms(res["last_ts"]) if res["last_ts"] is not None else "none yet"
        err.write(
            f"replay: stopped; last record timestamp {last}. Resume exactly with:\n"
            f"  logtide replay --resume {res['token']} [same output option]\n"
        )
