"""One YAML file configures every logtide process.

It is validated at start; every error names the key path and the reason. Secrets come from the
environment (`${VAR}`, `${VAR:-default}`) or files (`${file:/path}`), are held as `SecretStr` and
never reach a log line or `config check` output.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, SecretStr, ValidationError, model_validator

from logtide.shippers.config import ShipperConfig
from logtide.sinks.alerts.config import AlertsConfig
from logtide.sinks.config import SinksConfig
from logtide.streams.config import StreamsConfig

_REF = re.compile(r"\$\{([^}]+)\}")


class ConfigError(ValueError):
    """A configuration problem; `problems` lists `key.path: reason` lines."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid configuration\n" + "\n".join(f"  - {p}" for p in problems))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TlsConfig(_Section):
    """TLS to the brokers: a CA to trust, and a client certificate for mutual TLS."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: SecretStr | None = None
    check_hostname: bool = True

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class SaslConfig(_Section):
    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
    username: str
    password: SecretStr


class ProducerConfig(_Section):
    acks: Literal["all", "1", "0"] = "all"
    compression: Literal["lz4", "zstd", "gzip", "snappy", "none"] = "lz4"
    linger_ms: int = Field(default=20, ge=0, le=60_000)
    max_batch_bytes: PositiveInt = 1 << 20
    max_request_bytes: PositiveInt = 4 << 20
    request_timeout_ms: PositiveInt = 30_000
    enable_idempotence: bool = True


class KafkaConfig(_Section):
    bootstrap_servers: list[str] = Field(default_factory=lambda: ["127.0.0.1:9092"], min_length=1)
    client_id: str = "logtide"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    tls: TlsConfig | None = None
    sasl: SaslConfig | None = None
    producer: ProducerConfig = Field(default_factory=ProducerConfig)

    @model_validator(mode="after")
    def _security(self) -> KafkaConfig:
        if self.security_protocol.startswith("SASL") and self.sasl is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs a sasl section")
        if self.sasl is not None and not self.security_protocol.startswith("SASL"):
            raise ValueError("a sasl section needs security_protocol SASL_PLAINTEXT or SASL_SSL")
        return self


class TopicSettings(_Section):
    partitions: PositiveInt | None = None
    replication_factor: PositiveInt | None = None
    retention_ms: int | None = Field(default=None, ge=-1)


class TopicsConfig(_Section):
    prefix: str = "logtide."
    partitions: PositiveInt = 6
    replication_factor: PositiveInt = 1
    retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=-1)
    overrides: dict[
        Literal["logs.raw", "metrics.raw", "logs.enriched", "metrics.agg", "anomalies", "deadletter", "alerts",
                "alerts.nflog", "alerts.silences"],
        TopicSettings,
    ] = Field(default_factory=dict)

    def settings(self, short: str) -> tuple[int, int, int]:
        """(partitions, replication factor, retention ms) for one topic, overrides applied."""
        o = self.overrides.get(short) or TopicSettings()  # type: ignore[call-overload]
        return (
            o.partitions or self.partitions,
            o.replication_factor or self.replication_factor,
            self.retention_ms if o.retention_ms is None else o.retention_ms,
        )


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Config(_Section):
    """The whole file. Sections a process does not use are validated all the same."""

    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    topics: TopicsConfig = Field(default_factory=TopicsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    shipper: ShipperConfig = Field(default_factory=ShipperConfig)
    streams: StreamsConfig = Field(default_factory=StreamsConfig)
    sinks: SinksConfig = Field(default_factory=SinksConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)


def _resolve_ref(ref: str, env: dict[str, str], path: str) -> str:
    if ref.startswith("file:"):
        file = Path(ref[5:]).expanduser()
        try:
            return file.read_text().rstrip("\n")
        except OSError as exc:
            raise ConfigError("config", [f"{path}: cannot read secret file {file}: {exc.strerror}"]) from None
    name, sep, default = ref.partition(":-")
    if name in env:
        return env[name]
    if sep:
        return default
    raise ConfigError("config", [f"{path}: environment variable {name} is not set"])


def _interpolate(node: Any, env: dict[str, str], path: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, env, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, env, f"{path}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        return _REF.sub(lambda m: _resolve_ref(m.group(1), env, path), node)
    return node


def _format_errors(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-")) or "<root>"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        if (
            err["type"] not in ("extra_forbidden", "missing")
            and "input" in err
            and not isinstance(err["input"], dict)
        ):
            shown = (
                "<secret>" if any(s in loc for s in ("password", "secret", "token", "routing_key", "url")) else repr(err["input"])
            )
            msg = f"{msg} (got {shown[:80]})"
        lines.append(f"{loc}: {msg}")
    return lines


def parse_config(data: Any, source: str = "config", env: dict[str, str] | None = None) -> Config:
    """Validate an already-loaded mapping; raises ConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [f"<root>: expected a mapping, got {type(data).__name__}"])
    try:
        data = _interpolate(data, dict(os.environ) if env is None else env)
    except ConfigError as exc:
        raise ConfigError(source, exc.problems) from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _format_errors(exc)) from None


def load_config(path: str | Path | None, env: dict[str, str] | None = None) -> Config:
    """Read and validate a YAML file. None means the file named by `LOGTIDE_CONFIG` (how the
    container images are configured), else all defaults."""
    if path is None:
        path = (env if env is not None else os.environ).get("LOGTIDE_CONFIG") or None
    if path is None:
        return parse_config({}, "defaults", env)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"<file>: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"<file>: not UTF-8 text: {exc.reason}"]) from None
    return parse_config_text(text, str(path), env)


def parse_config_text(text: str, source: str = "config", env: dict[str, str] | None = None) -> Config:
    """Validate YAML text; any problem (syntax, keys, values) raises ConfigError naming where."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<file>"
        raise ConfigError(source, [f"{where}: YAML syntax error: {getattr(exc, 'problem', exc)}"]) from None
    except RecursionError:
        raise ConfigError(source, ["<file>: YAML nested too deeply"]) from None
    except ValueError as exc:  # e.g. an integer of thousands of digits (Python's conversion limit)
        raise ConfigError(source, [f"<file>: YAML value not readable: {exc}"]) from None
    return parse_config(data, source, env)
