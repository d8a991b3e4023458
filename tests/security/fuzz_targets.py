"""Every place where bytes from outside enter logtide, as fuzz targets with their contracts.

A target takes bytes and raises `ContractViolation` (or lets an unexpected exception escape) only
when the code under test broke its promise: a decoder that raises instead of returning a dead
letter, a shipper that builds an event the schema rejects, a parser that raises something other
than ParseError. Shared by the test suite (hypothesis, small budget) and `bench/fuzz.py` (a
mutation campaign of a million inputs and more).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
from logtide.schemas import DeadLetter, LogEvent, decode
from logtide.schemas.models import Anomaly, MetricSample, WindowAggregate
from logtide.shippers.config import LogInputConfig, MultilineConfig, ParserConfig
from logtide.shippers.events import IdHasher, LogEventBuilder, host_block
from logtide.shippers.line_reader import LineReader
from logtide.shippers.multiline import MultilineAggregator
from logtide.shippers.parsers.timestamps import TimestampParser
from logtide.streams.validate import validate_log, validate_metric

from logtide.config import ConfigError, parse_config_text

MAX_LINE = 4096


class ContractViolation(AssertionError):
    """The code under test broke its promise for this input."""


PARSERS: dict[str, dict[str, Any]] = {
    "plain": {"type": "plain"},
    "json": {"type": "json"},
    "logfmt": {"type": "logfmt"},
    "access_log": {"type": "access_log"},
    "syslog": {"type": "syslog"},
    "regex": {"type": "regex", "pattern": r"^(?P<ts>\S+ \S+) (?P<level>[A-Z]+) (?P<message>.*)$"},
}


@cache
def _builder(parser: str) -> LogEventBuilder:
    cfg = LogInputConfig(paths=["/fuzz/*.log"], parser=ParserConfig(**PARSERS[parser]))
    return LogEventBuilder(cfg, host_block("fuzz-host"))


def shipper_event(parser: str) -> Callable[[bytes], None]:
    """Bytes of a file → lines → (multiline) → parser → event: every event is a valid LogEvent."""

    def target(data: bytes) -> None:
        reader = LineReader(MAX_LINE, "truncate")
        lines = reader.feed(data, 0)
        last = reader.flush()
        if last is not None:
            lines.append(last)
        b = _builder(parser)
        ids = IdHasher("fuzz-host", "fp")
        for start, _stop, raw, truncated in lines:
            if len(raw) > MAX_LINE:
                raise ContractViolation(f"line of {len(raw)} bytes past the {MAX_LINE}-byte cap")
            try:
                text, flags = raw.decode(), []
            except UnicodeDecodeError:
                text, flags = raw.decode("utf-8", "replace"), ["invalid_utf8"]
            if truncated:
                flags.append("truncated")
            enc, _failed = b.build(text, start, flags, {"path": "/fuzz/a.log"}, ids(start), "2026-01-01T00:00:00Z")
            got = decode(enc, LogEvent)
            if isinstance(got, DeadLetter):
                raise ContractViolation(f"shipper built an event the schema rejects: {got.error.message}")

    return target


def multiline(data: bytes) -> None:
    """Lines (capped by the line reader, as the harvester reads them) grouped into events never
    hold more than the configured caps."""
    cfg = MultilineConfig(mode="continuation", pattern=r"^\s", max_lines=50, max_bytes=2048)
    agg = MultilineAggregator(cfg)
    reader = LineReader(MAX_LINE, "truncate")
    lines = reader.feed(data, 0)
    last = reader.flush()
    for start, stop, raw, _truncated in [*lines, *([last] if last else [])]:
        ev = agg.push(raw.decode("utf-8", "replace"), start, stop)
        # one line may overshoot the byte cap it closes (it is cut when it is the first of its event)
        if ev is not None and len(ev.text.encode()) > cfg.max_bytes + 3 * MAX_LINE:
            raise ContractViolation(f"multiline event of {len(ev.text.encode())} bytes past max_bytes")
    agg.flush()


_TS = TimestampParser(["iso8601", "rfc3164", "clf", "apache_error", "unix", "auto"])


def timestamps(data: bytes) -> None:
    """A timestamp is parsed to ISO 8601 UTC or refused (None), never an exception."""
    raw = data.decode("utf-8", "replace")
    out = _TS.parse(raw)
    if out is not None:
        try:
            datetime.fromisoformat(out.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ContractViolation(f"timestamp parser produced {out!r}") from exc


def schema_decode(data: bytes) -> None:
    """decode() returns the model or a DeadLetter for every contract; the dead letter keeps the bytes."""
    for model in (LogEvent, MetricSample, WindowAggregate, Anomaly):
        got = decode(data, model)
        if isinstance(got, DeadLetter):
            if not got.error.type:
                raise ContractViolation("dead letter without an error type")
        elif not isinstance(got, model):
            raise ContractViolation(f"decode returned {type(got).__name__}")
        elif model is MetricSample and not math.isfinite(got.metric.value):
            raise ContractViolation("a metric sample with a non-finite value was accepted")


_NOW = datetime(2026, 6, 1, tzinfo=UTC)


def streams_validate(data: bytes) -> None:
    """The streams' first stage: an event or a dead letter, never an exception."""
    for fn in (validate_log, validate_metric):
        ev, _skew = fn(data, _NOW)
        if not isinstance(ev, LogEvent | MetricSample | DeadLetter):
            raise ContractViolation(f"validate returned {type(ev).__name__}")


