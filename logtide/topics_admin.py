"""Creates the logtide topics with the partitions, replication and retention the config asks for."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import click

from logtide.config import Config
from logtide.config_command import load_for_command
from logtide.kafka_client import connection_kwargs
from logtide.schemas.topics import ALL, Topics


@dataclass(frozen=True)
class TopicResult:
    name: str
    status: str  # created | exists | mismatch
    detail: str = ""


async def ensure_topics(cfg: Config, timeout_s: float = 30.0) -> list[TopicResult]:
    """Create missing topics; report existing ones whose partition count differs. Idempotent."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topics = Topics(cfg.topics.prefix)
    admin = AIOKafkaAdminClient(**connection_kwargs(cfg.kafka), request_timeout_ms=int(timeout_s * 1000))
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        # Describe only topics that exist: a metadata request for a missing topic may auto-create it
        # with broker defaults when the broker allows auto-creation.
        present = set(await admin.list_topics()) & {topics.name(t) for t in ALL}
        existing = await admin.describe_topics(sorted(present)) if present else []
        partitions_of = {
            d["topic"]: len(d.get("partitions") or []) for d in existing if d.get("error_code", 0) == 0
        }
        results, wanted = [], []
        for short in ALL:
            name = topics.name(short)
            parts, rf, retention = cfg.topics.settings(short)
            if name in partitions_of:
                have = partitions_of[name]
                status = "exists" if have == parts else "mismatch"
                detail = "" if have == parts else f"has {have} partitions, config asks {parts}"
                results.append(TopicResult(name, status, detail))
                continue
            wanted.append(
                NewTopic(
                    name,
                    parts,
                    rf,
                    topic_configs={"retention.ms": str(retention), "cleanup.policy": "delete"},
                )
            )
            results.append(
                TopicResult(name, "created", f"{parts} partitions, rf {rf}, retention {retention} ms")
            )
        if wanted:
            resp = await admin.create_topics(wanted)
            for name, code, message in getattr(resp, "topic_errors", []) or []:
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (a concurrent creator won the race)
                    raise RuntimeError(f"creating {name} failed: error {code} {message or ''}".strip())
        return results
    finally:
        await admin.close()


@click.group()
def topics() -> None:
    """Manage the Kafka topics logtide uses."""


@topics.command("create")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Configuration file.")
@click.option("--bootstrap", help="Override kafka.bootstrap_servers (HOST:PORT[,HOST:PORT]).")
def create(config_path: str | None, bootstrap: str | None) -> None:
    """Create the topics (partitions, replication, retention from the config); safe to repeat."""
    cfg = load_for_command(config_path, bootstrap)
    try:
        results = asyncio.run(ensure_topics(cfg))
    except Exception as exc:
        raise click.ClickException(
            f"cannot create topics on {','.join(cfg.kafka.bootstrap_servers)}: {type(exc).__name__}: {exc}"
        ) from None
    for r in results:
        click.echo(f"{r.status:8} {r.name}" + (f"  ({r.detail})" if r.detail else ""))
    if any(r.status == "mismatch" for r in results):
        raise SystemExit(1)
