"""An S3-compatible server on loopback for the archive tests: moto's server mode, standing in for
MinIO (no MinIO server can be installed here). moto pins python-dateutil<3 through botocore, which
would hold back the project's own dependency, so it lives in its own virtualenv under the logtide
cache (created once with uv) and runs as a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

MOTO = "moto[server]>=5,<6"


def _venv() -> Path:
    from logtide.services.config import settings

    venv = settings().cache / "moto-venv"
    server = venv / "bin" / "moto_server"
    if not server.exists():
        uv = Path(sys.executable).with_name("uv")
        subprocess.run([str(uv), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        subprocess.run([str(uv), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), MOTO], check=True)
    return server


class S3Server:
    def __init__(self, log_path: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("wb")
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
        self.proc = subprocess.Popen(
            [str(_venv()), "-H", "127.0.0.1", "-p", str(self.port)], stdout=self._log, stderr=self._log, env=env
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/moto-api/", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._log.close()
