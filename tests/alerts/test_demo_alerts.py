"""`logtide demo --alert-webhook URL --alert-secret whsec_...` against a real loopback receiver: one
signed firing notification for the checkout group, one signed resolve for the same groupKey, nothing
for the other services; the notifications are printed and written to alerts.ndjson."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import orjson
from click.testing import CliRunner

from logtide.cli import main
from tests.alerts.receiver import Receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class ThreadedReceiver:
    """The aiohttp receiver on its own loop in a thread (the demo command is synchronous)."""

    def __init__(self, **kw) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.rx = asyncio.run_coroutine_threadsafe(Receiver(**kw).start(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.rx.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_demo_sends_one_signed_firing_and_its_resolve(tmp_path: Path) -> None:
    r = ThreadedReceiver(secret=SECRET)
    try:
        res = CliRunner().invoke(main, ["demo", "--data-dir", str(tmp_path / "demo"), "--alert-webhook",
                                        r.rx.url + "/hook", "--alert-secret", SECRET])
    finally:
        r.stop()
    assert res.exit_code == 0, res.output
    got = r.rx.received
    assert [g.json["status"] for g in got] == ["firing", "resolved"], [g.json for g in got]
    assert all(g.signed_ok for g in got)
    assert {g.json["groupLabels"]["service"] for g in got} == {"checkout"}
    assert got[0].json["groupKey"] == got[1].json["groupKey"]
    assert got[0].headers["webhook-id"] != got[1].headers["webhook-id"]
    assert "FIRING   service=checkout" in res.output and "RESOLVED service=checkout" in res.output
    records = [orjson.loads(x) for x in (tmp_path / "demo" / "alerts.ndjson").read_bytes().splitlines()]
    sent = [x for x in records if x["delivery"]["outcome"] == "sent"]
    assert [x["status"] for x in sent] == ["firing", "resolved"]
    assert all(x["delivery"]["integration"] == "webhook" for x in sent)


def test_run_once_with_an_alerts_section_alerts_in_process(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from logtide.demo_data import DemoSpec, demo_config_yaml, write_demo_logs

    write_demo_logs(tmp_path / "logs", DemoSpec(end=datetime(2026, 3, 2, 15, 0, tzinfo=UTC)))
    r = ThreadedReceiver()
    try:
        cfg = tmp_path / "run.yaml"
        cfg.write_text(demo_config_yaml(tmp_path / "logs") + (
            "alerts:\n"
            "  route: {receiver: hook, group_by: [service]}\n"
            "  receivers:\n"
            f"    - name: hook\n      slack_configs: [{{url: '{r.rx.url}/slack'}}]\n"
        ))
        res = CliRunner().invoke(main, ["run", "--config", str(cfg), "--data-dir", str(tmp_path / "out"), "--once"])
    finally:
        r.stop()
    assert res.exit_code == 0, res.output
    got = [g.json for g in r.rx.received]
    assert [g["text"].split("]")[0] for g in got] == ["[FIRING:3", "[RESOLVED"]
    assert all("service=checkout" in g["text"] and g["blocks"] for g in got)
    assert "RESOLVED service=checkout" in res.output
