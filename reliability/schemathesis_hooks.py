"""Schemathesis hooks for Align's spec-driven fuzzing (see ../docs/security.md).

They make generated requests behave like a correct client where the OpenAPI document cannot
say so, and change nothing that a negative test case relies on:

- every request gets a fresh `Idempotency-Key` (a client reuses one only to repeat the very
  same request; random keys drawn from a tiny alphabet collide across different requests and
  would be answered, correctly, with 422 idempotency_key_reused);
- an `expiresAt` that is a valid time in the past is moved one day into the future (the API
  refuses to mint a key that has already expired, a rule JSON Schema cannot express);
- a key's (or a key space key's) usage range (`from`, `to`) is made to end after it starts and to span at most 1000
  steps of its granularity (the API's rules: `to` after `from`, at most 1500 steps);
- a key space key's named limits that differ but share a name keep the first of each name
  (names are unique on a key; JSON Schema's uniqueItems compares whole items), and its
  well-formed permissions only those its key space declares;
- a verification's permission query that the spec's pattern (a superset: parentheses must
  balance, which a regular expression cannot check) lets through but the grammar refuses is
  replaced by its permissions joined with AND.
Values that are not valid (negative cases) are left alone.
"""

import datetime
import os
import re
import uuid

import schemathesis

_PRINTABLE = re.compile(r"^[ -~]{1,255}$")


_STEP = {"minute": 60, "hour": 3600, "day": 86400}
_USAGE_PATHS = ("/api/v1/keys/{id}/usage", "/api/v1/keyspaces/{id}/keys/{keyId}/usage")


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


_QUERY_ATOM = re.compile(r"[a-z0-9_.-]+(:([a-z0-9_.-]+|\*))?$")
_QUERY_PATTERN = re.compile(
    r"^[ \t\n\f\r()]*[a-z0-9_.-]+(:([a-z0-9_.-]+|\*))?([ \t\n\f\r()]+([Aa][Nn][Dd]|[Oo][Rr])"
    r"[ \t\n\f\r()]+[a-z0-9_.-]+(:([a-z0-9_.-]+|\*))?)*[ \t\n\f\r()]*$"
)


def _query_tokens(text):
    return re.findall(r"[()]|[^ \t\n\f\r()]+", text)


def _query_ok(text):
    """Whether `text` parses as align_keys::permission_query does (its bounds included)."""
    tokens = _query_tokens(text)
    if len(text.encode()) > 1000:
        return False
    pos, atoms, depth = 0, 0, 0

    def keyword(t):
        return t is not None and t.lower() in ("and", "or")

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def primary():
        nonlocal pos, atoms, depth
        t = peek()
        if t == "(":
            pos += 1
            depth += 1
            if depth > 32 or not any_():
                return False
            depth -= 1
            if peek() != ")":
                return False
            pos += 1
            return True
        if t is None or t == ")" or keyword(t) or not _QUERY_ATOM.match(t) or len(t) > 128:
            return False
        pos += 1
        atoms += 1
        return atoms <= 100

    def any_():
        nonlocal pos
        if not primary():
            return False
        while keyword(peek()):
            pos += 1
            if not primary():
                return False
        return True

    return any_() and pos == len(tokens)


def _fix_query(body):
    query = body.get("permissions")
    if isinstance(query, str) and _QUERY_PATTERN.match(query) and not _query_ok(query):
        atoms = [t for t in _query_tokens(query) if t not in "()" and t.lower() not in ("and", "or")]
        body["permissions"] = " AND ".join(atoms[:100]) or "admin"


def _unique_limits(body):
    limits = body.get("ratelimits")
    if not isinstance(limits, list) or not all(isinstance(l, dict) for l in limits):
        return
    if len({repr(sorted(l.items())) for l in limits}) != len(limits):
        return  # identical items: the negative case uniqueItems describes
    if not all(isinstance(l.get("name"), str) for l in limits):
        return
    seen, kept = set(), []
    for l in limits:
        if l["name"] not in seen:
            seen.add(l["name"])
            kept.append(l)
    body["ratelimits"] = kept


_PERMISSION = re.compile(r"[a-z0-9_.-]+(:([a-z0-9_.-]+|\*))?$")


def _declared_grants(body):
    """Keeps the permissions of a key space key that its key space declares (fuzz-api names
    them in ALIGN_FUZZ_KEYSPACE_VOCABULARY), when every one is a well-formed name."""
    granted = body.get("permissions")
    vocabulary = os.environ.get("ALIGN_FUZZ_KEYSPACE_VOCABULARY", "").split(",")
    if not isinstance(granted, list) or not all(
        isinstance(p, str) and _PERMISSION.match(p) and p not in ("and", "or") and len(p) <= 128
        for p in granted
    ):
        return
    resources = {v.split(":")[0] for v in vocabulary if ":" in v}
    body["permissions"] = [
        p for p in granted if p in vocabulary or (p.endswith(":*") and p[:-2] in resources)
    ]


@schemathesis.hook
def before_call(ctx, case, kwargs):
    """Runs before every request of every phase (generation hooks do not run in all)."""
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key" and isinstance(headers[name], str):
            if _PRINTABLE.match(headers[name]):
                headers[name] = str(uuid.uuid4())
    if case.operation.path in _USAGE_PATHS and isinstance(case.query, dict):
        granularity = case.query.get("granularity", "hour")
        if isinstance(granularity, str) and granularity in _STEP:
            _usage_range(case.query)
    body = case.body
    if isinstance(body, dict) and case.operation.path == "/api/v1/keys/verify":
        _fix_query(body)
    if isinstance(body, dict) and case.operation.path.startswith("/api/v1/keyspaces/{id}/keys"):
        _unique_limits(body)
        _declared_grants(body)
    if isinstance(body, dict) and isinstance(body.get("expiresAt"), str):
        try:
            when = datetime.datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
        except ValueError:
            return
        now = datetime.datetime.now(datetime.timezone.utc)
        if when.tzinfo is not None and when <= now:
            future = now + datetime.timedelta(days=1)
            body["expiresAt"] = future.strftime("%Y-%m-%dT%H:%M:%S.000Z")
