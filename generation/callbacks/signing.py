"""What a callback sends: the body and its Standard Webhooks headers and signatures.

The payload and ``webhook-id`` are fixed when the delivery is created; each attempt serialises
the payload once (``payload_body``) and signs exactly those bytes with the account's secret.
"""

import base64
import hashlib
import hmac
import json

USER_AGENT = "ByteSpike-Webhooks/1"


def sign(*, key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def payload_body(payload: dict) -> bytes:
    """The exact bytes sent for a payload (and signed): compact UTF-8 JSON."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def webhook_headers(
    *,
    key: bytes,
    webhook_id: str,
    timestamp: int,
    body: bytes,
    previous_key: bytes | None = None,
) -> dict:
    """The headers of one attempt. During a rotation's overlap window ``previous_key`` adds a
    second signature, space-separated as Standard Webhooks allows: a receiver holding either
    secret verifies the callback."""
    keys = (key,) if previous_key is None else (key, previous_key)
    signatures = [
        sign(key=one, webhook_id=webhook_id, timestamp=timestamp, body=body) for one in keys
    ]
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
    }
