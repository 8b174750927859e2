"""How a webhook is signed, and how a receiver checks it.

Every delivery is a POST of a JSON body with these headers:

    Content-Type: application/json
    Tierwise-Event-Id: 5f0e...        the event's id: de-duplicate on it (a retry sends the same id)
    Tierwise-Event-Type: tier.upgraded
    Tierwise-Signature: t=1764547200,v1=3b1f...[,v1=...]

v1 is the hex HMAC-SHA256, keyed with the subscription's secret (the whole `whsec_...` string as UTF-8), of
`<t>.<body>`: the decimal timestamp, a dot, and the body's exact bytes. Right after a secret rotation a second v1
(signed with the previous secret) is sent too, until the overlap ends. A receiver checks that one v1 matches, in
constant time, and that t is recent (which refuses a replayed old delivery):

    import hashlib, hmac, time


    def verify(secret: str, body: bytes, signature: str, tolerance_s: int = 300) -> bool:
        parts = [part.split("=", 1) for part in signature.split(",")]
        timestamps = [value for key, value in parts if key == "t"]
        if len(timestamps) != 1 or not timestamps[0].isdigit():
            return False
        if abs(time.time() - int(timestamps[0])) > tolerance_s:
            return False
        expected = hmac.new(secret.encode(), timestamps[0].encode() + b"." + body, hashlib.sha256).hexdigest()
        return any(hmac.compare_digest(expected, value) for key, value in parts if key == "v1")

Verify the raw body as received, before parsing it: JSON re-serialised by a framework may differ in bytes.
"""

import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature_header(secrets_: list[str], timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return ",".join(
        [
            f"t={timestamp}",
            *("v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest() for secret in secrets_),
        ]
    )
