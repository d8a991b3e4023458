"""`logtide backtest`: one online score per input row, bad rows scored 0 and counted, clear errors."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from click.testing import CliRunner

from logtide.backtest import backtest


def write(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(backtest, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_one_row_per_input_row_and_bad_rows(tmp_path: Path) -> None:
    rows = ["timestamp,value"]
    for i in range(400):
        rows.append(f"2024-01-01 {i // 60 % 24:02d}:{i % 60:02d}:00,{10 + math.sin(i / 10):.4f}")
    rows[100] = "2024-01-01 01:39:00,not-a-number"
    rows[200] = "garbage,3.0"
    rows[300] = "2024-01-01 04:59:00,nan"
    rows[350] = "2024-01-01 05:49:00,"
    src = write(tmp_path / "in.csv", rows)
    out = tmp_path / "out.csv"
    code, _, err = run(str(src), "--output", str(out))
    assert code == 0, err
    got = list(csv.reader(out.open()))
    assert got[0] == ["timestamp", "anomaly_score"]
    assert len(got) == len(rows)
    assert [r[0] for r in got[1:]] == [r.split(",")[0] for r in rows[1:]]
    scores = [float(r[1]) for r in got[1:]]
    assert all(0.0 <= s <= 1.0 for s in scores)
    for k in (100, 200, 300, 350):
        assert scores[k - 1] == 0.0
    assert "4 of 400 rows" in err


def test_detector_and_config_options(tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", ["timestamp,value"] + [f"{1.7e9 + 60 * i},{i % 7}" for i in range(300)])
    cfg = write(tmp_path / "c.json", ['{"alpha": 0.1, "warmup": 10}'])
    out = tmp_path / "out.csv"
    code, _, err = run(str(src), "--output", str(out), "--detector", "ewma", "--config", str(cfg))
    assert code == 0, err
    assert len(out.read_text().splitlines()) == 301


def test_errors(tmp_path: Path) -> None:
    code, _, err = run(str(tmp_path / "missing.csv"), "--output", str(tmp_path / "o.csv"))
    assert code != 0 and "missing.csv" in err
    src = write(tmp_path / "bad.csv", ["time,val", "1,2"])
    code, _, err = run(str(src), "--output", str(tmp_path / "o.csv"))
    assert code != 0 and "timestamp" in err
    src = write(tmp_path / "ok.csv", ["timestamp,value", "1,2"])
    code, _, err = run(str(src), "--output", str(tmp_path / "o.csv"), "--detector", "nope")
    assert code != 0 and "unknown detector" in err
