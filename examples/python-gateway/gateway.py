"""Your own API, guarded by Align key spaces: a verification middleware in Python.

Each request to this tiny API carries a key your customer got from you (minted in an Align key
space: `acme_9311c954_…`) as `Authorization: Bearer <key>`. Before a handler runs, the
middleware asks Align whether the key may do what the route needs, through the client
generated from docs/openapi.yaml (openapi-python-client; `POST /api/v1/keys/verify`,
operationId `verifyKey`), spending the route's cost of the key's credits and one of each of
its named limits, and answers by the verification's `code`:

    VALID                                         -> the handler runs (200)
    NOT_FOUND, REVOKED, EXPIRED, SUSPENDED        -> 401 (and no key: 401 without asking)
    INSUFFICIENT_PERMISSIONS                      -> 403
    RATE_LIMITED, USAGE_EXCEEDED                  -> 429 (Retry-After for a rate limit)
    Align unreachable or refusing the call        -> 503 (fail closed)

Standard library only besides the generated client (httpx, attrs). Run it with the generated
client on PYTHONPATH:

    ALIGN_BASE_URL=http://127.0.0.1:8080 ALIGN_VERIFY_KEY=ako_… \\
        PYTHONPATH=target/sdk/python python3 examples/python-gateway/gateway.py --listen 127.0.0.1:8081

ALIGN_VERIFY_KEY is an Align key of yours holding `keys:verify` (and nothing else it needs):
it is read from the environment, never from the command line, and never logged; neither is a
customer's key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from align_api_client import AuthenticatedClient
from align_api_client.api.keyspaces import verify_key
from align_api_client.models import Verification, VerifyCode, VerifyKey, VerifyKeyCreditsType0

# What each code means for the request (a table, so a new code is one line).
STATUS_OF = {
    VerifyCode.VALID: HTTPStatus.OK,
    VerifyCode.NOT_FOUND: HTTPStatus.UNAUTHORIZED,
    VerifyCode.REVOKED: HTTPStatus.UNAUTHORIZED,
    VerifyCode.EXPIRED: HTTPStatus.UNAUTHORIZED,
    VerifyCode.SUSPENDED: HTTPStatus.UNAUTHORIZED,
    VerifyCode.INSUFFICIENT_PERMISSIONS: HTTPStatus.FORBIDDEN,
    VerifyCode.RATE_LIMITED: HTTPStatus.TOO_MANY_REQUESTS,
    VerifyCode.USAGE_EXCEEDED: HTTPStatus.TOO_MANY_REQUESTS,
}


@dataclass
class Decision:
    """What the middleware decided about one request."""

    status: HTTPStatus
    code: str
    owner_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    credits_left: int | None = None
    retry_after: int | None = None


class AlignVerifier:
    """Verifies customer keys with Align through the generated client."""

    def __init__(self, base_url: str, verify_key_token: str, timeout: float = 5.0) -> None:
        self.client = AuthenticatedClient(base_url=base_url, token=verify_key_token, timeout=timeout)

    def check(self, authorization: str | None, permissions: str | None, cost: int = 1) -> Decision:
        """Whether the request's `Authorization` header holds a key allowed `permissions`
        (a permission query), spending `cost` credits when it is."""
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return Decision(HTTPStatus.UNAUTHORIZED, "missing_key")
        body = VerifyKey(key=presented.strip(), permissions=permissions, credits_=VerifyKeyCreditsType0(cost=cost))
        try:
            response = verify_key.sync_detailed(client=self.client, body=body)
        except Exception as e:  # the network, a timeout: fail closed, say so without the key
            print(f"gateway: Align did not answer: {type(e).__name__}", file=sys.stderr)
            return Decision(HTTPStatus.SERVICE_UNAVAILABLE, "verification_unavailable")
        v = response.parsed
        if response.status_code != HTTPStatus.OK or not isinstance(v, Verification):
            # Align refused the call itself (our verify key, a bad query, Align's own limit).
            print(f"gateway: Align answered {int(response.status_code)} to a verification", file=sys.stderr)
            return Decision(HTTPStatus.SERVICE_UNAVAILABLE, "verification_unavailable")
        decision = Decision(STATUS_OF.get(v.code, HTTPStatus.UNAUTHORIZED), str(v.code))
        decision.owner_id = v.owner_id
        decision.meta = v.meta.to_dict() if v.meta is not None else {}
        decision.credits_left = v.credits_.remaining if v.credits_ is not None else None
        if v.code == VerifyCode.RATE_LIMITED:
            spent = [l.reset for l in v.ratelimits if l.remaining == 0]
            decision.retry_after = max(1, min(spent, default=1))
        return decision


def require_key(permissions: str | None, cost: int = 1) -> Callable:
    """A handler decorator: the handler runs only for a VALID key, and gets the decision."""

    def wrap(handler: Callable[[Handler, Decision], None]) -> Callable[[Handler], None]:
        def guarded(self: Handler) -> None:
            decision = self.server.verifier.check(self.headers.get("Authorization"), permissions, cost)
            if decision.status != HTTPStatus.OK:
                headers = {}
                if decision.status == HTTPStatus.UNAUTHORIZED:
                    headers["WWW-Authenticate"] = "Bearer"
                if decision.retry_after is not None:
                    headers["Retry-After"] = str(decision.retry_after)
                self.reply(decision.status, {"error": decision.code}, headers)
                return
            handler(self, decision)

        return guarded

    return wrap


class Handler(BaseHTTPRequestHandler):
    """The API: each route names the permissions it needs and what a call costs."""

    server: Gateway

    def reply(self, status: HTTPStatus, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    @require_key("invoices:read", cost=1)
    def list_invoices(self, decision: Decision) -> None:
        self.reply(HTTPStatus.OK, {"owner": decision.owner_id, "invoices": [], "creditsLeft": decision.credits_left})

    @require_key("invoices:write AND (invoices:read OR admin)", cost=5)
    def create_invoice(self, decision: Decision) -> None:
        self.reply(HTTPStatus.CREATED, {"owner": decision.owner_id, "invoice": {"id": "inv_1"}})

    ROUTES = {("GET", "/invoices"): list_invoices, ("POST", "/invoices"): create_invoice}

    def route(self, method: str) -> None:
        handler = self.ROUTES.get((method, self.path.split("?", 1)[0]))
        if handler is None:
            self.reply(HTTPStatus.NOT_FOUND, {"error": "not_found"})
        else:
            handler(self)

    def do_GET(self) -> None:  # noqa: N802 (the standard library's names)
        self.route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self.route("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # The request line only (method, path, status): never a header, so never a key.
        print(f"gateway: {self.command} {self.path.split('?', 1)[0]} {args[1] if len(args) > 1 else ''}", file=sys.stderr)


class Gateway(ThreadingHTTPServer):
    """The HTTP server, holding the verifier its handlers use."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], verifier: AlignVerifier) -> None:
        super().__init__(address, Handler)
        self.verifier = verifier


def main() -> None:
    parser = argparse.ArgumentParser(description="A demo API whose routes are guarded by Align key spaces.")
    parser.add_argument("--listen", default="127.0.0.1:8081", help="HOST:PORT (port 0: any free port)")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    verifier = AlignVerifier(os.environ["ALIGN_BASE_URL"], os.environ["ALIGN_VERIFY_KEY"])
    server = Gateway((host, int(port)), verifier)
    # The one line on stdout: where it listens (a port 0 was given a real one).
    print(f"listening on http://{host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
