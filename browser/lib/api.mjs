// The HTTP API, called with node's fetch: what a person does with a key they copied.

/** GET /api/v1/me with `token`: { status, body }. */
export async function me(base, token) {
  const r = await fetch(`${base}/api/v1/me`, { headers: { authorization: `Bearer ${token}` } });
  return { status: r.status, body: await r.json().catch(() => null) };
}

/** Every key the bootstrap (admin, organisation) key can see, all pages. */
export async function allKeys(base, adminKey) {
  const out = [];
  let cursor = null;
  for (let page = 0; page < 100; page++) {
    const q = new URLSearchParams({ limit: "100" });
    if (cursor) q.set("cursor", cursor);
    const r = await fetch(`${base}/api/v1/keys?${q}`, { headers: { authorization: `Bearer ${adminKey}` } });
    if (r.status !== 200) throw new Error(`GET /api/v1/keys: ${r.status} ${await r.text()}`);
    const body = await r.json();
    out.push(...body.data);
    cursor = body.nextCursor;
    if (!cursor) return out;
  }
  throw new Error("more than 100 pages of keys");
}

/** The keys named `name`. */
export async function keysNamed(base, adminKey, name) {
  return (await allKeys(base, adminKey)).filter((k) => k.keyName === name);
}

/** A name no other test or run uses. */
export function uniqueName(stem) {
  return `${stem}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
}

/** An organisation key of the bootstrap key's that may only verify key space keys. */
export async function verifierKey(base, adminKey) {
  const r = await fetch(`${base}/api/v1/keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${adminKey}`, "content-type": "application/json" },
    body: JSON.stringify({ name: uniqueName("verifier"), scope: "organization", permissions: ["keys:verify"] }),
  });
  const body = await r.json();
  if (r.status !== 201) throw new Error(`POST /api/v1/keys: ${r.status} ${JSON.stringify(body)}`);
  return body.key;
}

/** POST /api/v1/keys/verify with `verifier` (DESIGN §12): the answer's body. */
export async function verify(base, verifier, body) {
  const r = await fetch(`${base}/api/v1/keys/verify`, {
    method: "POST",
    headers: { authorization: `Bearer ${verifier}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (r.status !== 200) throw new Error(`POST /api/v1/keys/verify: ${r.status} ${await r.text()}`);
  return r.json();
}
