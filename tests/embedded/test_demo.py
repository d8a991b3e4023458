"""`logtide demo`: the incident is detected on the right series inside its window, the quiet hour after
warm-up raises nothing, and the same input gives the same anomalies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from logtide.demo_data import DemoSpec, demo_config_yaml, generate, write_demo_logs
from logtide.embedded import OUTPUT_FILES
from tests.embedded.helpers import read_ndjson, run_once

END = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # fixed, whole minutes: same bytes every run
WARMUP = timedelta(minutes=30)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("demo")
    spec = DemoSpec(end=END)
    counts = write_demo_logs(root / "logs", spec)
    cfg = root / "demo.yaml"
    cfg.write_text(demo_config_yaml(root / "logs"))
    summary = run_once(cfg, root / "out")
    return {"root": root, "spec": spec, "counts": counts, "cfg": cfg, "summary": summary,
            "anomalies": read_ndjson(root / "out" / "anomalies.ndjson")}  # fmt: skip


def _t(doc: dict[str, Any], key: str) -> datetime:
    return datetime.fromisoformat(doc["window"][key])


def test_generator_is_deterministic() -> None:
    a = generate(DemoSpec(end=END, minutes=60, seed=3))
    b = generate(DemoSpec(end=END, minutes=60, seed=3))
    c = generate(DemoSpec(end=END, minutes=60, seed=4))
    assert a == b
    assert a != c


def test_every_line_becomes_an_event(demo: dict[str, Any]) -> None:
    s = demo["summary"]
    app_events = sum(
        1
        for p in (demo["root"] / "logs" / "app").glob("*.log")
        for line in p.read_text().splitlines()
        if line[:1].isdigit()
    )  # fmt: skip  -- multiline: a stack trace belongs to its ERROR line
    assert s.events == demo["counts"]["access"] + app_events
    assert s.flagged == 0 and s.dead_letters == 0 and s.skewed == 0


def test_incident_is_detected_on_the_right_series(demo: dict[str, Any]) -> None:
    spec: DemoSpec = demo["spec"]
    inside = [a for a in demo["anomalies"] if a.get("status", "firing") == "firing"
              and spec.incident_start < _t(a, "end") <= spec.incident_end + timedelta(minutes=1)]  # fmt: skip
    assert inside, "the incident raised no anomaly"
    assert all(a["series"]["labels"]["service"] == "checkout" for a in inside)
    metrics = {a["series"]["metric"] for a in inside}
    assert "log.error_ratio" in metrics
    assert "http.request.duration_ms" in metrics
    for a in inside:
        assert a["value"] > a["band"]["upper"], a["message"]


def test_quiet_hour_after_warmup_raises_nothing(demo: dict[str, Any]) -> None:
    spec: DemoSpec = demo["spec"]
    quiet_from, quiet_to = spec.start + WARMUP, spec.start + WARMUP + timedelta(minutes=60)
    assert quiet_to < spec.incident_start
    noisy = [a["message"] for a in demo["anomalies"] if a.get("status", "firing") == "firing" and quiet_from <= _t(a, "end") <= quiet_to]
    assert noisy == []


def test_closing_paragraph_says_what_was_found(demo: dict[str, Any]) -> None:
    from logtide.config import load_config
    from logtide.run_command import what_you_saw

    detect = load_config(demo["cfg"]).streams.detect
    text = " ".join(what_you_saw(demo["summary"], demo["spec"], 60, detect).split())
    assert "anomalies above" in text and "checkout" in text
    assert "no threshold set by hand" not in text
    assert f"cut-off to {detect.threshold:g}" in text  # the text says what the run was configured with


def test_same_input_same_anomalies(demo: dict[str, Any], tmp_path: Path) -> None:
    run_once(demo["cfg"], tmp_path / "again")
    first = sorted(read_ndjson(demo["root"] / "out" / "anomalies.ndjson"), key=lambda a: a["event"]["id"])
    second = sorted(read_ndjson(tmp_path / "again" / "anomalies.ndjson"), key=lambda a: a["event"]["id"])
    assert first and first == second


def test_demo_command(tmp_path: Path) -> None:
    out = tmp_path / "d"
    res = CliRunner().invoke(__import__("logtide.cli", fromlist=["main"]).main,
                             ["demo", "--data-dir", str(out), "--minutes", "60"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "anomalies:" in res.output and "What you just saw" in res.output
    assert "error ratio" in res.output and "p90 latency" in res.output  # the incident, minute by minute
    for name in OUTPUT_FILES:
        assert (out / f"{name}.ndjson").exists()
    assert (out / "demo.yaml").exists() and (out / "logs" / "access.log").exists()
