"""The sink into an Elasticsearch node with its security module on: HTTPS with our CA and a user.

A second node (own ports and state, LOGTIDE_ES_SECURE=1) is started for this module and stopped
after it; the shared node stays plain HTTP for the rest of the suite.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.samples import samples

pytestmark = pytest.mark.integration
LOGTIDE = str(Path(sys.executable).with_name("logtide"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def secure_es(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    state = tmp_path_factory.mktemp("es-secure")
    env = {**os.environ, "LOGTIDE_STATE": str(state), "LOGTIDE_ES_PORT": str(_free_port()),
           "LOGTIDE_ES_TRANSPORT_PORT": str(_free_port()), "LOGTIDE_ES_SECURE": "1"}  # fmt: skip
    up = subprocess.run([LOGTIDE, "services", "up", "--only", "elasticsearch"], env=env, capture_output=True,
                        text=True, timeout=400, check=False)  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    saved = {k: os.environ.get(k) for k in ("LOGTIDE_STATE", "LOGTIDE_ES_PORT", "LOGTIDE_ES_TRANSPORT_PORT",
                                            "LOGTIDE_ES_SECURE")}  # fmt: skip
    os.environ.update({k: env[k] for k in saved})
    try:
        from logtide.services.config import settings
        from logtide.services.es_service import credentials

        s = settings()
        user, password, ca = credentials(s)
        es_dir = s.es_dir
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield {"url": s.es_url, "user": user, "password": password, "ca": str(ca)}
    finally:
        subprocess.run([LOGTIDE, "services", "down", "--only", "elasticsearch"], env=env, capture_output=True,
                       timeout=120, check=False)  # fmt: skip
        shutil.rmtree(es_dir, ignore_errors=True)


def test_sink_over_https_with_a_user(secure_es: dict[str, str], kafka_bootstrap: str, tmp_path: Path) -> None:
    from elasticsearch import Elasticsearch
    from logtide.schemas import LogEvent, decode, to_document

    unique = uuid.uuid4().hex[:8]
    prefix = f"ess{unique}."
    doc = to_document(decode(orjson.dumps(samples()[LogEvent]), LogEvent))

    async def produce() -> None:
        p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await p.start()
        try:
            await p.send_and_wait(prefix + "logs.enriched", orjson.dumps(doc))
        finally:
            await p.stop()

    asyncio.run(produce())
    cfg = tmp_path / "sink.yaml"
    cfg.write_text(
        f"kafka: {{bootstrap_servers: ['{kafka_bootstrap}']}}\ntopics: {{prefix: '{prefix}'}}\n"
        f"sinks:\n  group_id: g{unique}\n  sources: [logs.enriched]\n  elasticsearch:\n"
        f"    hosts: ['{secure_es['url']}']\n    username: {secure_es['user']}\n    password: ${{ES_PASSWORD}}\n"
        f"    ca_file: {secure_es['ca']}\n    index_prefix: lsecure{unique}\n"
    )
    env = {**os.environ, "ES_PASSWORD": secure_es["password"]}
    res = subprocess.run([LOGTIDE, "sink", "--config", str(cfg), "--once"], env=env, capture_output=True,
                         text=True, timeout=300, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert secure_es["password"] not in res.stdout + res.stderr
    with Elasticsearch(secure_es["url"], basic_auth=(secure_es["user"], secure_es["password"]),
                       ca_certs=secure_es["ca"]) as es:  # fmt: skip
        es.indices.refresh(index=f"lsecure{unique}-*")
        ids = [h["_id"] for h in es.search(index=f"lsecure{unique}-*")["hits"]["hits"]]
    assert ids == [doc["event"]["id"]]
    # the same node refuses plain HTTP and a wrong password
    import ssl

    import httpx

    bad = httpx.get(secure_es["url"] + "/_cluster/health", auth=(secure_es["user"], "wrong"),
                    verify=ssl.create_default_context(cafile=secure_es["ca"]), timeout=10)  # fmt: skip
    assert bad.status_code == 401
