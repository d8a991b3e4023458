"""The shipper's configuration section, example, systemd unit and container stage."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

from logtide.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_is_valid() -> None:
    cfg = load_config(ROOT / "examples" / "shipper-nginx-app.yaml")
    ids = [i.id for i in cfg.shipper.inputs]
    assert ids == ["nginx-access", "nginx-error", "shop-app", "shop-app-json"]
    assert cfg.shipper.inputs[2].multiline is not None
    assert cfg.shipper.host_metrics.enabled


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"shipper": {"inputs": [{"paths": ["/x"], "parsr": {}}]}}, "shipper.inputs.0.parsr: unknown key"),
        ({"shipper": {"inputs": [{"paths": []}]}}, "shipper.inputs.0.paths"),
        ({"shipper": {"inputs": [{"paths": ["/x"], "parser": {"type": "regex"}}]}}, "needs a pattern"),
        (
            {"shipper": {"inputs": [{"paths": ["/x"], "parser": {"type": "regex", "pattern": "a("}}]}},
            "regular",
        ),
        (
            {"shipper": {"inputs": [{"paths": ["/x"], "parser": {"type": "regex", "pattern": "a"}}]}},
            "named groups",
        ),
        ({"shipper": {"inputs": [{"paths": ["/x"], "parser": {"timezone": "Mars/Olympus"}}]}}, "time zone"),
        ({"shipper": {"metrics_listen": "nope"}}, "host:port"),
        ({"shipper": {"max_line_bytes": 1}}, "shipper.max_line_bytes"),
    ],
)
def test_config_errors_name_the_key(doc: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert needle in str(err.value)


def test_systemd_unit_runs_unprivileged() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "deploy" / "systemd" / "logtide-shipper.service")
    svc = unit["Service"]
    assert svc["User"] == "logtide" and svc["NoNewPrivileges"] == "yes"
    assert svc["ExecStart"].split()[1:3] == ["ship", "--config"]
    assert svc["KillSignal"] == "SIGTERM" and svc["StateDirectory"] == "logtide/shipper"
    assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"  # `systemctl reload`: the configuration reload


def test_dockerfile_has_base_and_shipper_stages() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    stages = re.findall(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", text)
    assert {"base", "shipper"} <= set(stages)
    shipper = text.split("AS shipper", 1)[1]
    assert 'ENTRYPOINT ["logtide", "ship"]' in shipper and "USER logtide" in shipper
