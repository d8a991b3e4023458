"""`logtide services`: the real local Kafka and Elasticsearch answer the clients the pipeline uses.

The shared instance (127.0.0.1:9092 / :9200) is only ever brought up here, never down: other tests
use it. `down` is exercised on a second, Kafka-only instance with its own state dir and ports.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from click.testing import CliRunner
from elasticsearch import Elasticsearch

from logtide.services import ServiceError, ensure_up, is_es_up, is_kafka_up, services, status, stop
from logtide.services import fetch as services_fetch
from logtide.services.health import kafka_brokers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def addresses() -> dict[str, str]:
    return ensure_up()


def test_up_is_idempotent(addresses: dict[str, str]) -> None:
    pids = {st.name: st.pid for st in status()}
    t0 = time.monotonic()
    again = ensure_up()
    assert time.monotonic() - t0 < 10, "a second `up` must find the running services, not restart them"
    assert again == addresses
    plain = {k: v for k, v in again.items() if k != "kafka (SASL_SSL)"}
    assert plain == {"kafka": "127.0.0.1:9092", "elasticsearch": "http://127.0.0.1:9200"}
    if "kafka (SASL_SSL)" in again:  # `services up --secure` was run on this instance (scripts/test.sh does)
        assert again["kafka (SASL_SSL)"] == "127.0.0.1:9094"
    assert {st.name: st.pid for st in status()} == pids

    result = CliRunner().invoke(services, ["up"])
    assert result.exit_code == 0, result.output
    assert "already" in result.output
    assert "127.0.0.1:9092" in result.output
    assert "http://127.0.0.1:9200" in result.output


def test_status_reports_running(addresses: dict[str, str]) -> None:
    assert is_kafka_up()
    assert is_es_up()
    states = {st.name: st for st in status()}
    assert set(states) == {"kafka", "elasticsearch"}
    for st in states.values():
        assert st.answering
        assert st.state.startswith("running")
    result = CliRunner().invoke(services, ["status"])
    assert result.exit_code == 0, result.output
    assert result.output.count("answering") == 2
    assert "not answering" not in result.output


def test_kafka_metadata_raw_probe(addresses: dict[str, str]) -> None:
    assert kafka_brokers("127.0.0.1", 9092) == [(1, "127.0.0.1", 9092)]


async def test_kafka_metadata_via_aiokafka(addresses: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=addresses["kafka"])
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        topics = await admin.list_topics()
    finally:
        await admin.close()
    assert [(b["node_id"], b["host"], b["port"]) for b in cluster["brokers"]] == [(1, "127.0.0.1", 9092)]
    assert isinstance(topics, list)


def test_kafka_metadata_via_kcat(addresses: dict[str, str]) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "kcat is not installed: apt-get install -y kcat"
    out = subprocess.run(
        [kcat, "-L", "-b", addresses["kafka"]], check=False, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert "1 brokers:" in out.stdout
    assert "broker 1 at 127.0.0.1:9092" in out.stdout


def test_es_answers_with_product_header(addresses: dict[str, str]) -> None:
    resp = httpx.get(addresses["elasticsearch"], trust_env=False, timeout=5)
    assert resp.headers["X-Elastic-Product"] == "Elasticsearch"
    curl = shutil.which("curl")
    assert curl, "curl is not installed"
    out = subprocess.run(
        [curl, "-s", "-i", "127.0.0.1:9200"], check=False, capture_output=True, text=True, timeout=30
    )
    assert "x-elastic-product: elasticsearch" in out.stdout.lower()


async def test_kafka_produce_consume_round_trip(addresses: dict[str, str], unique: str) -> None:
    bootstrap = addresses["kafka"]
    topic = f"services-test.{unique}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()

    sent = [f"event-{i}".encode() for i in range(20)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i, value in enumerate(sent):
            await producer.send_and_wait(topic, value, key=str(i % 4).encode())
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"services-test-{unique}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while len(got) < len(sent):
                batch = await consumer.getmany(timeout_ms=1000)
                got += [msg.value for msgs in batch.values() for msg in msgs]
        await consumer.commit()
    finally:
        await consumer.stop()
    assert sorted(got) == sorted(sent)


def test_es_index_and_search(addresses: dict[str, str], unique: str) -> None:
    es = Elasticsearch(addresses["elasticsearch"], request_timeout=30)
    index = f"services-test-{unique}"
    try:
        es.index(
            index=index, id="evt-1", document={"message": "disk almost full", "host": "db-1"}, refresh=True
        )
        hits = es.search(index=index, query={"match": {"message": "disk"}})["hits"]
        assert hits["total"]["value"] == 1
        assert hits["hits"][0]["_id"] == "evt-1"
        assert hits["hits"][0]["_source"]["host"] == "db-1"
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _java_pids_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and "java" in cmdline.split(" ", 1)[0]:
                pids.append(int(entry.name))
    return pids


def test_down_stops_exactly_its_own_instance(
    addresses: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second Kafka (own state dir and ports) goes up and down; the shared instance stays up."""
    port, controller = _free_ports(2)
    monkeypatch.setenv("LOGTIDE_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("LOGTIDE_KAFKA_PORT", str(port))
    monkeypatch.setenv("LOGTIDE_KAFKA_CONTROLLER_PORT", str(controller))

    assert ensure_up(kafka=True, elasticsearch=False, timeout=120) == {"kafka": f"127.0.0.1:{port}"}
    (kafka,) = status(elasticsearch=False)
    assert kafka.pid is not None and kafka.answering
    assert _java_pids_mentioning(str(tmp_path)) == [kafka.pid]

    result = CliRunner().invoke(services, ["down", "--only", "kafka"])
    assert result.exit_code == 0, result.output
    assert "kafka: stopped" in result.output
    assert _java_pids_mentioning(str(tmp_path)) == []
    assert not is_kafka_up()
    (kafka,) = status(elasticsearch=False)
    assert kafka.state == "stopped" and kafka.pid is None
    assert stop(elasticsearch=False) == {"kafka": False}  # a second down is a no-op

    monkeypatch.undo()
    assert is_kafka_up() and is_es_up(), "the shared instance must be untouched"


def test_failed_download_names_artifact_and_maven_central(tmp_path: Path) -> None:
    pom = tmp_path / "kafka-pom.xml"
    pom.write_text(
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>t</groupId><artifactId>t</artifactId><version>1</version><packaging>pom</packaging>"
        "<dependencies><dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>"
        "<version>0.0.0-does-not-exist</version></dependency></dependencies></project>"
    )
    with pytest.raises(ServiceError) as err:
        services_fetch.maven_copy_dependencies(
            pom, "org.apache.kafka:kafka_2.13:0.0.0-does-not-exist", tmp_path / "out", tmp_path
        )
    message = str(err.value)
    assert "org.apache.kafka:kafka_2.13:0.0.0-does-not-exist" in message
    assert "Maven Central" in message
    assert "maven-kafka-pom.log" in message
