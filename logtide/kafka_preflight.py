"""Check the Kafka connection once at start, and turn a failure into one sentence that names its cause.

Without this, a wrong password, an untrusted CA or a missing ACL shows up as aiokafka's generic
"Unable to bootstrap" and a process that retries forever. aiokafka logs the real cause (SASL
failure, TLS verification error) on its connection logger before it raises; we listen to that
logger during the check (public logging API, no client internals) and name the cause.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from logtide.config import KafkaConfig
from logtide.kafka_client import connection_kwargs
from logtide.shippers.aiokafka_compat import topic_errors


class KafkaAccessError(RuntimeError):
    """The brokers cannot be used as configured; the message says why and which setting to look at.

    `permanent`: retrying cannot help (credentials, certificates, ACLs), so a process should stop
    with this message; otherwise (nothing answers yet) it may wait for the brokers as usual.
    """

    def __init__(self, message: str, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.messages.append(record.getMessage())


def explain(cfg: KafkaConfig, error: BaseException, logged: Iterable[str] = ()) -> str:
    """One sentence for a connection or authorisation failure (never contains a secret)."""
    text = " ".join([*logged, f"{type(error).__name__}: {error}"])
    servers = ",".join(cfg.bootstrap_servers)
    user = cfg.sasl.username if cfg.sasl else None
    if "SaslAuthenticationFailed" in text or "Authentication failed" in text:
        return (f"Kafka at {servers} refused the SASL login of user {user!r} ({cfg.sasl.mechanism if cfg.sasl else ''}): "
                "wrong password or unknown user; check kafka.sasl.username and kafka.sasl.password")  # fmt: skip
    if "certificate has expired" in text:
        return (f"the TLS certificate of the Kafka broker at {servers} has expired; "
                "the broker needs a renewed certificate (kafka.tls settings are not the cause)")  # fmt: skip
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        detail = text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip()
        if "mismatch" in detail or "doesn't match" in detail:
            return (f"the TLS certificate of the Kafka broker at {servers} is not valid for that host name "
                    f"({detail}); connect by a name in the certificate or set kafka.tls.check_hostname")  # fmt: skip
        return (f"the TLS certificate of the Kafka broker at {servers} is not signed by a CA this process trusts "
                f"({detail}); set kafka.tls.ca_file to the CA that signed it")  # fmt: skip
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return f"Kafka at {servers} does not speak TLS on that port: check kafka.security_protocol and the port"
    if "TopicAuthorizationFailed" in text:
        topic = str(error).rsplit(":", 1)[-1].strip() if ":" in str(error) else "?"
        return (f"user {user!r} is not allowed to use topic {topic!r} at {servers} (Kafka ACL); ask for an ACL "
                "or check topics.prefix")  # fmt: skip
    if "GroupAuthorizationFailed" in text:
        return f"user {user!r} is not allowed to use its consumer group at {servers} (Kafka ACL)"
    if "Connection refused" in text or "Unable to bootstrap" in text or "Connect call failed" in text:
        return (f"no Kafka broker answers at {servers} with security_protocol {cfg.security_protocol} "
                "(is it running, is this the right port?)")  # fmt: skip
    return f"cannot use Kafka at {servers}: {type(error).__name__}: {error}"


async def check(cfg: KafkaConfig, topics: Iterable[str] = (), timeout_s: float = 20.0) -> None:
    """Connect, log in and describe `topics`; raise KafkaAccessError naming the cause if any step fails.

    Topics that do not exist yet are fine (they may be created later); topics the user may not
    describe are not. Only `topics` are asked for, in a metadata request that never creates them
    (`aiokafka_compat.topic_errors`): listing a large cluster's topics took most of a process's
    start-up. Brokers too old for that request get the old way: the topic list, then by name (SASL).
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.errors import TopicAuthorizationFailedError

    capture = _Capture()
    loggers = [logging.getLogger(n) for n in ("aiokafka.conn", "aiokafka.client", "aiokafka")]
    for lg in loggers:
        lg.addHandler(capture)
    kw: dict[str, Any] = {**connection_kwargs(cfg), "request_timeout_ms": int(timeout_s * 1000)}
    producer = AIOKafkaProducer(**kw)
    consumer = AIOKafkaConsumer(**kw, enable_auto_commit=False)
    try:
        try:
            await asyncio.wait_for(consumer.start(), timeout_s)
            errors = await asyncio.wait_for(topic_errors(consumer, list(topics)), timeout_s) if topics else {}
            if errors is None:  # a broker without Metadata v4: list the topics, as before
                visible = await asyncio.wait_for(consumer.topics(), timeout_s)
                missing = [t for t in topics if t not in visible]
                if missing and cfg.sasl is not None:
                    await asyncio.wait_for(producer.start(), timeout_s)
                    for topic in missing:
                        await asyncio.wait_for(_describe(producer, topic), timeout_s)
            else:
                for topic, code in errors.items():
                    if code == TopicAuthorizationFailedError.errno:
                        raise TopicAuthorizationFailedError(topic)
        except TopicAuthorizationFailedError as exc:
            raise KafkaAccessError(explain(cfg, exc)) from None
        except (TimeoutError, Exception) as exc:
            msg = explain(cfg, exc, capture.messages)
            raise KafkaAccessError(msg, permanent=not msg.startswith("no Kafka broker answers")) from None
    finally:
        for lg in loggers:
            lg.removeHandler(capture)
        await consumer.stop()
        await producer.stop()


async def _describe(producer: Any, topic: str) -> None:
    """A metadata request for one topic: raises TopicAuthorizationFailedError when it is not ours."""
    from aiokafka.errors import TopicAuthorizationFailedError

    try:
        await producer.partitions_for(topic)
    except TopicAuthorizationFailedError:
        raise
    except Exception as exc:  # the topic does not exist yet: not an access problem
        if "UnknownTopicOrPartition" in type(exc).__name__ or "KafkaTimeoutError" in type(exc).__name__:
            return
        raise


def preflight(cfg: KafkaConfig, topics: Iterable[str], log: logging.Logger) -> None:
    """`check` for a process command: exit with the cause when it is permanent, warn and go on otherwise."""
    import click

    try:
        asyncio.run(check(cfg, topics))
    except KafkaAccessError as exc:
        if exc.permanent:
            raise click.ClickException(str(exc)) from None
        log.warning("%s; starting anyway, waiting for the brokers", exc)
