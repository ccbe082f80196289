"""Schemathesis hooks for Align's spec-driven fuzzing (see ../docs/security.md).

They make generated requests behave like a correct client where the OpenAPI document cannot
say so, and change nothing that a negative test case relies on:

- every request gets a fresh `Idempotency-Key` (a client reuses one only to repeat the very
  same request; random keys drawn from a tiny alphabet collide across different requests and
  would be answered, correctly, with 422 idempotency_key_reused);
- an `expiresAt` that is a valid time in the past is moved one day into the future (the API
  refuses to mint a key that has already expired, a rule JSON Schema cannot express);
- a key's usage range (`from`, `to`) is made to end after it starts and to span at most 1000
  steps of its granularity (the API's rules: `to` after `from`, at most 1500 steps).
Values that are not valid (negative cases) are left alone.
"""

import datetime
import re
import uuid

import schemathesis

_PRINTABLE = re.compile(r"^[ -~]{1,255}$")


_STEP = {"minute": 60, "hour": 3600, "day": 86400}


def _parse_time(value):
    if not isinstance(value, str):
        return None
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _format_time(when):
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _usage_range(query):
    """`from` before `to`, at most 1000 steps apart, when both (or `from` alone) are valid."""
    step = datetime.timedelta(seconds=_STEP[query.get("granularity", "hour")])
    start = _parse_time(query.get("from"))
    if start is None:
        return
    end = _parse_time(query.get("to")) if "to" in query else None
    if "to" in query and end is None:
        return
    if end is None or end <= start or end - start > 1000 * step:
        try:
            query["to"] = _format_time(start + step)
        except OverflowError:
            query["from"] = _format_time(start - step)
            query["to"] = _format_time(start)


@schemathesis.hook
def before_call(ctx, case, kwargs):
    """Runs before every request of every phase (generation hooks do not run in all)."""
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key" and isinstance(headers[name], str):
            if _PRINTABLE.match(headers[name]):
                headers[name] = str(uuid.uuid4())
    if case.operation.path == "/api/v1/keys/{id}/usage" and isinstance(case.query, dict):
        granularity = case.query.get("granularity", "hour")
        if isinstance(granularity, str) and granularity in _STEP:
            _usage_range(case.query)
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
