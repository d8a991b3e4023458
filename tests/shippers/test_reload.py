"""Configuration reload of a running shipper (SIGHUP / --watch-config): inputs added start, inputs
removed stop, changed inputs restart at their checkpoints; nothing is lost or sent twice; an invalid
file is refused and the running configuration kept. In-process output (no broker needed)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
from logtide.shippers.config import LogInputConfig, ParserConfig, ShipperConfig
from logtide.shippers.output import ListOutput
from logtide.shippers.shipper import Shipper

from tests.shippers.helpers import wait_for


def _cfg(tmp_path: Path, inputs: list[LogInputConfig], **kw: object) -> ShipperConfig:
    base: dict[str, object] = {"state_dir": tmp_path / "state", "host_name": "h", "rescan_interval_s": 0.2,
                               "checkpoint_interval_s": 0.1, "watch_debounce_ms": 20, "close_removed_after_s": 0.2}  # fmt: skip
    return ShipperConfig(inputs=inputs, **{**base, **kw})  # type: ignore[arg-type]


def _append(path: Path, lines: list[str]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def _events(out: ListOutput) -> list[dict]:
    return [orjson.loads(v) for _t, _k, v in out.records]


async def test_reload_adds_stops_and_restarts_inputs_without_loss_or_resend(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    _append(a, [f'{{"msg": "a{i}", "level": "warn"}}' for i in range(100)])
    _append(b, [f"b{i}" for i in range(50)])
    inp_a = LogInputConfig(id="a", paths=[str(a)], start_position="beginning")
    out = ListOutput()
    shipper = Shipper(_cfg(tmp_path, [inp_a]), out, log_topic="t")
    task = asyncio.create_task(shipper.run())
    try:
        assert await wait_for(lambda: len(out.records) == 100, 20)
        assert _events(out)[0]["message"] == '{"msg": "a0", "level": "warn"}'  # plain parser so far
        # a changes parser (restarts at its checkpoint), b is added (start_position applies: beginning)
        inp_a_json = inp_a.model_copy(update={"parser": ParserConfig(type="json")})
        inp_b = LogInputConfig(id="b", paths=[str(b)], start_position="beginning")
        restart = await shipper.reload(_cfg(tmp_path, [inp_a_json, inp_b], host_name="other"))
        assert restart == ["host_name"]  # reported, not applied
        _append(a, [f'{{"msg": "a{i}", "level": "warn"}}' for i in range(100, 150)])
        assert await wait_for(lambda: len(out.records) == 200, 20)
        evs = _events(out)
        assert [e["message"] for e in evs[100:] if e["message"].startswith("b")] == [
            f"b{i}" for i in range(50)
        ]
        new_a = [e for e in evs[100:] if e["message"].startswith("a")]
        assert [e["message"] for e in new_a] == [f"a{i}" for i in range(100, 150)]  # parsed, nothing re-sent
        assert {e["log"]["level"] for e in new_a} == {"warning"} and new_a[0]["host"]["name"] == "h"
        # b removed: its harvester stops; what is written to it afterwards is not read
        await shipper.reload(_cfg(tmp_path, [inp_a_json]))
        assert not [h for h in shipper.active.values() if h.inp.cfg.name == "b" and not h.done]
        _append(b, ["b-after"])
        _append(a, ['{"msg": "a-after"}'])
        assert await wait_for(lambda: len(out.records) == 201, 20)
        await asyncio.sleep(0.5)
        assert [e["message"] for e in _events(out)[200:]] == ["a-after"]
    finally:
        shipper.request_stop()
        await asyncio.wait_for(task, 30)


def test_sighup_reloads_and_an_invalid_file_is_refused(tmp_path: Path) -> None:
    """The real command: SIGHUP with a broken file keeps running (error names the key); a fixed file
    adds the input. Kafka is not needed for this: the output retries in the background."""
    log = tmp_path / "x.log"
    log.write_text("x\n")
    conf = tmp_path / "logtide.yaml"
    base = f"kafka: {{bootstrap_servers: ['127.0.0.1:1']}}\nshipper:\n  state_dir: {tmp_path / 'state'}\n"
    conf.write_text(base + f"  inputs: [{{paths: ['{log}']}}]\n")
    err = open(tmp_path / "err.txt", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "logtide.cli", "ship", "--config", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
    try:
        deadline = time.monotonic() + 60  # started (signal handlers installed) once it tries the output
        while (
            "output not available" not in (tmp_path / "err.txt").read_text() and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        conf.write_text(base + f"  inputs: [{{paths: ['{log}'], start_positon: end}}]\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        assert proc.poll() is None, "a broken configuration must not stop the shipper"
        text = (tmp_path / "err.txt").read_text()
        assert "configuration reload refused" in text and "shipper.inputs.0.start_positon" in text, text[
            -2000:
        ]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        err.close()


async def test_reload_refuses_nothing_silently(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    from logtide.config import ConfigError
    from logtide.ship_command import _reload

    shipper = Shipper(_cfg(tmp_path, []), ListOutput(), log_topic="t")

    def broken() -> ShipperConfig:
        raise ConfigError("f.yaml", ["shipper.inputs.0.paths: field required"])

    with caplog.at_level(logging.ERROR):
        await _reload(shipper, broken)
    assert "refused" in caplog.text and "shipper.inputs.0.paths" in caplog.text
    assert os.path.basename(str(shipper.cfg.state_dir)) == "state"
