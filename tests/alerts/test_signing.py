"""Standard Webhooks signing: the specification's published test vector, rotation, tampering."""

from __future__ import annotations

from logtide.sinks.alerts.signing import headers, sign, verify

# The Standard Webhooks specification's test vector (spec/standard-webhooks.md, and every library's tests).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TS = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_reproduces_the_published_test_vector() -> None:
    assert sign(SECRET, MSG_ID, TS, BODY) == EXPECTED
    assert verify(SECRET, {"webhook-id": MSG_ID, "webhook-timestamp": str(TS), "webhook-signature": EXPECTED},
                  BODY, now=TS)


def test_rotation_signs_with_every_secret_and_either_verifies() -> None:
    other = "whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA=="
    h = headers([SECRET, other], MSG_ID, TS, BODY)
    assert h["webhook-signature"].count("v1,") == 2
    assert verify(SECRET, h, BODY, TS) and verify(other, h, BODY, TS)


def test_tampered_body_stale_timestamp_or_wrong_secret_fail() -> None:
    h = headers([SECRET], MSG_ID, TS, BODY)
    assert not verify(SECRET, h, BODY + b" ", TS)
    assert not verify(SECRET, h, BODY, TS + 3600)
    assert not verify("whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA==", h, BODY, TS)
    assert not verify(SECRET, {"webhook-id": MSG_ID}, BODY, TS)
