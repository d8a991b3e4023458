"""`logtide backtest`: run a detector over a history CSV, one online score per row.

Reads ``timestamp,value`` (the NAB layout), writes ``timestamp,anomaly_score``: each score is
computed by the detector from that row and the ones before it only, exactly as it would have been
live. Rows that cannot be used (unparseable or missing timestamp or value, NaN) get a score of 0,
are not learned from, and are counted on stderr.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click


def parse_ts(text: str) -> float:
    """Seconds since the epoch from an ISO 8601 timestamp (naive = UTC) or a number of seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def load_config(path: Path | None) -> dict[str, Any]:
    """Detector settings from a JSON or YAML file (a mapping of config keys)."""
    if path is None:
        return {}
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise click.UsageError(f"{path}: expected a mapping of detector settings")
    return data


@click.command("backtest")
@click.argument("input_csv", metavar="INPUT.csv", type=click.Path(path_type=Path))
@click.option("--output", "-o", "output", required=True, type=click.Path(path_type=Path),
              help="Where to write timestamp,anomaly_score.")
@click.option("--detector", "name", default=None, help="Detector name (default: the production one).")
@click.option("--config", "config_path", default=None, type=click.Path(exists=True, path_type=Path),
              help="JSON or YAML file of detector settings.")
def backtest(input_csv: Path, output: Path, name: str | None, config_path: Path | None) -> None:
    """Score INPUT.csv (timestamp,value) online with a detector and write timestamp,anomaly_score."""
    from logtide import detectors

    name = name or detectors.DEFAULT
    if name not in detectors.REGISTRY:
        raise click.BadParameter(f"unknown detector {name!r}; known: {', '.join(sorted(detectors.REGISTRY))}",
                                 param_hint="--detector")
    if not input_csv.is_file():
        raise click.FileError(str(input_csv), hint="no such file")
    try:
        det = detectors.build(name, load_config(config_path))
    except TypeError as exc:
        raise click.UsageError(f"bad detector settings in {config_path}: {exc}") from None
    from logtide.progress import Progress

    update = det.update
    bad = 0
    rows = 0
    with open(input_csv, "rb") as f:  # one fast pass for the progress total
        total = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b"")) - 1
    progress = Progress("backtest", max(total, 0), unit="row")
    with open(input_csv, newline="") as src:
        reader = csv.reader(src)
        header = next(reader, None)
        cols = [h.strip().lower() for h in header] if header else []
        if "timestamp" not in cols or "value" not in cols:
            raise click.UsageError(f"{input_csv}: needs a header with 'timestamp' and 'value' columns, got {header}")
        it, iv = cols.index("timestamp"), cols.index("value")
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "w", newline="") as dst:
            write = dst.write
            write("timestamp,anomaly_score\n")
            for row in reader:
                if not row:
                    continue  # blank line: not a row
                rows += 1
                if not rows & 4095:
                    progress.update(4096)
                raw_ts = row[it] if it < len(row) else ""
                score = 0.0
                try:
                    ts = parse_ts(raw_ts)
                    value = float(row[iv])
                    if not (math.isfinite(ts) and math.isfinite(value)):
                        raise ValueError("not finite")
                except (ValueError, IndexError, OverflowError):
                    bad += 1
                else:
                    score = update(ts, value).score
                write(f"{raw_ts},{score:.6f}\n" if "," not in raw_ts else f'"{raw_ts}",{score:.6f}\n')
    progress.update(rows & 4095)
    progress.close()
    if bad:
        click.echo(f"backtest: {bad} of {rows} rows unusable (bad timestamp or value), scored 0", err=True)


if __name__ == "__main__":
    backtest(sys.argv[1:])
