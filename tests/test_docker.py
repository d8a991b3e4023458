"""No Docker engine runs here: the compose stack is validated by parsing it and checking what it refers to."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from logtide.config import load_config

DOCKER = Path(__file__).parent.parent / "docker"


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_runs_the_full_stack() -> None:
    services = _compose()["services"]
    for name in (
        "kafka",
        "elasticsearch",
        "kibana",
        "clickhouse",
        "grafana",
        "topics",
        "shipper",
        "streams",
        "sink",
    ):
        assert name in services, name
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["elasticsearch"]["environment"]["discovery.type"] == "single-node"


def test_compose_references_resolve() -> None:
    compose = _compose()
    services = compose["services"]
    volumes = set(compose.get("volumes") or {})
    dockerfile = (DOCKER / "Dockerfile").read_text()
    stages = set(re.findall(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", dockerfile))
    for name, svc in services.items():
        deps = svc.get("depends_on") or []
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on unknown {dep}"
        for vol in svc.get("volumes") or []:
            src = vol.split(":", 1)[0]
            if src.startswith("."):
                assert (DOCKER / src).exists(), f"{name} mounts missing {src}"
            elif src.startswith("/"):
                assert vol.endswith(":ro"), f"{name}: host paths are mounted read-only ({vol})"
            else:
                assert src in volumes, f"{name} uses undeclared volume {src}"
        build = svc.get("build")
        if build:
            assert build["target"] in stages, f"{name} builds unknown stage {build['target']}"
        if "image" in svc and not build:
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", svc["image"]), f"{name}: pin an image tag"


def test_compose_logtide_config_is_valid() -> None:
    cfg = load_config(DOCKER / "logtide.compose.yaml")
    assert cfg.kafka.bootstrap_servers == ["kafka:19092"]
    assert cfg.sinks.elasticsearch is not None and cfg.sinks.elasticsearch.hosts == [
        "http://elasticsearch:9200"
    ]
    assert cfg.sinks.clickhouse is not None and cfg.sinks.clickhouse.host == "clickhouse"


def test_logtide_containers_run_existing_commands() -> None:
    """Each logtide container's command is a real subcommand (the image's entry point is `logtide`)."""
    from logtide.cli import main

    for name, svc in _compose()["services"].items():
        if svc.get("image", "").startswith("logtide") and svc["build"]["target"] == "base":
            assert svc["command"][0] in main.commands, f"{name}: {svc['command']}"


def test_grafana_provisioning_parses() -> None:
    ds = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/logtide.yaml").read_text())
    assert {d["type"] for d in ds["datasources"]} == {"grafana-clickhouse-datasource", "elasticsearch"}
    dash = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/logtide.yaml").read_text())
    assert dash["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
