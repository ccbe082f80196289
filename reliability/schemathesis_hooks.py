"""Schemathesis hooks for Align's spec-driven fuzzing (see ../docs/security.md).

They make generated requests behave like a correct client where the OpenAPI document cannot
say so, and change nothing that a negative test case relies on:

- every request gets a fresh `Idempotency-Key` (a client reuses one only to repeat the very
  same request; random keys drawn from a tiny alphabet collide across different requests and
  would be answered, correctly, with 422 idempotency_key_reused);
- an `expiresAt` that is a valid time in the past is moved one day into the future (the API
  refuses to mint a key that has already expired, a rule JSON Schema cannot express).
Values that are not valid (negative cases) are left alone.
"""

import datetime
import re
import uuid

import schemathesis

_PRINTABLE = re.compile(r"^[ -~]{1,255}$")


@schemathesis.hook
def before_call(ctx, case, kwargs):
    """Runs before every request of every phase (generation hooks do not run in all)."""
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key" and isinstance(headers[name], str):
            if _PRINTABLE.match(headers[name]):
                headers[name] = str(uuid.uuid4())
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("expiresAt"), str):
        try:
            when = datetime.datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
        except ValueError:
            return
        now = datetime.datetime.now(datetime.timezone.utc)
        if when.tzinfo is not None and when <= now:
            future = now + datetime.timedelta(days=1)
            body["expiresAt"] = future.strftime("%Y-%m-%dT%H:%M:%S.000Z")
