"""The Python gateway (gateway.py) against a real `align serve`, end to end. Run by sdk/run.

With the client generated from docs/openapi.yaml on PYTHONPATH and
  ALIGN_BASE_URL         http://127.0.0.1:PORT of a running `align serve`
  ALIGN_SDK_ADMIN_KEY    its bootstrap admin key
it sets up, through the generated client: a key space, customer keys in it (invoices:read; one
with 2 credits, one with a limit of 1 request an hour, one unlimited), and an Align key holding
only keys:verify. It starts
gateway.py on a free loopback port with that Align key, then checks what the gateway answers:
a VALID key passes (200), a missing or unknown key is 401, a route needing a permission the
key lacks is 403 (and spends no credit), running out of credits is 429, a spent named limit is
429 with Retry-After, and a revoked key is 401. Exits non-zero on the first thing that is not as expected; never prints a key.
"""

from __future__ import annotations

import json
import os
import secrets
import string
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from http import HTTPStatus
from pathlib import Path
from typing import Any, NoReturn

from align_api_client import AuthenticatedClient
from align_api_client.api.keys import create_key
from align_api_client.api.keyspaces import create_keyspace, create_keyspace_key, revoke_keyspace_key
from align_api_client.models import (
    CreateKey,
    CreateKeyScope,
    CreateKeyspace,
    CreateKeyspaceKey,
    CreditsInput,
    Keyspace,
    KeyspaceKey,
    MintedKey,
    MintedKeyspaceKey,
    NamedLimit,
    Permission,
)

steps = 0


def fail(message: str) -> NoReturn:
    print(f"python gateway: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def ok(what: str) -> None:
    global steps
    steps += 1
    print(f"python gateway: ok  {what}")


def created(response: Any, model: type, what: str) -> Any:
    if response.status_code not in (HTTPStatus.OK, HTTPStatus.CREATED) or not isinstance(response.parsed, model):
        fail(f"{what}: status {int(response.status_code)}")
    ok(what)
    return response.parsed


def call(base: str, method: str, path: str, key: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One request to the gateway: status, JSON body, headers."""
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    request = urllib.request.Request(base + path, method=method, headers=headers, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.load(r), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e), dict(e.headers)


def expect(base: str, method: str, key: str | None, status: int, what: str, error: str | None = None) -> dict[str, Any]:
    got, body, headers = call(base, method, "/invoices", key)
    if got != status or (error is not None and body.get("error") != error):
        fail(f"{what}: {got} {body.get('error', '')}, expected {status} {error or ''}")
    ok(f"{what}: {got}{' ' + error if error else ''}")
    return {"body": body, "headers": headers}


def main() -> None:
    base_url = os.environ["ALIGN_BASE_URL"]
    admin = AuthenticatedClient(base_url=base_url, token=os.environ["ALIGN_SDK_ADMIN_KEY"], timeout=30.0)

    # A key space of our own, its prefix new on every run.
    prefix = "gw" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(6))
    space: Keyspace = created(
        create_keyspace.sync_detailed(
            client=admin,
            body=CreateKeyspace(name="Python gateway", prefix=prefix, permissions=["invoices:read", "invoices:write"]),
            idempotency_key=str(uuid.uuid4()),
        ),
        Keyspace,
        "POST /keyspaces",
    )
    customer: MintedKeyspaceKey = created(
        create_keyspace_key.sync_detailed(
            space.id,
            client=admin,
            body=CreateKeyspaceKey(
                name="cus_8812", owner_id="cus_8812", permissions=["invoices:read"], credits_=CreditsInput(remaining=2)
            ),
            idempotency_key=str(uuid.uuid4()),
        ),
        MintedKeyspaceKey,
        "POST /keyspaces/{id}/keys (2 credits)",
    )
    if not customer.key.startswith(prefix + "_"):
        fail("a key space key starts with its prefix")
    other: MintedKeyspaceKey = created(
        create_keyspace_key.sync_detailed(
            space.id,
            client=admin,
            body=CreateKeyspaceKey(name="cus_9000", owner_id="cus_9000", permissions=["invoices:read"]),
            idempotency_key=str(uuid.uuid4()),
        ),
        MintedKeyspaceKey,
        "POST /keyspaces/{id}/keys (no credits)",
    )
    limited: MintedKeyspaceKey = created(
        create_keyspace_key.sync_detailed(
            space.id,
            client=admin,
            body=CreateKeyspaceKey(
                name="cus_7000",
                permissions=["invoices:read"],
                ratelimits=[NamedLimit(name="requests", limit=1, duration_seconds=3600)],
            ),
            idempotency_key=str(uuid.uuid4()),
        ),
        MintedKeyspaceKey,
        "POST /keyspaces/{id}/keys (1 request an hour)",
    )
    verifier: MintedKey = created(
        create_key.sync_detailed(
            client=admin,
            body=CreateKey(name="python-gateway", scope=CreateKeyScope.ORGANIZATION, permissions=[Permission.KEYSVERIFY]),
            idempotency_key=str(uuid.uuid4()),
        ),
        MintedKey,
        "POST /keys (keys:verify only)",
    )

    here = Path(__file__).resolve().parent
    env = dict(os.environ, ALIGN_VERIFY_KEY=verifier.key)
    env.pop("ALIGN_SDK_ADMIN_KEY", None)
    gateway = subprocess.Popen(
        [sys.executable, str(here / "gateway.py"), "--listen", "127.0.0.1:0"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = gateway.stdout.readline() if gateway.stdout else ""
        if not line.startswith("listening on "):
            fail(f"the gateway did not start (exit {gateway.poll()})")
        base = line.split()[-1]
        ok(f"gateway.py listens on {base}")

        expect(base, "GET", None, 401, "no key", "missing_key")
        expect(base, "GET", prefix + "_00000000_not-a-key", 401, "an unknown key", "NOT_FOUND")
        first = expect(base, "GET", customer.key, 200, "GET /invoices with the customer's key")
        if first["body"].get("owner") != "cus_8812" or first["body"].get("creditsLeft") != 1:
            fail(f"the handler got the wrong owner or credits: {first['body']}")
        expect(base, "POST", customer.key, 403, "POST /invoices needs invoices:write", "INSUFFICIENT_PERMISSIONS")
        second = expect(base, "GET", customer.key, 200, "GET /invoices with the last credit")
        if second["body"].get("creditsLeft") != 0:
            fail("a refused request spent a credit")
        expect(base, "GET", customer.key, 429, "credits run out", "USAGE_EXCEEDED")

        expect(base, "GET", limited.key, 200, "a key with a named limit")
        refused = expect(base, "GET", limited.key, 429, "its limit spent", "RATE_LIMITED")
        if not 1 <= int(refused["headers"].get("Retry-After", "0")) <= 3600:
            fail(f"a rate-limited answer has a Retry-After within the window: {refused['headers']}")

        expect(base, "GET", other.key, 200, "another customer's key")
        revoked = revoke_keyspace_key.sync_detailed(
            space.id, other.id, client=admin, idempotency_key=str(uuid.uuid4())
        )
        if revoked.status_code != HTTPStatus.OK or not isinstance(revoked.parsed, KeyspaceKey) or not revoked.parsed.revoked_at:
            fail(f"POST …/keys/{{keyId}}/revoke: status {int(revoked.status_code)}")
        ok("POST /keyspaces/{id}/keys/{keyId}/revoke")
        expect(base, "GET", other.key, 401, "the revoked key, at once", "REVOKED")
    finally:
        gateway.terminate()
        gateway.wait(timeout=10)
    print(f"python gateway: {steps} steps passed")


if __name__ == "__main__":
    main()
