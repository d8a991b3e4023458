"""Helpers of the embedded-runner tests: configs written as YAML, NDJSON outputs read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def write_config(path: Path, inputs: list[dict[str, Any]], streams: dict[str, Any] | None = None) -> Path:
    """A `logtide run` config: the given shipper inputs (read from the beginning), event-time windows
    that accept history (no clock-skew exclusion), detection off unless asked."""
    doc = {
        "logging": {"level": "WARNING"},
        "shipper": {"host_name": "test-host", "inputs": [{"start_position": "beginning", **i} for i in inputs]},
        "streams": {
            "max_past_skew_seconds": 315360000,
            "window": {"size_seconds": 60, "lateness_seconds": 0, "group_by": ["service"],
                       "idle_timeout_seconds": None},
            "detect": {"enabled": False},
            **(streams or {}),
        },
    }  # fmt: skip
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_once(config: Path, data_dir: Path) -> Any:
    """`logtide run --config config --data-dir data_dir --once` in this process; its Summary."""
    from logtide.run_command import build_config, run_pipeline

    return run_pipeline(build_config(str(config)), data_dir, True, quiet=True)
