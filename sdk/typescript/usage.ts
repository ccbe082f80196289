// GET /api/v1/keys/{id}/usage (getKeyUsage) with the generated types; compiled and run by
// sdk/run only when docs/openapi.yaml has that operation.
import { type AlignClient, expect, fail } from "./smoke.js";

export async function usage(admin: AlignClient, keyId: string): Promise<void> {
  const result = expect(
    await admin.GET("/api/v1/keys/{id}/usage", { params: { path: { id: keyId } } }),
    200,
    "GET /keys/{id}/usage",
  );
  // The usage index is refreshed off the request path: the counts may lag, the shape may not.
  if (result.data.length === 0) fail("GET /keys/{id}/usage has no buckets (empty ones are listed too)");
  const total = result.data.reduce((sum, bucket) => sum + bucket.requests, 0);
  console.log(`sdk typescript:     ${result.data.length} buckets, ${total} requests`);
}
