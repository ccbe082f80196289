"""A short walk through the API with the Python client generated from docs/openapi.yaml.

Run by sdk/run, which generates the client (openapi-python-client) into target/sdk/python,
starts `align serve` and sets:
  ALIGN_BASE_URL            http://127.0.0.1:PORT
  ALIGN_SDK_ADMIN_KEY       the bootstrap admin key (read from DATA_DIR/bootstrap-admin-key)
  ALIGN_SDK_WEBHOOK_TARGET  an http://127.0.0.1:PORT/... URL (the server allows private targets)
Mints a key, lists keys, calls GET /me with the new key, rotates it, revokes the successor,
creates (and deletes) a sandbox webhook endpoint, and reads the key's usage when the spec has
that operation. Exits non-zero on the first thing that is not as expected. Never prints a token.
"""

from __future__ import annotations

import importlib
import os
import sys
import uuid
from http import HTTPStatus
from typing import Any, NoReturn

from align_api_client import AuthenticatedClient
from align_api_client.api.keys import create_key, list_keys, revoke_key, rotate_key
from align_api_client.api.me import get_me
from align_api_client.api.webhooks import create_webhook_endpoint, delete_webhook_endpoint
from align_api_client.models import (
    CreateKey,
    CreateKeyScope,
    CreateWebhookEndpoint,
    Environment,
    Error,
    Key,
    Me,
    MintedKey,
    RotateKeyBody,
    WebhookEndpointWithSecret,
)
from align_api_client.types import Response

steps = 0


def fail(message: str) -> NoReturn:
    print(f"sdk python: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def expect(response: Response[Any], status: HTTPStatus, model: type, what: str) -> Any:
    """The parsed body of `response`, which must have `status` and parse as `model`."""
    global steps
    if response.status_code != status or not isinstance(response.parsed, model):
        detail = response.parsed.error.code if isinstance(response.parsed, Error) else ""
        fail(f"{what}: status {int(response.status_code)} {detail}, expected {int(status)}")
    steps += 1
    print(f"sdk python: ok  {what}")
    return response.parsed


def client_for(token: str) -> AuthenticatedClient:
    return AuthenticatedClient(
        base_url=os.environ["ALIGN_BASE_URL"],
        token=token,
        raise_on_unexpected_status=True,
        timeout=30.0,
    )


def main() -> None:
    global steps
    admin = client_for(os.environ["ALIGN_SDK_ADMIN_KEY"])
    name = f"sdk-python-{uuid.uuid4().hex[:8]}"

    minted: MintedKey = expect(
        create_key.sync_detailed(
            client=admin,
            body=CreateKey(name=name, scope=CreateKeyScope.ORGANIZATION, environment=Environment.SANDBOX),
            idempotency_key=str(uuid.uuid4()),
        ),
        HTTPStatus.CREATED,
        MintedKey,
        "POST /keys mints a sandbox key",
    )
    if minted.key_name != name or minted.environment != Environment.SANDBOX:
        fail("the minted key has another name or environment")
    if not minted.key.startswith("akt_"):
        fail("a sandbox token starts with akt_")

    # Page through the list until the new key shows up.
    found, cursor, pages = False, None, 0
    while not found:
        page = expect(
            list_keys.sync_detailed(client=admin, limit=200, **({"cursor": cursor} if cursor else {})),
            HTTPStatus.OK,
            object,
            f"GET /keys page {pages + 1}",
        )
        pages += 1
        found = any(k.api_key_id == minted.api_key_id for k in page.data)
        cursor = page.next_cursor
        if not found and not cursor:
            fail("GET /keys does not list the new key")

    me: Me = expect(get_me.sync_detailed(client=client_for(minted.key)), HTTPStatus.OK, Me, "GET /me with the new key")
    if me.api_key_id != minted.api_key_id or me.environment != Environment.SANDBOX or me.key_name != name:
        fail("GET /me answers for another key")

    successor: MintedKey = expect(
        rotate_key.sync_detailed(
            minted.api_key_id, client=admin, body=RotateKeyBody(grace_seconds=60), idempotency_key=str(uuid.uuid4())
        ),
        HTTPStatus.CREATED,
        MintedKey,
        "POST /keys/{id}/rotate",
    )
    if successor.rotated_from_key_id != minted.api_key_id or successor.key_name != name:
        fail("the successor does not name the key it replaces")
    expect(get_me.sync_detailed(client=client_for(successor.key)), HTTPStatus.OK, Me, "GET /me with the successor")
    expect(get_me.sync_detailed(client=client_for(minted.key)), HTTPStatus.OK, Me, "GET /me with the old key in its grace period")

    revoked: Key = expect(
        revoke_key.sync_detailed(successor.api_key_id, client=admin, idempotency_key=str(uuid.uuid4())),
        HTTPStatus.OK,
        Key,
        "POST /keys/{id}/revoke",
    )
    if not revoked.revoked_at:
        fail("the revoked key has no revokedAt")
    refused = expect(
        get_me.sync_detailed(client=client_for(successor.key)), HTTPStatus.UNAUTHORIZED, Error, "GET /me with the revoked key is 401"
    )
    if refused.error.code.value != "key_revoked":
        fail(f"a revoked key is refused with {refused.error.code.value}, not key_revoked")

    endpoint: WebhookEndpointWithSecret = expect(
        create_webhook_endpoint.sync_detailed(
            client=admin,
            body=CreateWebhookEndpoint(url=os.environ["ALIGN_SDK_WEBHOOK_TARGET"], environment=Environment.SANDBOX),
            idempotency_key=str(uuid.uuid4()),
        ),
        HTTPStatus.CREATED,
        WebhookEndpointWithSecret,
        "POST /webhook-endpoints (sandbox, http on loopback)",
    )
    if not isinstance(endpoint.secret, str) or not endpoint.secret.startswith("whsec_"):
        fail("the new endpoint's signing secret is not a whsec_ secret")
    response = delete_webhook_endpoint.sync_detailed(endpoint.id, client=admin)
    if response.status_code != HTTPStatus.NO_CONTENT:
        fail(f"DELETE /webhook-endpoints/{{id}}: status {int(response.status_code)}")
    steps += 1
    print("sdk python: ok  DELETE /webhook-endpoints/{id}")

    usage(admin, minted)
    print(f"sdk python: {steps} steps passed")


def usage(admin: AuthenticatedClient, minted: MintedKey) -> None:
    """GET /keys/{id}/usage (getKeyUsage), when the spec has it."""
    try:
        get_key_usage = importlib.import_module("align_api_client.api.keys.get_key_usage")
    except ModuleNotFoundError:
        print("sdk python: SKIP usage: docs/openapi.yaml has no getKeyUsage operation yet")
        return
    response = get_key_usage.sync_detailed(minted.api_key_id, client=admin)
    if response.status_code != HTTPStatus.OK or isinstance(response.parsed, Error) or response.parsed is None:
        fail(f"GET /keys/{{id}}/usage: status {int(response.status_code)}")
    buckets = response.parsed.data
    if not buckets:
        fail("GET /keys/{id}/usage has no buckets (empty ones are listed too)")
    # The usage index is refreshed off the request path: the counts may lag, the shape may not.
    total = sum(b.requests for b in buckets)
    global steps
    steps += 1
    print(f"sdk python: ok  GET /keys/{{id}}/usage ({len(buckets)} buckets, {total} requests)")


if __name__ == "__main__":
    main()
