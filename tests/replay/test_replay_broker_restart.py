"""A broker restart in the middle of `logtide replay --output`: the replay rides it out and writes
every record of the range exactly once. Runs on a second, Kafka-only instance with its own state
directory and ports (the shared one is never restarted), stopped by the test itself."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.replay.kafka_data import BASE, create_topic, produce_at

pytestmark = pytest.mark.integration


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def test_broker_restart_mid_replay_loses_and_repeats_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from logtide.services import ensure_up, stop

    port, controller = _free_ports(2)
    monkeypatch.setenv("LOGTIDE_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("LOGTIDE_KAFKA_PORT", str(port))
    monkeypatch.setenv("LOGTIDE_KAFKA_CONTROLLER_PORT", str(controller))
    bootstrap = ensure_up(kafka=True, elasticsearch=False, timeout=180)["kafka"]
    proc = None
    try:
        topic = "replay-restart"
        recs = [(i % 3, BASE + i * 1000, None, orjson.dumps({"i": i})) for i in range(3000)]
        asyncio.run(create_topic(bootstrap, topic, 3))
        asyncio.run(produce_at(bootstrap, topic, recs))
        out = tmp_path / "out.ndjson"
        proc = subprocess.Popen(
            [sys.executable, "-m", "logtide.cli", "replay", "--bootstrap", bootstrap, "--topic", topic, "--from",
             str(BASE + 100_000), "--to", str(BASE + 2_900_000), "--output", str(out), "--max-rate", "200"],
            stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while (not out.exists() or out.stat().st_size < 2000) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stop(elasticsearch=False) == {"kafka": True}
        written_while_down = len(out.read_bytes().splitlines())
        assert written_while_down < 2800, "the replay was not over when the broker went down"
        time.sleep(3)
        ensure_up(kafka=True, elasticsearch=False, timeout=180)
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err.decode()
        lines = out.read_bytes().splitlines()
        want = [v for _p, ts, _k, v in recs if BASE + 100_000 <= ts < BASE + 2_900_000]
        assert len(lines) == len(set(lines)) == len(want)
        assert sorted(lines) == sorted(want)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        stop(elasticsearch=False)
