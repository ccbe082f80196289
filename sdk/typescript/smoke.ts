// A short walk through the API with the TypeScript client generated from docs/openapi.yaml:
// types by openapi-typescript (generated/align-api.d.ts), requests by openapi-fetch.
//
// Run by sdk/run, which generates the types, type-checks and compiles this file (tsc, strict)
// and runs it against `align serve` with ALIGN_BASE_URL, ALIGN_SDK_ADMIN_KEY and
// ALIGN_SDK_WEBHOOK_TARGET set. Mints a key, lists keys, calls GET /me with the new key, rotates
// it, revokes the successor, creates (and deletes) a sandbox webhook endpoint, and reads the
// key's usage when the spec has that operation (usage.ts, compiled only then). Exits
// non-zero on the first thing that is not as expected. Never prints a token.
import { randomUUID } from "node:crypto";
import createClient from "openapi-fetch";
import type { paths } from "./generated/align-api.js";

export type AlignClient = ReturnType<typeof createClient<paths>>;

const baseUrl = env("ALIGN_BASE_URL");
let steps = 0;

function env(name: string): string {
  const value = process.env[name];
  return value ? value : fail(`${name} is not set`);
}

export function fail(message: string): never {
  console.error(`sdk typescript: FAILED: ${message}`);
  process.exit(1);
}

export function ok(what: string): void {
  steps += 1;
  console.log(`sdk typescript: ok  ${what}`);
}

/** The body of a call that must have answered `status`. */
export function expect<T>(
  result: { data?: T; error?: unknown; response: Response },
  status: number,
  what: string,
): T {
  if (result.response.status !== status || result.data === undefined) {
    const code = (result.error as { error?: { code?: string } } | undefined)?.error?.code ?? "";
    fail(`${what}: status ${result.response.status} ${code}, expected ${status}`);
  }
  ok(what);
  return result.data;
}

export function clientFor(token: string): AlignClient {
  return createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });
}

async function main(): Promise<void> {
  const admin = clientFor(env("ALIGN_SDK_ADMIN_KEY"));
  const name = `sdk-typescript-${randomUUID().slice(0, 8)}`;

  const minted = expect(
    await admin.POST("/api/v1/keys", {
      params: { header: { "Idempotency-Key": randomUUID() } },
      body: { name, scope: "organization", environment: "sandbox" },
    }),
    201,
    "POST /keys mints a sandbox key",
  );
  if (minted.keyName !== name || minted.environment !== "sandbox") fail("the minted key has another name or environment");
  if (!minted.key.startsWith("akt_")) fail("a sandbox token starts with akt_");

  // Page through the list until the new key shows up.
  let cursor: string | undefined;
  for (let page = 1; ; page++) {
    const list = expect(
      await admin.GET("/api/v1/keys", { params: { query: { limit: 200, ...(cursor ? { cursor } : {}) } } }),
      200,
      `GET /keys page ${page}`,
    );
    if (list.data.some((k) => k.apiKeyId === minted.apiKeyId)) break;
    if (!list.nextCursor) fail("GET /keys does not list the new key");
    cursor = list.nextCursor;
  }

  const me = expect(await clientFor(minted.key).GET("/api/v1/me"), 200, "GET /me with the new key");
  if (me.apiKeyId !== minted.apiKeyId || me.environment !== "sandbox" || me.keyName !== name) {
    fail("GET /me answers for another key");
  }

  const successor = expect(
    await admin.POST("/api/v1/keys/{id}/rotate", {
      params: { path: { id: minted.apiKeyId }, header: { "Idempotency-Key": randomUUID() } },
      body: { graceSeconds: 60 },
    }),
    201,
    "POST /keys/{id}/rotate",
  );
  if (successor.rotatedFromKeyId !== minted.apiKeyId || successor.keyName !== name) {
    fail("the successor does not name the key it replaces");
  }
  expect(await clientFor(successor.key).GET("/api/v1/me"), 200, "GET /me with the successor");
  expect(await clientFor(minted.key).GET("/api/v1/me"), 200, "GET /me with the old key in its grace period");

  const revoked = expect(
    await admin.POST("/api/v1/keys/{id}/revoke", {
      params: { path: { id: successor.apiKeyId }, header: { "Idempotency-Key": randomUUID() } },
    }),
    200,
    "POST /keys/{id}/revoke",
  );
  if (!revoked.revokedAt) fail("the revoked key has no revokedAt");
  const refused = await clientFor(successor.key).GET("/api/v1/me");
  if (refused.response.status !== 401 || refused.error?.error.code !== "key_revoked") {
    fail(`GET /me with the revoked key: status ${refused.response.status}, expected 401 key_revoked`);
  }
  ok("GET /me with the revoked key is 401 key_revoked");

  const endpoint = expect(
    await admin.POST("/api/v1/webhook-endpoints", {
      params: { header: { "Idempotency-Key": randomUUID() } },
      body: { url: env("ALIGN_SDK_WEBHOOK_TARGET"), environment: "sandbox" },
    }),
    201,
    "POST /webhook-endpoints (sandbox, http on loopback)",
  );
  if (!endpoint.secret?.startsWith("whsec_")) fail("the new endpoint's signing secret is not a whsec_ secret");
  const deleted = await admin.DELETE("/api/v1/webhook-endpoints/{id}", { params: { path: { id: endpoint.id } } });
  if (deleted.response.status !== 204) fail(`DELETE /webhook-endpoints/{id}: status ${deleted.response.status}`);
  ok("DELETE /webhook-endpoints/{id}");

  if (process.env.ALIGN_SDK_USAGE === "1") {
    // A computed specifier: tsc compiles usage.ts only when the spec has getKeyUsage.
    const usageModule = "./usage.js";
    const { usage } = (await import(usageModule)) as {
      usage: (admin: AlignClient, keyId: string) => Promise<void>;
    };
    await usage(admin, minted.apiKeyId);
  } else {
    console.log("sdk typescript: SKIP usage: docs/openapi.yaml has no getKeyUsage operation yet");
  }
  console.log(`sdk typescript: ${steps} steps passed`);
}

main().catch((error: unknown) => fail(error instanceof Error ? (error.stack ?? error.message) : String(error)));
