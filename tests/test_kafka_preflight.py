"""The start-up check asks the broker about the process's own topics only, and never creates them
(a broker with automatic topic creation would make a topic with its default partition count)."""

from __future__ import annotations

import asyncio

from logtide.config import KafkaConfig
from logtide.kafka_preflight import check


async def _appears(bootstrap: str, topic: str, within_s: float = 5.0) -> bool:
    """Whether `topic` shows up within `within_s` (a broker creates topics asynchronously)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for _ in range(int(within_s / 0.5)):
            if topic in await admin.list_topics():
                return True
            await asyncio.sleep(0.5)
        return False
    finally:
        await admin.close()


def test_a_topic_that_does_not_exist_yet_passes_and_is_not_created(kafka_bootstrap: str, unique: str) -> None:
    topic = f"preflight-{unique}"
    asyncio.run(check(KafkaConfig(bootstrap_servers=[kafka_bootstrap]), [topic], timeout_s=20))
    assert not asyncio.run(_appears(kafka_bootstrap, topic))


def test_an_existing_topic_passes(kafka_bootstrap: str, unique: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"preflight-{unique}"

    async def create_and_check() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 1, 1)])
            await check(KafkaConfig(bootstrap_servers=[kafka_bootstrap]), [topic], timeout_s=20)
        finally:
            await admin.delete_topics([topic])
            await admin.close()

    asyncio.run(create_and_check())
