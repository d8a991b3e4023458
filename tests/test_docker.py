"""No Docker engine runs here: the compose stack is validated by parsing it and checking what it refers to."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
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
    cfg = load_config(DOCKER / "logtide.compose.yaml", env={"CLICKHOUSE_PASSWORD": "x"})
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
            assert main.get_command(None, svc["command"][0]) is not None, f"{name}: {svc['command']}"


def test_grafana_provisioning_parses() -> None:
    ds = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/logtide.yaml").read_text())
    assert {d["type"] for d in ds["datasources"]} == {"grafana-clickhouse-datasource", "elasticsearch", "prometheus"}
    dash = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/logtide.yaml").read_text())
    assert dash["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def _stages() -> dict[str, tuple[str, str]]:
    """Dockerfile stage -> (parent image or stage, its text)."""
    text = (DOCKER / "Dockerfile").read_text()
    parts = re.split(r"(?im)^FROM\s+(\S+)\s+AS\s+(\S+)\s*$", text)
    return {parts[i + 1]: (parts[i], parts[i + 2]) for i in range(1, len(parts), 3)}


def _stage_chain(stage: str) -> str:
    stages = _stages()
    text = ""
    while stage in stages:
        parent, body = stages[stage]
        text = body + text
        stage = parent
    return text


def _logtide_services() -> dict[str, dict]:
    return {n: s for n, s in _compose()["services"].items() if s.get("image", "").startswith("logtide")}


def test_clickhouse_user_and_password_come_from_the_environment() -> None:
    """The image disables network access for `default` unless a user/password is set (its docs):
    the server, the logtide processes and Grafana all take them from the same variables."""
    services = _compose()["services"]
    env = services["clickhouse"]["environment"]
    assert env["CLICKHOUSE_USER"].startswith("${CLICKHOUSE_USER")
    assert env["CLICKHOUSE_PASSWORD"].startswith("${CLICKHOUSE_PASSWORD:?")  # no default password
    assert "CLICKHOUSE_SKIP_USER_SETUP" not in env
    for name, svc in _logtide_services().items():
        assert svc["environment"]["CLICKHOUSE_PASSWORD"] == env["CLICKHOUSE_PASSWORD"], name
    assert services["grafana"]["environment"]["CLICKHOUSE_PASSWORD"] == env["CLICKHOUSE_PASSWORD"]
    cfg = load_config(DOCKER / "logtide.compose.yaml", env={"CLICKHOUSE_PASSWORD": "s3cret"})
    ch = cfg.sinks.clickhouse
    assert ch is not None and ch.username == "logtide" and ch.password.get_secret_value() == "s3cret"
    ds = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/logtide.yaml").read_text())
    click = next(d for d in ds["datasources"] if d["type"] == "grafana-clickhouse-datasource")
    assert click["jsonData"]["username"] == "${CLICKHOUSE_USER}"
    assert click["secureJsonData"]["password"] == "${CLICKHOUSE_PASSWORD}"
    assert (click["jsonData"]["port"], click["jsonData"]["protocol"]) == (8123, "http")


def test_every_state_volume_is_created_and_owned_in_the_image() -> None:
    """A named volume on a path the image never created (or created as root) is unwritable for the
    image's user: every mount of a logtide service must be made with `install -d -o logtide`."""
    for name, svc in _logtide_services().items():
        chain = _stage_chain(svc["build"]["target"])
        for vol in svc.get("volumes") or []:
            src, target = vol.split(":")[:2]
            if src.startswith((".", "/")):
                continue
            assert re.search(rf"install -d -o logtide -g logtide {re.escape(target)}\b", chain), (
                f"{name}: {target} is not created for the logtide user in stage {svc['build']['target']}"
            )


def test_logtide_config_variable_is_what_the_commands_read(tmp_path: Path) -> None:
    for name, svc in _logtide_services().items():
        assert svc["environment"]["LOGTIDE_CONFIG"] == "/etc/logtide/logtide.yaml", name
        assert "--config" not in (svc.get("command") or []), f"{name}: the variable is the one source"
        assert any(v.endswith(":/etc/logtide/logtide.yaml:ro") for v in svc["volumes"]), name
    assert "LOGTIDE_CONFIG=/etc/logtide/logtide.yaml" in (DOCKER / "Dockerfile").read_text()
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("topics: {prefix: 'fromenv.'}\n")
    assert load_config(None, env={"LOGTIDE_CONFIG": str(cfg_file)}).topics.prefix == "fromenv."
    assert load_config(None, env={}).topics.prefix == "logtide."


HEAVY = {"faust-streaming", "rocksdict", "chdb", "scikit-learn", "numpy", "elasticsearch", "clickhouse-connect"}


def test_shipper_image_is_slim_and_its_command_runs_without_the_heavy_packages() -> None:
    services = _compose()["services"]
    assert services["shipper"]["build"]["target"] == "shipper"
    chain = _stage_chain("shipper")
    build = _stages()["build-shipper"][1]
    assert "COPY --from=build-shipper /opt/logtide" in chain and "COPY --from=build " not in chain
    assert "install --no-deps ." in build
    reqs = re.findall(r'"([^"]+)"', build)
    core = tomllib.loads((DOCKER.parent / "pyproject.toml").read_text())["project"]["dependencies"]
    assert reqs and set(reqs) <= set(core), set(reqs) - set(core)  # the same ranges as the package
    names = {re.split(r"[\[<>=]", r)[0] for r in reqs}
    assert names & HEAVY == set()
    # What the image holds is enough: the shipper's modules and `logtide ship` import and run with
    # every heavy package made unimportable.
    blocker = (
        "import sys, importlib.abc, pkgutil\n"
        "BLOCK = {'faust', 'mode', 'rocksdict', 'chdb', 'sklearn', 'numpy', 'elasticsearch', 'clickhouse_connect'}\n"
        "class B(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in BLOCK: raise ImportError('not in the shipper image: ' + name)\n"
        "sys.meta_path.insert(0, B())\n"
        "import logtide.shippers\n"
        "for m in pkgutil.walk_packages(logtide.shippers.__path__, 'logtide.shippers.'): __import__(m.name)\n"
        "from logtide.cli import main\n"
        "sys.argv = ['logtide', 'ship', '--help']\n"
        "main()\n"
    )
    res = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "--path" in res.stdout


def test_prometheus_scrapes_each_process_on_its_configured_port() -> None:
    prom = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    cfg = load_config(DOCKER / "logtide.compose.yaml", env={"CLICKHOUSE_PASSWORD": "x"})
    assert targets == {
        f"shipper:{cfg.shipper.metrics_listen.rsplit(':', 1)[1]}",
        f"streams:{cfg.streams.metrics_port}",
        f"sink:{cfg.sinks.metrics_listen.rsplit(':', 1)[1]}",
    }


def test_kibana_setup_imports_the_saved_objects() -> None:
    setup = (DOCKER / "kibana" / "setup.sh").read_text()
    assert "/api/saved_objects/_import" in setup and "/kibana/logtide.ndjson" in setup
    import json

    objects = [json.loads(line) for line in (DOCKER / "kibana" / "logtide.ndjson").read_text().splitlines()]
    ids = {(o["type"], o["id"]) for o in objects}
    for o in objects:  # every reference resolves inside the file
        for ref in o.get("references", []):
            assert (ref["type"], ref["id"]) in ids, (o["id"], ref)
    assert {t for t, _ in ids} == {"index-pattern", "visualization", "search", "dashboard"}
