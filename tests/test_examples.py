"""Every file in examples/ is a configuration a process accepts as written (with its secrets set)."""

from __future__ import annotations

from pathlib import Path

import pytest

from logtide.config import load_config

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))
ENV = {"KAFKA_PASSWORD": "s3cret-from-env", "ES_PASSWORD": "es-secret", "CLICKHOUSE_PASSWORD": "ch-secret"}


def test_there_is_an_example_per_process() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"sink.yaml", "streams.yaml", "shipper-nginx-app.yaml", "run-local.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_loads(path: Path) -> None:
    cfg = load_config(path, env=ENV)
    dumped = cfg.model_dump_json()
    assert "es-secret" not in dumped and "ch-secret" not in dumped and "s3cret-from-env" not in dumped


def test_sink_example_targets_both_stores() -> None:
    cfg = load_config(Path(EXAMPLES[0]).parent / "sink.yaml", env=ENV)
    assert cfg.sinks.elasticsearch is not None and cfg.sinks.clickhouse is not None
    assert cfg.sinks.clickhouse.mode == "server"
    assert cfg.sinks.clickhouse.password is not None
    assert cfg.sinks.clickhouse.password.get_secret_value() == "ch-secret"
