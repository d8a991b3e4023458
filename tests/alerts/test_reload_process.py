"""`logtide alerts` reloads its configuration while running: the real process, the real local Kafka,
real loopback webhook receivers. A new route reaches a new receiver, an open incident is not paged
again and its resolve still arrives, a silence written in the file mutes, a broken file is refused
with its key path (the process keeps alerting), a restart-only key is named; once through SIGHUP,
once through --watch-config."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from logtide.schemas import Topics, encode

from tests.alerts.receiver import Receiver
from tests.alerts.test_kafka_process import now_anomaly, produce

pytestmark = pytest.mark.integration


def _write(path: Path, bootstrap: str, prefix: str, group: str, hook: str, *, new: str | None = None,
           **alerts: object) -> None:
    routes = [{"matchers": ['service="search"'], "receiver": "new"}] if new else []
    doc = {
        "kafka": {"bootstrap_servers": [bootstrap]},
        "topics": {"prefix": prefix, "partitions": 2},
        "alerts": {
            "group_id": group, "metrics_port": 0, "tick_seconds": 0.2,
            "route": {"receiver": "hook", "group_by": ["service"], "group_wait": "1s", "group_interval": "2s",
                      "routes": routes},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": hook}]},
                          *([{"name": "new", "webhook_configs": [{"url": new}]}] if new else [])],
            **alerts,
        },
    }
    path.write_text(yaml.safe_dump(doc))


class Proc:
    def __init__(self, conf: Path, log: Path, *extra: str) -> None:
        self.log = log
        self._fh = log.open("wb")
        self.p = subprocess.Popen([sys.executable, "-m", "logtide.cli", "alerts", "--config", str(conf), *extra],
                                  stdout=subprocess.DEVNULL, stderr=self._fh)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait(self, what: str, count: int = 1, timeout: float = 90) -> None:
        end = time.monotonic() + timeout
        while self.text().count(what) < count:
            if self.p.poll() is not None:
                raise AssertionError(f"the alert process exited ({self.p.returncode}):\n{self.text()[-3000:]}")
            if time.monotonic() > end:
                raise AssertionError(f"no {what!r} in the log:\n{self.text()[-3000:]}")
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self._fh.close()


async def wait_for(cond, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_sighup_new_route_silence_no_second_page_resolve_refusal(kafka_bootstrap: str, unique: str,
                                                                       tmp_path: Path) -> None:
    hook, new = await Receiver().start(), await Receiver().start()
    prefix, group = f"t{unique}.", f"alerts-{unique}"
    anomalies = Topics(prefix).anomalies
    conf = tmp_path / "logtide.yaml"
    _write(conf, kafka_bootstrap, prefix, group, hook.url + "/hook")
    proc = Proc(conf, tmp_path / "alerts.log")
    try:
        await proc.wait("open alerts; live")
        await produce(kafka_bootstrap, anomalies, [encode(now_anomaly("checkout", "e1"))])
        await wait_for(lambda: len(hook.received) == 1)
        first = hook.received[0].json
        # a route to a new receiver, a silence in the file, and a key that needs a restart
        _write(conf, kafka_bootstrap, prefix, "another-group", hook.url + "/hook", new=new.url + "/new",
               silences=[{"matchers": ['service="quiet"'], "comment": "maintenance"}])
        proc.p.send_signal(signal.SIGHUP)
        await proc.wait("configuration reloaded")
        text = proc.text()
        assert "alerts.group_id changed and needs a restart" in text
        assert "applied live: alerts.route.routes, alerts.receivers, alerts.silences" in text
        assert "1 kept, 0 retired" in text and "silences from the file: 1 added" in text
        await produce(kafka_bootstrap, anomalies, [encode(now_anomaly("search", "s1")),
                                                   encode(now_anomaly("quiet", "q1"))])
        await wait_for(lambda: len(new.received) == 1)
        assert new.received[0].json["groupLabels"] == {"service": "search"}
        await asyncio.sleep(3)  # past group_wait + group_interval: a second page or the silenced one would be here
        assert len(hook.received) == 1, [r.json["groupLabels"] for r in hook.received]
        # a broken file: refused with its key path; the process keeps alerting on what it runs
        conf.write_text(conf.read_text().replace("group_wait: 1s", "group_wait: soon"))
        proc.p.send_signal(signal.SIGHUP)
        await proc.wait("configuration reload refused")
        assert "alerts.route.group_wait" in proc.text()
        await produce(kafka_bootstrap, anomalies, [encode(now_anomaly("checkout", "e1", resolved=True))])
        await wait_for(lambda: len(hook.received) == 2)
        resolved = hook.received[1].json
        assert resolved["status"] == "resolved" and resolved["groupKey"] == first["groupKey"]
        assert proc.p.poll() is None
    finally:
        proc.stop()
        await hook.stop()
        await new.stop()


async def test_watch_config_adds_a_route_on_a_change_of_the_file(kafka_bootstrap: str, unique: str,
                                                                 tmp_path: Path) -> None:
    hook, new = await Receiver().start(), await Receiver().start()
    prefix = f"t{unique}."
    conf = tmp_path / "logtide.yaml"
    _write(conf, kafka_bootstrap, prefix, f"alerts-{unique}", hook.url)
    proc = Proc(conf, tmp_path / "alerts.log", "--watch-config")
    try:
        await proc.wait("open alerts; live")
        assert "configuration reload on SIGHUP and on changes of" in proc.text()
        _write(conf, kafka_bootstrap, prefix, f"alerts-{unique}", hook.url, new=new.url)
        await proc.wait("configuration reloaded")
        await produce(kafka_bootstrap, Topics(prefix).anomalies, [encode(now_anomaly("search", "s1"))])
        await wait_for(lambda: len(new.received) == 1)
        assert not hook.received
    finally:
        proc.stop()
        await hook.stop()
        await new.stop()
