// Console security, in the browser: sign-in throttling, the session cookie's attributes,
// cross-site form posts, sign-out.
import { createServer } from "node:http";

import { expect, test } from "@playwright/test";
import { keysNamed, uniqueName } from "../lib/api.mjs";
import { csrfOf, fillLogin, sessionCookie, signIn } from "../lib/console.mjs";
import { config } from "../lib/env.mjs";

test("the sixth wrong password is throttled, and then so is the right one", async ({ page }) => {
  const { throttled } = config();
  const wrong = { email: throttled.email, password: "not-the-password-at-all" };
  await page.goto("/console/login");
  for (let attempt = 1; attempt <= 5; attempt++) {
    const r = await fillLogin(page, wrong);
    expect(r.status(), `attempt ${attempt}`).toBe(401);
    await expect(page.getByTestId("error")).toContainText("Wrong email or password");
  }
  const sixth = await fillLogin(page, wrong);
  expect(sixth.status()).toBe(429);
  expect(Number(sixth.headers()["retry-after"])).toBeGreaterThan(0);
  await expect(page.getByTestId("error")).toContainText("Too many sign-in attempts");

  const right = await fillLogin(page, throttled);
  expect(right.status()).toBe(429);
  await expect(page.getByTestId("error")).toContainText("Too many sign-in attempts");
  expect(await sessionCookie(page.context())).toBeUndefined();
  await page.goto("/console/keys");
  await expect(page).toHaveURL(/\/console\/login/);
});

test("the session cookie is HttpOnly, SameSite=Strict, Path=/console, not Secure on plain http, at most 12 h", async ({
  page,
}) => {
  const { admin } = config();
  const loginPage = await page.goto("/console/login");
  // headers() leaves out cookie headers; headersArray() has every Set-Cookie line.
  const preSession =
    (await loginPage.headersArray()).find((h) => h.name.toLowerCase() === "set-cookie" && h.value.startsWith("align_csrf="))
      ?.value ?? "";
  expect(preSession).toMatch(/align_csrf=/);
  for (const attribute of [/HttpOnly/i, /SameSite=Strict/i, /Path=\/console(;|$)/i]) {
    expect(preSession).toMatch(attribute);
  }
  await expect(page.locator("form#login input[name=csrf]")).toHaveCount(1);

  const response = await fillLogin(page, admin);
  expect(response.status()).toBe(303);
  const setCookies = (await response.headersArray())
    .filter((h) => h.name.toLowerCase() === "set-cookie")
    .map((h) => h.value);
  const session = setCookies.find((c) => c.startsWith("align_session="));
  expect(session, `Set-Cookie: ${setCookies.join(" | ")}`).toBeTruthy();
  expect(session).toMatch(/;\s*HttpOnly/i);
  expect(session).toMatch(/;\s*SameSite=Strict/i);
  expect(session).toMatch(/;\s*Path=\/console(;|$)/i);
  expect(session).not.toMatch(/;\s*Secure/i);
  const maxAge = session.match(/Max-Age=(\d+)/i);
  if (maxAge) expect(Number(maxAge[1])).toBeLessThanOrEqual(12 * 3600);
  const expires = session.match(/Expires=([^;]+)/i);
  if (expires) expect(Date.parse(expires[1]) - Date.now()).toBeLessThanOrEqual(12 * 3600 * 1000 + 60_000);

  const cookie = await sessionCookie(page.context());
  expect(cookie.httpOnly).toBe(true);
  expect(cookie.sameSite).toBe("Strict");
  expect(cookie.path).toBe("/console");
  expect(cookie.secure).toBe(false);
  // Scripts cannot read it, and no page shows it.
  expect(await page.evaluate(() => document.cookie)).not.toContain("align_session");
  expect(await page.content()).not.toContain(cookie.value);
});

test("a cross-site form post is refused and makes no key", async ({ page }) => {
  const { base, admin, bootstrapKey, projectId } = config();
  await signIn(page, admin);
  const csrf = await csrfOf(page);
  const name = uniqueName("cross-site");

  // An attacker's page on another origin (another loopback address) that posts a form to the
  // console as soon as it loads.
  const evil = createServer((_, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(`<!doctype html><form id="f" method="POST" action="${base}/console/keys">
      <input name="name" value="${name}"><input name="scope" value="organization">
      <input name="projectId" value="${projectId}"><input name="environment" value="live">
      <input name="csrf" value="guessed"></form>
      <script>document.getElementById("f").submit()</script>`);
  });
  await new Promise((resolve) => evil.listen(0, "127.0.0.2", resolve));
  const evilOrigin = `http://127.0.0.2:${evil.address().port}`;
  try {
    const [post] = await Promise.all([
      page.waitForResponse((r) => r.url() === `${base}/console/keys` && r.request().method() === "POST"),
      page.goto(`${evilOrigin}/`),
    ]);
    expect(post.request().headers()["origin"]).toBe(evilOrigin);
    expect([303, 403]).toContain(post.status());
    if (post.status() === 303) expect(post.headers()["location"]).toMatch(/\/console\/login/);
    await page.waitForLoadState("domcontentloaded");
    await expect(page.getByTestId("key-secret")).toHaveCount(0);
    expect(page.url()).not.toMatch(/\/created(\?|$)/);
  } finally {
    await new Promise((resolve) => evil.close(resolve));
  }

  // Even with the session cookie and the real CSRF token, a foreign Origin is refused...
  const foreign = await page.request.post("/console/keys", {
    form: { csrf, name, scope: "project", projectId, environment: "live" },
    headers: { origin: evilOrigin },
    maxRedirects: 0,
  });
  expect(foreign.status()).toBe(403);
  // ...and so is a same-origin post with a wrong CSRF token.
  const badToken = await page.request.post("/console/keys", {
    form: { csrf: `${csrf}x`, name, scope: "project", projectId, environment: "live" },
    headers: { origin: base },
    maxRedirects: 0,
  });
  expect(badToken.status()).toBe(403);
  expect(await keysNamed(base, bootstrapKey, name)).toEqual([]);
  // The session itself is still good.
  await page.goto("/console/keys");
  await expect(page.getByTestId("whoami")).toContainText(admin.email);
});

test("sign-out ends the session on the server, not only in the browser", async ({ page, browser }) => {
  const { base, admin } = config();
  await signIn(page, admin);
  const cookie = await sessionCookie(page.context());
  expect(cookie).toBeTruthy();

  await page.getByTestId("sign-out").click();
  await expect(page).toHaveURL(/\/console\/login/);
  await page.goto("/console/keys");
  await expect(page).toHaveURL(/\/console\/login/);

  // The old cookie, replayed from another browser context, opens nothing.
  const other = await browser.newContext({ baseURL: base });
  try {
    await other.addCookies([{ ...cookie, expires: -1 }]);
    const replay = await other.newPage();
    await replay.goto("/console/keys");
    await expect(replay).toHaveURL(/\/console\/login/);
    const direct = await other.request.get("/console/keys", { maxRedirects: 0 });
    expect(direct.status()).toBe(303);
    expect(direct.headers()["location"]).toMatch(/\/console\/login/);
  } finally {
    await other.close();
  }
});
