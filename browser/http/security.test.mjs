// The security checks of the browser suite over plain HTTP with node's fetch (node --test), for
// machines where Chromium cannot be installed; ./run also runs them beside the browser tests.
// No JavaScript runs here, so the clipboard, the Swagger UI rendering and the look of the pages
// are not checked; the server's answers are.
import assert from "node:assert/strict";
import { test } from "node:test";

import { keysNamed, me, uniqueName } from "../lib/api.mjs";
import { config, TOKEN_RE } from "../lib/env.mjs";

const cfg = config();
const base = cfg.base;

/** A browser without a browser: a cookie jar (name → value) and manual redirects. */
class Client {
  constructor() {
    this.jar = new Map();
    this.setCookies = [];
  }
  cookieHeader() {
    return [...this.jar].map(([k, v]) => `${k}=${v}`).join("; ");
  }
  async request(method, path, { form, origin = base, headers = {} } = {}) {
    const h = { ...headers };
    if (this.jar.size) h.cookie = this.cookieHeader();
    let body;
    if (form) {
      body = new URLSearchParams(form).toString();
      h["content-type"] = "application/x-www-form-urlencoded";
      if (origin) h.origin = origin;
    }
    const r = await fetch(`${base}${path}`, { method, headers: h, body, redirect: "manual" });
    this.setCookies = r.headers.getSetCookie();
    for (const c of this.setCookies) {
      const [pair, ...attrs] = c.split(";");
      const [name, ...rest] = pair.split("=");
      const value = rest.join("=");
      const gone = value === "" || attrs.some((a) => /^\s*max-age=0\s*$/i.test(a));
      if (gone) this.jar.delete(name.trim());
      else this.jar.set(name.trim(), value);
    }
    return { status: r.status, headers: r.headers, text: await r.text() };
  }
  get(path) {
    return this.request("GET", path);
  }
  post(path, form, opts = {}) {
    return this.request("POST", path, { form, ...opts });
  }
}

/** The value of the hidden csrf input of `html` (in the form with `formId`, if given). */
function csrfIn(html, formId) {
  const part = formId ? html.slice(html.indexOf(`id="${formId}"`)) : html;
  const m = part.match(/<input[^>]*name="csrf"[^>]*>/);
  assert.ok(m, "a csrf input");
  const v = m[0].match(/value="([^"]*)"/);
  assert.ok(v, "a csrf value");
  return v[1];
}

async function signIn(user) {
  const c = new Client();
  const page = await c.get("/console/login");
  assert.equal(page.status, 200);
  const r = await c.post("/console/login", { email: user.email, password: user.password, csrf: csrfIn(page.text, "login") });
  assert.equal(r.status, 303, `sign-in of ${user.email}: ${r.status}`);
  assert.ok(c.jar.has("align_session"));
  return c;
}

function assertPageHeaders(r, what) {
  assert.match(r.headers.get("content-type") ?? "", /^text\/html; charset=utf-8/i, what);
  const csp = r.headers.get("content-security-policy") ?? "";
  assert.match(csp, /default-src 'self'/, `${what}: CSP ${csp}`);
  assert.match(csp, /frame-ancestors 'none'/, `${what}: CSP ${csp}`);
  assert.equal(r.headers.get("x-frame-options"), "DENY", what);
  // The contract said no-referrer, but then Chromium sends `Origin: null` on the console's own
  // form posts; same-origin keeps referrers home and the Origin real.
  assert.match(r.headers.get("referrer-policy") ?? "", /^(no-referrer|same-origin)$/, what);
}

