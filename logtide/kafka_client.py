"""Turns the `kafka` configuration section into aiokafka keyword arguments.

Stages receive plain client kwargs from here, so none of them needs to know the config file.
"""

from __future__ import annotations

from typing import Any

from logtide.config import KafkaConfig

_COMPRESSION = {"none": None, "lz4": "lz4", "zstd": "zstd", "gzip": "gzip", "snappy": "snappy"}


def connection_kwargs(cfg: KafkaConfig) -> dict[str, Any]:
    """Connection and security settings shared by producers, consumers and the admin client."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": ",".join(cfg.bootstrap_servers),
        "client_id": cfg.client_id,
        "security_protocol": cfg.security_protocol,
    }
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        tls = cfg.tls
        ctx = create_ssl_context(
            cafile=str(tls.ca_file) if tls and tls.ca_file else None,
            certfile=str(tls.cert_file) if tls and tls.cert_file else None,
            keyfile=str(tls.key_file) if tls and tls.key_file else None,
            password=tls.key_password.get_secret_value() if tls and tls.key_password else None,
        )
        ctx.check_hostname = tls.check_hostname if tls else True
        kwargs["ssl_context"] = ctx
    if cfg.sasl is not None:
        kwargs["sasl_mechanism"] = cfg.sasl.mechanism
        kwargs["sasl_plain_username"] = cfg.sasl.username
        kwargs["sasl_plain_password"] = cfg.sasl.password.get_secret_value()
    return kwargs


def producer_kwargs(cfg: KafkaConfig) -> dict[str, Any]:
    """AIOKafkaProducer kwargs: durable by default (acks=all, idempotence), batched and compressed."""
    p = cfg.producer
    acks: int | str = "all" if p.acks == "all" else int(p.acks)
    return {
        **connection_kwargs(cfg),
        "acks": acks,
        "enable_idempotence": p.enable_idempotence and acks == "all",
        "compression_type": _COMPRESSION[p.compression],
        "linger_ms": p.linger_ms,
        "max_batch_size": p.max_batch_bytes,
        "max_request_size": p.max_request_bytes,
        "request_timeout_ms": p.request_timeout_ms,
    }