def config_text(data: bytes) -> None:
    """A configuration file: a Config or a ConfigError that names where, never another exception."""
    try:
        parse_config_text(data.decode("utf-8", "replace"), "fuzz.yaml", env={})
    except ConfigError as exc:
        if not exc.problems:
            raise ContractViolation("ConfigError without a problem") from exc


_ALERT_LABELS = [{}, {"severity": "critical", "service": "pay", "metric": "log.events"},
                 {"severity": "warning", "service": "search", "team": "a\u00e9\x00"}]


def alerts_config(data: bytes) -> None:
    """The webhook/alert configuration (the `alerts:` section: routing tree, receivers, webhook secrets,
    inhibit rules, durations): a ConfigError that names where, or a section from which the routing
    tree and the inhibit rules build and route alerts without an exception."""
    from logtide.sinks.alerts.inhibit import Rule
    from logtide.sinks.alerts.routing import build_route

    try:
        cfg = parse_config_text(data.decode("utf-8", "replace"), "fuzz.yaml", env={"WHSEC": "whsec_" + "A" * 32})
    except ConfigError as exc:
        if not exc.problems:
            raise ContractViolation("ConfigError without a problem") from exc
        return
    alerts = cfg.alerts
    root = build_route(alerts.route)
    rules = [Rule.from_config(r) for r in alerts.inhibit_rules]
    receivers = {r.name for r in alerts.receivers}
    for labels in _ALERT_LABELS:
        for route in root.match(labels):
            if route.receiver not in receivers:
                raise ContractViolation(f"route {route.id} sends to unknown receiver {route.receiver!r}")
            route.group_labels(labels)
    for rule in rules:
        for m in (*rule.source, *rule.target):
            for labels in _ALERT_LABELS:
                m.matches(labels)


def prometheus_text(data: bytes) -> None:
    """A scrape body: samples, or ValueError for a malformed document."""
    from logtide.shippers.prometheus_scrape import encode, samples_from_text

    try:
        res = samples_from_text(data.decode("utf-8", "replace"), 1_700_000_000_000, {"job": "fuzz"})
    except ValueError:
        return
    for _key, enc in encode(host_block("fuzz-host"), res.samples):
        if isinstance(decode(enc, MetricSample), DeadLetter):
            raise ContractViolation("a scraped sample the schema rejects")


TARGETS: dict[str, Callable[[bytes], None]] = {
    **{f"shipper.{name}": shipper_event(name) for name in PARSERS},
    "multiline": multiline,
    "timestamps": timestamps,
    "schemas.decode": schema_decode,
    "streams.validate": streams_validate,
    "config": config_text,
    "alerts.config": alerts_config,
    "prometheus": prometheus_text,
}


