#!/usr/bin/env python3
"""Reference verifier for vigil alert webhooks (Python 3 standard library only).

A vigil webhook request carries:
  X-Vigil-Timestamp:       Unix time in seconds when it was signed
  X-Vigil-Signature:       v1=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>
  X-Vigil-Idempotency-Key: delivery id, identical on every retry of the delivery

Receivers must verify over the RAW body bytes (before any JSON parsing),
compare in constant time, reject timestamps outside the replay window, and
treat a repeated idempotency key as already processed.

Use as a library:   verify(secret, timestamp, signature, body) -> bool
or from the shell:  VIGIL_WEBHOOK_SECRET=... verify_webhook.py \
                        --timestamp T --signature 'v1=...' --body-file body.json
(exit status 0 = valid, 1 = invalid).
"""

import argparse
import hashlib
import hmac
import os
import sys
import time

# Requests signed longer ago (or further ahead) than this are refused, so a
# captured request cannot be replayed later. Keep clocks in sync (NTP).
REPLAY_WINDOW_SECONDS = 300


def verify(secret, timestamp, signature, body, now=None, tolerance=REPLAY_WINDOW_SECONDS):
    """True when `signature` is vigil's signature of `body` at `timestamp`
    and `timestamp` is within `tolerance` seconds of `now`."""
    if isinstance(secret, str):
        secret = secret.encode()
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - ts) > tolerance:
        return False
    if not signature.startswith("v1="):
        return False
    expected = hmac.new(secret, str(ts).encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature[3:])


def main():
    p = argparse.ArgumentParser(description="Verify a vigil webhook signature.")
    p.add_argument("--timestamp", required=True, help="X-Vigil-Timestamp value")
    p.add_argument("--signature", required=True, help="X-Vigil-Signature value")
    p.add_argument("--body-file", required=True, help="file holding the raw request body")
    p.add_argument("--tolerance", type=int, default=REPLAY_WINDOW_SECONDS)
    a = p.parse_args()
    secret = os.environ.get("VIGIL_WEBHOOK_SECRET")
    if not secret:
        print("set VIGIL_WEBHOOK_SECRET", file=sys.stderr)
        return 2
    with open(a.body_file, "rb") as f:
        body = f.read()
    ok = verify(secret, a.timestamp, a.signature, body, tolerance=a.tolerance)
    print("valid" if ok else "INVALID")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
