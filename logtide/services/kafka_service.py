"""Kafka as a single KRaft node (broker + controller) on loopback, run straight from the Maven jars."""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from pathlib import Path

from logtide.services import fetch, health, kafka_secure, process
from logtide.services.base import Service
from logtide.services.config import LOOPBACK, ServiceError, Settings, java_home

HEAP = ("-Xms512m", "-Xmx1g")
NODE_ID = 1

LOG4J2 = """\
# Written by `logtide services up`: Kafka logs to files here, never to the terminal.
status = warn
name = logtide-kafka
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka_request.name = kafka.request.logger
logger.kafka_request.level = warn
"""


def server_properties(s: Settings) -> str:
    """Broker settings for one node that is also its own controller."""
    data = s.kafka_dir / "data"
    return f"""\
# Written by `logtide services up` on every start; edits here are overwritten.
process.roles=broker,controller
node.id={NODE_ID}
controller.quorum.voters={NODE_ID}@{LOOPBACK}:{s.kafka_controller_port}
listeners=PLAINTEXT://{LOOPBACK}:{s.kafka_port},CONTROLLER://{LOOPBACK}:{s.kafka_controller_port}
advertised.listeners=PLAINTEXT://{LOOPBACK}:{s.kafka_port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
# A single node can only hold one replica of anything.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Tests join and leave groups constantly: do not wait 3 s for more members on every first join.
group.initial.rebalance.delay.ms=0
# Faust creates its internal changelog/repartition topics itself, but consumers that subscribe before
# the producer side exists (and Faust's leader topic on some versions) rely on auto-creation.
auto.create.topics.enable=true
# Development data: keep a day, not a week.
log.retention.hours=24
"""


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (what kafka-storage makes)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _java_cmd(s: Settings, libs: Path, main_class: str, *args: str) -> list[str]:
    return [
        str(java_home() / "bin" / "java"),
        *HEAP,
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={s.kafka_dir / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={s.kafka_dir / 'logs'}",
        "-cp",
        f"{libs}/*",
        main_class,
        *args,
    ]


def _write_config(s: Settings) -> Path:
    (s.kafka_dir / "logs").mkdir(parents=True, exist_ok=True)
    (s.kafka_dir / "log4j2.properties").write_text(LOG4J2)
    props = s.kafka_dir / "server.properties"
    text = server_properties(s)
    if kafka_secure.enabled(s):  # later keys win in a properties file
        text += "# The secured listener (`logtide services up --secure`).\n" + kafka_secure.listener_properties(s)
    props.write_text(text)
    return props


def _format_storage(s: Settings, libs: Path, props: Path) -> None:
    """Format the KRaft log dir once (a formatted dir has meta.properties)."""
    if (s.kafka_dir / "data" / "meta.properties").exists():
        return
    log = s.kafka_dir / "logs" / "format.log"
    # `--cluster-id=ID` form: a random id may begin with "-", which argparse would take for an option.
    cmd = _java_cmd(
        s,
        libs,
        "kafka.tools.StorageTool",
        "format",
        f"--cluster-id={_new_cluster_id()}",
        "--config",
        str(props),
        *kafka_secure.format_args(s),
    )
    with log.open("w") as out:
        rc = subprocess.run(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False, timeout=120
        ).returncode
    if rc != 0:
        raise ServiceError(f"formatting Kafka storage failed (exit {rc}); see {log}")
    kafka_secure.formatted(s)


def _start(s: Settings) -> int:
    libs = fetch.ensure_kafka(s)
    props = _write_config(s)
    _format_storage(s, libs, props)
    env = {**os.environ, "JAVA_HOME": str(java_home())}
    return process.spawn(
        _java_cmd(s, libs, "kafka.Kafka", str(props)),
        env=env,
        cwd=s.kafka_dir,
        out_file=s.kafka_dir / "logs" / "console.out",
        pid_file=s.pid_file("kafka"),
    )


def kafka_service(s: Settings) -> Service:
    """The Kafka broker of this instance, as the manager sees it."""
    return Service(
        name="kafka",
        address=s.kafka_address,
        ports=(s.kafka_port, s.kafka_controller_port),
        pid_file=s.pid_file("kafka"),
        log_file=s.kafka_log,
        marker=str(s.kafka_dir / "server.properties"),
        answers=lambda: health.kafka_answers(LOOPBACK, s.kafka_port),
        fetch=lambda: fetch.ensure_kafka(s),
        start=lambda: _start(s),
    )