test("/docs, its files and the spec are served with their types and headers", async () => {
  for (const [path, type] of [
    ["/docs", /^text\/html/],
    ["/docs/init.js", /^text\/javascript/],
    ["/docs/swagger-ui-bundle.js", /^text\/javascript/],
    ["/docs/swagger-ui.css", /^text\/css/],
    ["/docs/openapi.yaml", /^application\/yaml/],
  ]) {
    const r = await fetch(`${base}${path}`);
    assert.equal(r.status, 200, path);
    assert.match(r.headers.get("content-type"), type, path);
    const csp = r.headers.get("content-security-policy");
    assert.match(csp, /default-src 'self'/, path);
    assert.match(csp, /img-src 'self' data:/, path);
    assert.match(csp, /style-src 'self' 'unsafe-inline'/, path);
    assert.equal(r.headers.get("x-frame-options"), "DENY", path);
    await r.arrayBuffer();
  }
  const html = await (await fetch(`${base}/docs`)).text();
  assert.doesNotMatch(html, /<script>/, "no inline script");
  assert.doesNotMatch(html, /https?:\/\//, "no CDN");
});

test("console pages carry the security headers and need a session", async () => {
  const c = new Client();
  const login = await c.get("/console/login");
  assert.equal(login.status, 200);
  assertPageHeaders(login, "/console/login");
  assert.equal(login.headers.get("cache-control"), "no-store");
  const keys = await c.get("/console/keys");
  assert.equal(keys.status, 303);
  assert.match(keys.headers.get("location"), /\/console\/login/);
  const root = await c.get("/console");
  assert.equal(root.status, 303);
  assert.match(root.headers.get("location"), /\/console\/login/);
});

test("the sixth wrong password is throttled, and then so is the right one", async () => {
  const user = cfg.throttledHttp;
  const c = new Client();
  const page = await c.get("/console/login");
  const csrf = csrfIn(page.text, "login");
  for (let attempt = 1; attempt <= 5; attempt++) {
    const r = await c.post("/console/login", { email: user.email, password: "not-the-password-at-all", csrf });
    assert.equal(r.status, 401, `attempt ${attempt}`);
    assert.match(r.text, /Wrong email or password/);
  }
  const sixth = await c.post("/console/login", { email: user.email, password: "not-the-password-at-all", csrf });
  assert.equal(sixth.status, 429);
  assert.match(sixth.text, /Too many sign-in attempts/);
  assert.ok(Number(sixth.headers.get("retry-after")) > 0);
  const right = await c.post("/console/login", { email: user.email, password: user.password, csrf });
  assert.equal(right.status, 429);
  assert.ok(!c.jar.has("align_session"));
});

test("the session cookie is HttpOnly, SameSite=Strict, Path=/console, not Secure on plain http", async () => {
  const c = new Client();
  const page = await c.get("/console/login");
  const csrfCookie = c.setCookies.find((s) => s.startsWith("align_csrf="));
  assert.ok(csrfCookie, "the pre-session CSRF cookie");
  for (const a of [/HttpOnly/i, /SameSite=Strict/i, /Path=\/console(;|$)/i]) assert.match(csrfCookie, a);
  const r = await c.post("/console/login", { email: cfg.admin.email, password: cfg.admin.password, csrf: csrfIn(page.text, "login") });
  assert.equal(r.status, 303);
  const session = c.setCookies.find((s) => s.startsWith("align_session="));
  assert.ok(session, c.setCookies.join(" | "));
  assert.match(session, /;\s*HttpOnly/i);
  assert.match(session, /;\s*SameSite=Strict/i);
  assert.match(session, /;\s*Path=\/console(;|$)/i);
  assert.doesNotMatch(session, /;\s*Secure/i);
  const maxAge = session.match(/Max-Age=(\d+)/i);
  if (maxAge) assert.ok(Number(maxAge[1]) <= 12 * 3600);
});

test("a post from another origin, or without the CSRF token, is refused and makes no key", async () => {
  const c = await signIn(cfg.admin);
  const form = await c.get("/console/keys/new");
  assert.equal(form.status, 200);
  const csrf = csrfIn(form.text, "create-key");
  const name = uniqueName("http-cross-site");
  const fields = { name, scope: "project", projectId: cfg.projectId, environment: "live" };
  const foreign = await c.post("/console/keys", { ...fields, csrf }, { origin: "http://127.0.0.2:9" });
  assert.equal(foreign.status, 403);
  assert.match(foreign.text, /data-testid="error"/);
  const noToken = await c.post("/console/keys", fields);
  assert.equal(noToken.status, 403);
  const wrongToken = await c.post("/console/keys", { ...fields, csrf: `${csrf}x` });
  assert.equal(wrongToken.status, 403);
  // What a cross-site form post looks like when SameSite keeps the cookie home: no session.
  const anonymous = new Client();
  const noSession = await anonymous.post("/console/keys", { ...fields, csrf }, { origin: "http://127.0.0.2:9" });
  assert.ok([303, 403].includes(noSession.status), `${noSession.status}`);
  assert.deepEqual(await keysNamed(base, cfg.bootstrapKey, name), []);
});

test("an engineer's forged organisation key is refused; a project key is made and shown once", async () => {
  const c = await signIn(cfg.engineer);
  const form = await c.get("/console/keys/new");
  assert.equal(form.status, 200);
  assert.doesNotMatch(form.text, /<option[^>]*value="organization"/);
  const csrf = csrfIn(form.text, "create-key");
  const forgedName = uniqueName("http-forged-org");
  const forged = await c.post("/console/keys", {
    csrf,
    name: forgedName,
    scope: "organization",
    projectId: cfg.projectId,
    environment: "live",
  });
  assert.equal(forged.status, 403);
  assert.deepEqual(await keysNamed(base, cfg.bootstrapKey, forgedName), []);

  const name = uniqueName("http-ci-read");
  const made = await c.post("/console/keys", { csrf, name, scope: "project", projectId: cfg.projectId, environment: "live" });
  assert.equal(made.status, 303);
  const created = made.headers.get("location");
  assert.match(created, /\/console\/keys\/[0-9a-f-]{36}\/created(\?[^/]*)?$/);
  const createdPath = (({ pathname, search }) => pathname + search)(new URL(created, base));
  const once = await c.get(createdPath);
  assert.equal(once.status, 200);
  assertPageHeaders(once, "shown-once page");
  assert.equal(once.headers.get("cache-control"), "no-store");
  const token = once.text.match(TOKEN_RE)?.[0];
  assert.ok(token, "the token on the shown-once page");
  assert.match(once.text, /Copy this key now\. It will not be shown again\./);
  const used = await me(base, token);
  assert.equal(used.status, 200);
  assert.equal(used.body.keyName, name);
  const again = await c.get(createdPath);
  assert.match(again.text, /This key was shown once and cannot be shown again\./);
  assert.ok(!again.text.includes(token));
  assert.ok(!again.text.includes(token.slice(13)));
  const list = await c.get("/console/keys");
  assert.ok(!list.text.includes(token.slice(13)));
});

test("sign-out ends the session on the server", async () => {
  const c = await signIn(cfg.admin);
  const stolen = c.jar.get("align_session");
  const page = await c.get("/console/keys");
  assert.equal(page.status, 200);
  const out = await c.post("/console/logout", { csrf: csrfIn(page.text) });
  assert.equal(out.status, 303);
  const replay = new Client();
  replay.jar.set("align_session", stolen);
  const after = await replay.get("/console/keys");
  assert.equal(after.status, 303);
  assert.match(after.headers.get("location"), /\/console\/login/);
});
