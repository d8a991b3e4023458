"""Configuration: validated at start, errors name the key path, secrets never printed."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from logtide.cli import main
from logtide.config import ConfigError, load_config, parse_config
from logtide.kafka_client import producer_kwargs

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))
ENV = {"KAFKA_PASSWORD": "s3cret-from-env"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_loads(path: Path) -> None:
    cfg = load_config(path, env=ENV)
    assert cfg.kafka.bootstrap_servers


def test_defaults_are_local_and_durable() -> None:
    cfg = parse_config({})
    assert cfg.kafka.bootstrap_servers == ["127.0.0.1:9092"]
    kw = producer_kwargs(cfg.kafka)
    assert kw["acks"] == "all" and kw["enable_idempotence"] is True
    assert kw["compression_type"] == "lz4"
    assert cfg.topics.settings("anomalies") == (6, 1, 7 * 24 * 3600 * 1000)


def test_overrides_apply_per_topic() -> None:
    cfg = load_config(Path("examples/kafka-secure.yaml"), env=ENV)
    assert cfg.topics.settings("anomalies") == (3, 3, 2592000000)
    assert cfg.topics.settings("logs.raw") == (12, 3, 7 * 24 * 3600 * 1000)


def _problems(data: object, env: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env=env or {})
    return info.value.problems


def test_errors_name_the_key_path_and_reason() -> None:
    problems = _problems(
        {
            "kafka": {"bootstrap_server": "x", "producer": {"compression": "brotli", "linger_ms": -5}},
            "topics": {"partitions": 0},
        }
    )
    text = "\n".join(problems)
    assert "kafka.bootstrap_server: unknown key" in text
    assert "kafka.producer.compression:" in text and "brotli" in text
    assert "kafka.producer.linger_ms:" in text
    assert "topics.partitions:" in text


def test_missing_env_var_is_named() -> None:
    problems = _problems({"kafka": {"client_id": "${NOPE_NOT_SET}"}})
    assert problems == ["kafka.client_id: environment variable NOPE_NOT_SET is not set"]


def test_env_default_and_file_secrets(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-a-file\n")
    cfg = parse_config(
        {
            "kafka": {
                "client_id": "${CID:-fallback}",
                "security_protocol": "SASL_PLAINTEXT",
                "sasl": {"mechanism": "PLAIN", "username": "u", "password": f"${{file:{secret}}}"},
            }
        },
        env={},
    )
    assert cfg.kafka.client_id == "fallback"
    assert cfg.kafka.sasl is not None
    assert cfg.kafka.sasl.password.get_secret_value() == "from-a-file"
    assert "from-a-file" not in repr(cfg) and "from-a-file" not in cfg.model_dump_json()
    assert producer_kwargs(cfg.kafka)["sasl_plain_password"] == "from-a-file"


def test_sasl_needs_matching_protocol() -> None:
    problems = _problems({"kafka": {"security_protocol": "SASL_SSL"}})
    assert any("needs a sasl section" in p for p in problems)


def test_tls_cert_needs_key() -> None:
    problems = _problems({"kafka": {"security_protocol": "SSL", "tls": {"cert_file": "/c.pem"}}})
    assert any(p.startswith("kafka.tls") and "go together" in p for p in problems)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("kafka:\n  bootstrap_servers: [a\n  client_id: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(f)
    assert "line" in info.value.problems[0] and "YAML" in info.value.problems[0]


def test_not_a_mapping_and_missing_file(tmp_path: Path) -> None:
    assert _problems(["a"]) == ["<root>: expected a mapping, got list"]
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_config_check_command_masks_secrets_and_reports_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["config", "check", "examples/kafka-secure.yaml"], env=ENV)
    assert ok.exit_code == 0, ok.output
    assert ok.output.count("\n") == 1 and ": ok (kafka " in ok.output and "SASL_SSL" in ok.output
    shown = runner.invoke(main, ["config", "check", "--show", "examples/kafka-secure.yaml"], env=ENV)
    assert shown.exit_code == 0, shown.output
    assert "s3cret-from-env" not in shown.output and "**********" in shown.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka:\n  sasl: {mechanism: FOO, username: u, password: hunter2}\n")
    res = runner.invoke(main, ["config", "check", str(bad)])
    assert res.exit_code == 2
    assert "kafka.sasl.mechanism" in res.output and "hunter2" not in res.output


def test_version_flag() -> None:
    res = CliRunner().invoke(main, ["--version"])
    assert res.exit_code == 0 and "logtide, version" in res.output


def test_streams_event_loop_is_uvloop_or_asyncio() -> None:
    from logtide.streams.config import StreamsConfig

    assert StreamsConfig().event_loop == "asyncio"
    assert StreamsConfig.model_validate({"event_loop": "uvloop"}).event_loop == "uvloop"
    with pytest.raises(ValueError, match="event_loop"):
        StreamsConfig.model_validate({"event_loop": "tokio"})
