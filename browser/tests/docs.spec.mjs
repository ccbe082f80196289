// /docs: Swagger UI renders the spec, Authorize takes the bootstrap key, and "Try it out" of
// GET /api/v1/me calls this same server and shows the key's JSON.
import { expect, test } from "@playwright/test";
import { config, screenshotPath } from "../lib/env.mjs";

test("docs render the operations and try-it of GET /api/v1/me succeeds with the bootstrap key", async ({ page }) => {
  const { base, bootstrapKey } = config();
  const requests = [];
  const problems = [];
  page.on("request", (r) => requests.push(r.url()));
  page.on("console", (m) => {
    if (m.type() === "error" && /Content.Security.Policy|Refused to/i.test(m.text())) problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(String(e)));

  const response = await page.goto("/docs");
  expect(response.status()).toBe(200);
  expect(response.headers()["content-security-policy"]).toContain("default-src 'self'");
  await expect(page.locator(".swagger-ui .info .title")).toContainText("Align API");
  // Every operation of the spec is shown; a few by their operationId.
  for (const op of ["getMe", "createKey", "listKeys", "health"]) {
    // Swagger UI ids an operation `operations-<tag>-<operationId>`; every operation has a tag.
    await expect(page.locator(`[id^="operations-"][id$="-${op}"]`)).toBeVisible();
  }
  expect(await page.locator(".opblock").count()).toBeGreaterThanOrEqual(25);

  // Authorize with the key as a Bearer token.
  await page.locator(".auth-wrapper .authorize").click();
  const bearer = page.locator(".modal-ux .auth-container").filter({ hasText: /bearer/i }).first();
  await bearer.locator("input").first().fill(bootstrapKey);
  await bearer.locator("button", { hasText: "Authorize" }).click();
  await expect(bearer.locator("button", { hasText: "Logout" })).toBeVisible();
  await bearer.locator("button", { hasText: "Close" }).click();
  await expect(page.locator(".modal-ux")).toHaveCount(0);

  // Try it out: GET /api/v1/me.
  const op = page.locator('[id^="operations-"][id$="-getMe"]');
  await op.locator(".opblock-summary").click();
  await op.getByRole("button", { name: "Try it out" }).click();
  const [call] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${base}/api/v1/me`),
    op.getByRole("button", { name: "Execute" }).click(),
  ]);
  expect(call.status()).toBe(200);
  expect(call.request().headers()["authorization"]).toBe(`Bearer ${bootstrapKey}`);
  const me = await call.json();
  expect(me.keyPrefix).toBe(bootstrapKey.slice(0, 12));

  const live = op.locator(".live-responses-table");
  await expect(live.locator("tr.response .response-col_status").first()).toHaveText("200");
  await expect(live).toContainText(`"keyPrefix": "${me.keyPrefix}"`);
  await expect(live).toContainText(`"keyName": "${me.keyName}"`);
  await expect(op.locator(".request-url")).toContainText(`${base}/api/v1/me`);
  await op.screenshot({ path: screenshotPath("docs-try-it-me") });

  // Everything the page loaded came from this server, with no CSP violation.
  expect(requests.filter((u) => !u.startsWith(`${base}/`) && !u.startsWith("data:"))).toEqual([]);
  expect(problems).toEqual([]);
});
