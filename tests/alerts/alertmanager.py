"""A real Alertmanager (Debian's prometheus-alertmanager, installed by scripts/setup.sh) started on
loopback for a test, with clustering off and one webhook receiver of its own pointing at `hook_url`."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx

BINARY = "prometheus-alertmanager"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Alertmanager:
    def __init__(self, workdir: Path, hook_url: str, group_interval: str = "1s") -> None:
        binary = shutil.which(BINARY)
        assert binary, f"{BINARY} is not installed: run scripts/setup.sh (it installs Debian's package)"
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "am.yml").write_text(
            "route:\n"
            "  receiver: hook\n"
            "  group_by: [service]\n"
            "  group_wait: 0s\n"
            f"  group_interval: {group_interval}\n"
            "  repeat_interval: 4h\n"
            "receivers:\n"
            "  - name: hook\n"
            "    webhook_configs:\n"
            f"      - url: {hook_url}\n"
            "        send_resolved: true\n"
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (workdir / "am.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'am.yml'}", f"--storage.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
             f"--web.external-url={self.url}"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"alertmanager did not start: {(workdir / 'am.log').read_text()[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
