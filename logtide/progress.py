"""Progress of long work (replay, backtest): a tqdm bar on a terminal, plain periodic lines otherwise.

tqdm rather than rich: it is one small pure-Python package with no dependencies, and a bar is all we
draw. Lines go to stderr, so stdout stays the data (`replay --output -`).
"""

from __future__ import annotations

import sys
import time
from typing import IO


class Progress:
    """`update(n)` as work is done; `close()` at the end. `total` None: no percent or ETA."""

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        unit: str = "rec",
        stream: IO[str] | None = None,
        interval_s: float = 10.0,
        bar: bool | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self.done = 0
        self.note = ""
        self.started = time.monotonic()
        self._last_line = self.started
        self._bar = None
        use_bar = bar if bar is not None else self.stream.isatty()
        if use_bar:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc=label, unit=unit, unit_scale=True, file=self.stream, dynamic_ncols=True,
                leave=True,
            )
        else:  # a first line at once: whoever reads the log (or a supervisor) sees the work has started
            planned = f"{total} {unit} to go" if total else f"{unit} count unknown"
            self.stream.write(f"{label}: started, {planned}\n")
            self.stream.flush()

    def update(self, n: int, note: str = "") -> None:
        self.done += n
        if note:
            self.note = note
        if self._bar is not None:
            self._bar.update(n)
            if note:
                self._bar.set_postfix_str(note, refresh=False)
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval_s:
            self._last_line = now
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: float) -> str:
        """`label: 12000/50000 rec (24%), 8000 rec/s, ETA 5s, at NOTE`."""
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        parts = [f"{self.label}: {self.done}"]
        if self.total:
            pct = min(100.0, 100.0 * self.done / self.total)
            parts[0] += f"/{self.total} {self.unit} ({pct:.0f}%)"
            eta = (self.total - self.done) / rate if rate > 0 else None
        else:
            parts[0] += f" {self.unit}"
            eta = None
        parts.append(f"{rate:.0f} {self.unit}/s")
        if eta is not None:
            parts.append(f"ETA {max(0.0, eta):.0f}s")
        if self.note:
            parts.append(f"at {self.note}")
        return ", ".join(parts)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
