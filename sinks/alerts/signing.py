"""Standard Webhooks signing: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`.

The signature is base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>")) with the key being the base64
part of a `whsec_` secret; during key rotation every secret signs and the header lists them, separated
by spaces. `verify` is what a receiver does (our test receivers use it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature."""
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers for a delivery (no signature header when there is no secret)."""
    h = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if secrets:
        h["webhook-signature"] = " ".join(sign(s, msg_id, timestamp, body) for s in secrets)
    return h


def verify(secret: str, hdrs: dict[str, str], body: bytes, now: int, tolerance: int = 300) -> bool:
    """True when one of the header's v1 signatures is ours and the timestamp is fresh."""
    try:
        msg_id, ts = hdrs["webhook-id"], int(hdrs["webhook-timestamp"])
        sigs = hdrs["webhook-signature"].split(" ")
    except (KeyError, ValueError):
        return False
    if abs(now - ts) > tolerance:
        return False
    want = sign(secret, msg_id, ts, body)
    return any(hmac.compare_digest(want, s) for s in sigs if s.startswith("v1,"))