def seeds() -> dict[str, list[bytes]]:
    """Valid inputs per target to mutate from (real log lines, valid records, a valid config)."""
    from pathlib import Path

    from tests.samples import samples

    data = Path(__file__).resolve().parents[1] / "data" / "logs"
    access = (data / "access" / "apache_combined_2k.log").read_bytes().splitlines()[:50]
    syslog = (data / "loghub" / "Linux_2k.log").read_bytes().splitlines()[:50]
    records = [orjson.dumps(d) for d in samples().values()]
    json_lines = [b'{"message": "hello", "level": "warn", "ts": "2026-01-01T00:00:00Z", "n": 1}']
    logfmt = [b'ts=2026-01-01T00:00:00Z level=error msg="disk full" path=/var free=0']
    regex = [b"2026-01-01 00:00:00 ERROR something failed"]
    stamps = [b"2026-01-01T00:00:00Z", b"Nov  9 12:01:01", b"10/Oct/2000:13:55:36 -0700", b"1700000000.5",
              b"Mon Dec 05 13:55:36 2005", b"17/06/09 20:10:40"]  # fmt: skip
    config = [b"kafka:\n  bootstrap_servers: ['127.0.0.1:9092']\ntopics:\n  prefix: 'x.'\n"
              b"shipper:\n  inputs:\n    - paths: ['/var/log/*.log']\n      parser: {type: json}\n"]  # fmt: skip
    alerts = [b"alerts:\n  route:\n    receiver: ops\n    group_by: [service, metric]\n    group_wait: 30s\n"
              b"    routes:\n      - matchers: ['severity=\"critical\"', 'service=~\"pay.*\"']\n        receiver: pager\n"
              b"        continue: true\n        repeat_interval: 1h30m\n      - matchers: ['team!=\"\"']\n"
              b"        group_by: ['...']\n        routes: [{receiver: ops, matchers: ['metric!~\"log\\\\..*\"']}]\n"
              b"  receivers:\n    - name: ops\n      webhook_configs:\n        - url: http://127.0.0.1:9/hook\n"
              b"          secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', '${WHSEC}']\n          max_alerts: 5\n"
              b"    - name: pager\n      alertmanager_configs: [{url: 'http://127.0.0.1:9093', resend_interval: 1m}]\n"
              b"  inhibit_rules:\n    - source_matchers: ['severity=\"critical\"']\n"
              b"      target_matchers: ['severity=~\"warning|info\"']\n      equal: [service]\n"
              b"  flapping: {window: 10, changes: 3}\n  delivery: {rate_per_second: 2, burst: 3}\n"
              b"  resolve_timeout: 5m\n"]  # fmt: skip
    prom = [b"# HELP up x\n# TYPE up gauge\nup{job=\"a\"} 1\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
            b"h_bucket{le=\"+Inf\"} 3\nh_sum 4.5\nh_count 3\n"]  # fmt: skip
    lines = access + syslog + json_lines + logfmt + regex
    out = {name: lines for name in TARGETS if name.startswith("shipper.")}
    out |= {"multiline": [b"\n".join(syslog[:10]), b"Exception\n  at a\n  at b\n"], "timestamps": stamps,
            "schemas.decode": records, "streams.validate": records, "config": config, "alerts.config": alerts, "prometheus": prom}  # fmt: skip
    return out


_INTERESTING = [b"\x00", b"\xff", b"\xc3\x28", b"\n", b"\r\n", b"{", b"}", b"[", b'"', b"\\", b"=", b" ", b":",
                b"NaN", b"Infinity", b"-1", b"1e999", b"9" * 30, b"null", b"true", b"\xf0\x9f\x92\xa9",
                b"\xed\xa0\x80", b"%", b"\t", b"<", b"le=", b"+Inf"]  # fmt: skip


def mutate(rng: Any, data: bytes, corpus: list[bytes]) -> bytes:
    """One to four random edits of `data` (flips, inserts of interesting bytes, deletes, repeats,
    splices with another seed, deep nesting): the classic mutation operators of AFL and libFuzzer."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        pos = rng.randint(0, len(buf))
        if op == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = rng.choice(_INTERESTING)
        elif op == 2 and buf:
            end = min(len(buf), pos + rng.randint(1, 16))
            del buf[pos:end]
        elif op == 3 and buf:
            end = min(len(buf), pos + rng.randint(1, 32))
            buf[pos:pos] = buf[pos:end] * rng.randint(2, 64)
        elif op == 4:
            other = rng.choice(corpus)
            cut = rng.randint(0, len(other))
            buf = buf[:pos] + bytearray(other[cut:])
        elif op == 5:
            depth = rng.choice((10, 100, 1000))
            buf[pos:pos] = b"[" * depth + b"1" + b"]" * rng.choice((0, depth))
        elif op == 6:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 7 and buf:
            buf = buf[: rng.randint(0, len(buf))]
        else:
            buf[pos:pos] = rng.choice(_INTERESTING) * rng.randint(1, 2000)
    return bytes(buf)


def campaign(names: list[str], per_target: int, seed: int = 0) -> dict[str, Any]:
    """Run `per_target` mutated inputs through each target; failures grouped by where they came from."""
    import random
    import traceback

    rng = random.Random(seed)
    corpora = seeds()
    tried = 0
    failures: dict[tuple[str, str, str], dict[str, Any]] = {}
    for name in names:
        target, corpus = TARGETS[name], corpora[name]
        for _ in range(per_target):
            data = mutate(rng, rng.choice(corpus), corpus)
            tried += 1
            try:
                target(data)
            except Exception as exc:
                frame = traceback.extract_tb(exc.__traceback__)[-1]
                key = (name, type(exc).__name__, f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}")
                entry = failures.setdefault(key, {"count": 0, "example": data[:300], "message": str(exc)[:300]})
                entry["count"] += 1
    return {"tried": tried, "failures": failures}
