"""The processes against a secured broker: TLS + SASL/SCRAM-SHA-512 with ACLs (`services up --secure`).

Each process connects as its own user; a wrong password, an untrusted CA, an expired certificate
and a topic outside a user's ACL each give one clear error naming the cause, quickly (no hang, no
retry storm); no password appears in any output.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from logtide.config import parse_config
from logtide.kafka_preflight import KafkaAccessError, check
from logtide.services import kafka_secure
from logtide.services.config import settings
from logtide.topics_admin import ensure_topics
from tests.samples import samples

pytestmark = pytest.mark.integration
LOGTIDE = str(Path(sys.executable).with_name("logtide"))
PREFIX = "logtide."  # the prefix the secured listener's ACLs were made for


@pytest.fixture(scope="module")
def secure() -> dict[str, object]:
    from logtide.services import ensure_up

    addresses = ensure_up(elasticsearch=False, secure=True)
    s = settings()
    plain = parse_config({"kafka": {"bootstrap_servers": [addresses["kafka"]]}, "topics": {"prefix": PREFIX}})
    asyncio.run(ensure_topics(plain))  # topics are made by an operator; the users may not create raw topics
    return {
        "plain": addresses["kafka"],
        "secure": addresses["kafka (SASL_SSL)"],
        "ca": str(kafka_secure.files(s).ca_pem),
        "passwords": kafka_secure.passwords(s),
    }


def _config(tmp: Path, secure: dict, user: str, *, ca: str | None = None, extra: str = "") -> Path:
    ca_line = f"    ca_file: {ca or secure['ca']}\n"
    path = tmp / f"{user}-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(
        f"kafka:\n  bootstrap_servers: ['{secure['secure']}']\n  security_protocol: SASL_SSL\n"
        f"  tls:\n{ca_line}"
        f"  sasl:\n    mechanism: SCRAM-SHA-512\n    username: {user}\n    password: ${{KAFKA_PASSWORD}}\n"
        f"topics:\n  prefix: '{PREFIX}'\n{extra}"
    )
    return path


def _run(args: list[str], password: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {"KAFKA_PASSWORD": password, "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    return subprocess.run([LOGTIDE, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL, check=False)  # fmt: skip


def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    """One record, written over the plaintext listener (as an operator or an upstream stage would)."""

    async def produce() -> None:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await p.start()
        try:
            await p.send_and_wait(topic, value)
        finally:
            await p.stop()

    asyncio.run(produce())


def _no_secret(secure: dict, *outputs: str) -> None:
    for pw in secure["passwords"].values():
        for out in outputs:
            assert pw not in out


def test_shipper_writes_raw_topic_as_its_own_user(secure: dict, tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    log = tmp_path / "app.log"
    lines = [f'{{"msg": "secure line {i}", "token": "{token}"}}' for i in range(50)]
    log.write_text("\n".join(lines) + "\n")
    cfg = _config(tmp_path, secure, "logtide-shipper")
    res = _run(["ship", "--config", str(cfg), "--path", str(log), "--from-beginning", "--once",
                "--state-dir", str(tmp_path / "state")], secure["passwords"]["logtide-shipper"])  # fmt: skip
    assert res.returncode == 0, res.stderr
    _no_secret(secure, res.stdout, res.stderr)
    consumer_values: list[dict] = []

    async def collect() -> None:
        c = AIOKafkaConsumer(PREFIX + "logs.raw", bootstrap_servers=secure["plain"],
                             auto_offset_reset="earliest", group_id=None)  # fmt: skip
        await c.start()
        try:
            async with asyncio.timeout(30):
                while len(consumer_values) < len(lines):
                    for recs in (await c.getmany(timeout_ms=500)).values():
                        consumer_values.extend(orjson.loads(r.value) for r in recs if token.encode() in r.value)
        finally:
            await c.stop()

    asyncio.run(collect())
    assert sorted(d["message"] for d in consumer_values) == sorted(lines)


def test_sink_reads_derived_topics_as_its_own_user(secure: dict, tmp_path: Path, es_url: str) -> None:
    from elasticsearch import Elasticsearch
    from logtide.schemas import LogEvent, decode, to_document

    unique = uuid.uuid4().hex[:8]
    doc = to_document(decode(orjson.dumps(samples()[LogEvent]), LogEvent))
    doc["event"] = dict(doc["event"], id=f"secure-{unique}")

    _produce(secure["plain"], PREFIX + "logs.enriched", orjson.dumps(doc))
    extra = (f"sinks:\n  group_id: logtide-sinks-{unique}\n  sources: [logs.enriched]\n"
             f"  elasticsearch:\n    hosts: ['{es_url}']\n    index_prefix: lsec{unique}\n")  # fmt: skip
    cfg = _config(tmp_path, secure, "logtide-sink", extra=extra)
    res = _run(["sink", "--config", str(cfg), "--once"], secure["passwords"]["logtide-sink"], timeout=300)
    assert res.returncode == 0, res.stderr
    _no_secret(secure, res.stdout, res.stderr)
    with Elasticsearch(es_url) as es:
        es.indices.refresh(index=f"lsec{unique}-*")
        hits = es.search(index=f"lsec{unique}-*", query={"ids": {"values": [f"secure-{unique}"]}})["hits"]["hits"]
        es.indices.delete(index=f"lsec{unique}-*", ignore_unavailable=True)
    assert [h["_id"] for h in hits] == [f"secure-{unique}"]


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("wrong_password", "refused the SASL login of user 'logtide-shipper'"),
        ("untrusted_ca", "not signed by a CA this process trusts"),
        ("outside_acl", "not allowed to use topic 'logtide.logs.enriched'"),
    ],
)
def test_each_misconfiguration_gives_one_clear_error(secure: dict, tmp_path: Path, case: str, expect: str) -> None:
    log = tmp_path / "a.log"
    log.write_text("one line\n")
    password = secure["passwords"]["logtide-shipper"]
    ca = None
    args = ["ship", "--path", str(log), "--once", "--state-dir", str(tmp_path / "st")]
    if case == "wrong_password":
        password = "not-the-password-" + uuid.uuid4().hex
    elif case == "untrusted_ca":
        other = tmp_path / "other-ca"
        ca = str(kafka_secure.make_ca_and_cert(other, "changeit")[0])
    else:
        args += ["--topic", PREFIX + "logs.enriched"]
    cfg = _config(tmp_path, secure, "logtide-shipper", ca=ca)
    t0 = time.monotonic()
    res = _run([*args, "--config", str(cfg)], password, timeout=90)
    elapsed = time.monotonic() - t0
    assert res.returncode != 0
    assert expect in res.stderr, res.stderr
    assert res.stderr.count("Error:") == 1  # one sentence, not a retry storm
    assert "Traceback" not in res.stderr
    _no_secret(secure, res.stdout, res.stderr)
    assert password not in res.stdout + res.stderr
    assert elapsed < 85  # it stopped by itself (the subprocess timeout would have killed a hang)


@pytest.fixture
def expired_tls_server(tmp_path: Path) -> Iterator[int]:
    """A TLS server on loopback presenting a certificate that expired two days ago."""
    out = tmp_path / "expired"
    kafka_secure.make_ca_and_cert(out, "changeit", days=1, start="-3d")
    pem = out / "server.pem"
    subprocess.run(["openssl", "pkcs12", "-in", str(out / "broker.p12"), "-nodes", "-passin", "pass:changeit",
                    "-out", str(pem)], check=True, capture_output=True)  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pem)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield sock.getsockname()[1], out / "ca.pem"
    stop.set()
    t.join(2)
    sock.close()


def test_expired_broker_certificate_is_named(expired_tls_server: tuple[int, Path]) -> None:
    port, ca = expired_tls_server
    cfg = parse_config({"kafka": {"bootstrap_servers": [f"127.0.0.1:{port}"], "security_protocol": "SASL_SSL",
                                  "tls": {"ca_file": str(ca)},
                                  "sasl": {"mechanism": "SCRAM-SHA-512", "username": "u", "password": "p"}}})  # fmt: skip
    with pytest.raises(KafkaAccessError) as info:
        asyncio.run(check(cfg.kafka, [], timeout_s=10))
    assert "has expired" in str(info.value) and info.value.permanent


def test_streams_worker_reads_raw_and_writes_derived_as_its_own_user(secure: dict, tmp_path: Path) -> None:
    from logtide.schemas import LogEvent

    unique = uuid.uuid4().hex[:8]
    event = dict(samples()[LogEvent])
    event["event"] = dict(event["event"], id=f"secure-streams-{unique}")
    extra = (f"streams:\n  app_id: logtide-streams-{unique}\n  metrics_port: 0\n  web_port: 0\n"
             f"  state_dir: {tmp_path / 'state'}\n")  # fmt: skip
    cfg = _config(tmp_path, secure, "logtide-streams", extra=extra)
    log = (tmp_path / "worker.log").open("w")
    env = {"KAFKA_PASSWORD": secure["passwords"]["logtide-streams"], "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    proc = subprocess.Popen([LOGTIDE, "streams", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                            env=env, stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    found: list[dict] = []

    async def roundtrip() -> None:
        p = AIOKafkaProducer(bootstrap_servers=secure["plain"], acks="all")
        c = AIOKafkaConsumer(PREFIX + "logs.enriched", bootstrap_servers=secure["plain"],
                             auto_offset_reset="latest", group_id=None)  # fmt: skip
        await c.start()
        await c.seek_to_end()
        await p.start()
        try:
            async with asyncio.timeout(150):
                while not found:
                    assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                    await p.send_and_wait(PREFIX + "logs.raw", orjson.dumps(event))
                    for recs in (await c.getmany(timeout_ms=3000)).values():
                        found.extend(orjson.loads(r.value) for r in recs if unique.encode() in r.value)
        finally:
            await p.stop()
            await c.stop()

    try:
        asyncio.run(roundtrip())
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    output = (tmp_path / "worker.log").read_text()
    _no_secret(secure, output)
    assert found and found[0]["event"]["id"] == f"secure-streams-{unique}"


def test_replay_and_tail_read_as_the_reader_user(secure: dict, tmp_path: Path) -> None:
    from logtide.schemas import Anomaly

    unique = uuid.uuid4().hex[:8]
    doc = dict(samples()[Anomaly])
    doc["event"] = dict(doc["event"], id=f"secure-replay-{unique}")

    _produce(secure["plain"], PREFIX + "anomalies", orjson.dumps(doc))
    cfg = _config(tmp_path, secure, "logtide-reader")
    out = tmp_path / "replay.ndjson"
    pw = secure["passwords"]["logtide-reader"]
    res = _run(["replay", "--config", str(cfg), "--topic", "anomalies", "--from", "-10m", "--to", "now",
                "--output", str(out)], pw)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert f"secure-replay-{unique}" in out.read_text()
    tail = _run(["anomalies", "tail", "--config", str(cfg), "--since", "10m", "--json"], pw)
    assert tail.returncode == 0, tail.stderr
    assert f"secure-replay-{unique}" in tail.stdout
    _no_secret(secure, res.stdout, res.stderr, tail.stdout, tail.stderr)
    # the reader may not write: re-publishing into a raw topic is refused by the broker's ACL
    denied = _run(["replay", "--config", str(cfg), "--topic", "anomalies", "--from", "-10m", "--to", "now",
                   "--into-topic", PREFIX + "logs.raw"], pw)  # fmt: skip
    assert denied.returncode != 0 and "Traceback" not in denied.stderr
    assert "logs.raw" in denied.stderr and ("authoriz" in denied.stderr.lower() or "not allowed" in denied.stderr)


def test_alert_silences_as_the_alerts_user(secure: dict, tmp_path: Path) -> None:
    unique = uuid.uuid4().hex[:8]
    cfg = _config(tmp_path, secure, "logtide-alerts",
                  extra="alerts:\n  route:\n    receiver: hook\n  receivers:\n    - name: hook\n"
                        "      webhook_configs:\n        - url: http://127.0.0.1:9/\n")  # fmt: skip
    pw = secure["passwords"]["logtide-alerts"]
    add = _run(["alerts", "--config", str(cfg), "silence", "add", "-m", f"service=secure-{unique}",
                "--duration", "1h", "--author", "test", "--comment", "maintenance"], pw)  # fmt: skip
    assert add.returncode == 0, add.stdout + add.stderr
    listed = _run(["alerts", "--config", str(cfg), "silence", "list"], pw)
    assert listed.returncode == 0, listed.stderr
    assert f"secure-{unique}" in listed.stdout
    _no_secret(secure, add.stdout, add.stderr, listed.stdout, listed.stderr)
