// DESIGN §12 in the console: an admin makes a key space, mints a key for a customer (the token
// shown once, in no other page), verifies it from an HTTP client, finds it by owner, watches
// its verifications on the key's page and revokes it there; the next verification answers
// REVOKED. An engineer does not reach key spaces (organisation-level objects).
import { expect, test } from "@playwright/test";
import { uniqueName, verifierKey, verify } from "../lib/api.mjs";
import { shownSecret, signIn } from "../lib/console.mjs";
import { config, screenshotPath } from "../lib/env.mjs";

/** A key space prefix no other run of this server used: 2–8 lowercase letters. */
function uniquePrefix() {
  const letters = "abcdefghijklmnopqrstuvwxyz";
  let p = "ks";
  for (let i = 0; i < 6; i++) p += letters[Math.floor(Math.random() * letters.length)];
  return p;
}

test("admin makes a key space, mints a key shown once, sees its verifications and revokes it", async ({ page }) => {
  const { base, admin, bootstrapKey } = config();
  await signIn(page, admin);

  await page.getByTestId("nav-keyspaces").click();
  await expect(page).toHaveURL(/\/console\/keyspaces(\?|$)/);
  await expect(page.getByRole("heading", { name: "Key spaces", exact: true })).toBeVisible();

  const prefix = uniquePrefix();
  const spaceName = uniqueName("Acme API");
  const create = page.locator("form#create-keyspace");
  await create.locator("input[name=name]").fill(spaceName);
  await create.locator("input[name=prefix]").fill(prefix);
  await create.locator("input[name=permissions]").fill("invoices:read, invoices:write admin");
  await page.getByTestId("create-keyspace-submit").click();
  await expect(page).toHaveURL(/\/console\/keyspaces\/[0-9a-f-]{36}(\?|$)/);
  const spaceUrl = page.url();
  await expect(page.getByTestId("keyspace-name")).toHaveText(spaceName);
  await expect(page.getByTestId("keyspace-prefix")).toHaveText(`${prefix}_`);

  // Mint a key for one customer: a permission, credits, a named limit.
  const owner = uniqueName("cus");
  const keyName = uniqueName("production");
  const mint = page.locator("form#mint-key");
  await mint.locator("input[name=name]").fill(keyName);
  await mint.locator("input[name=ownerId]").fill(owner);
  await mint.locator("input[name=permissions][value='invoices:read']").check();
  await mint.locator("input[name=creditsRemaining]").fill("5");
  await mint.locator("textarea[name=ratelimits]").fill("requests 100 60");
  await page.getByTestId("mint-key-submit").click();
  await expect(page).toHaveURL(/\/console\/keyspaces\/[0-9a-f-]{36}\/keys\/[0-9a-f-]{36}\/created(\?[^/]*)?$/);
  const createdUrl = page.url();
  await expect(page.getByTestId("key-warning")).toHaveText(/Copy this key now\. It will not be shown again\./);
  const token = await shownSecret(page);
  expect(token.startsWith(`${prefix}_`)).toBe(true);
  expect(createdUrl).not.toContain(token);
  await page.screenshot({ path: screenshotPath("keyspace-key-shown-once"), fullPage: true });

  // From here on, no response the browser receives may hold the token.
  const leaks = [];
  page.on("response", async (r) => {
    const body = await r.text().catch(() => "");
    if (body.includes(token)) leaks.push(r.url());
  });
  await page.reload();
  await expect(page.getByTestId("key-gone")).toHaveText(/This key was shown once and cannot be shown again\./);
  await expect(page.getByTestId("key-secret")).toHaveCount(0);

  // An HTTP client verifies it.
  const verifier = await verifierKey(base, bootstrapKey);
  const valid = await verify(base, verifier, { key: token, permissions: "invoices:read" });
  expect(valid.code).toBe("VALID");
  expect(valid.ownerId).toBe(owner);
  expect(valid.credits.remaining).toBe(4);
  expect((await verify(base, verifier, { key: token, permissions: "admin" })).code).toBe("INSUFFICIENT_PERMISSIONS");

  // The key space's page lists it; the owner filter finds it alone.
  await page.getByTestId("done").click();
  await expect(page).toHaveURL(spaceUrl);
  await page.locator("input[name=ownerId]").first().fill(owner);
  await page.getByTestId("filter-owner").click();
  await expect(page).toHaveURL(/[?&]ownerId=/);
  const rows = page.locator("table[data-testid=keyspace-keys-table] tr[data-key-id]");
  await expect(rows).toHaveCount(1);
  await expect(rows.first().locator("[data-col=owner]")).toHaveText(owner);
  await expect(rows.first().locator("[data-col=status]")).toHaveText("active");
  await expect(rows.first().locator("[data-col=credits]")).toHaveText("4");
  await expect(rows.first().locator("[data-col=limits]")).toHaveText("requests: 100 per 60 s");
  await page.screenshot({ path: screenshotPath("keyspace-keys"), fullPage: true });

  // The key's page charts both verifications and lists them.
  await rows.first().locator("[data-col=name] a").click();
  await expect(page.getByTestId("key-name")).toHaveText(keyName);
  await expect(async () => {
    await page.reload();
    const total = Number(await page.getByTestId("usage-24h").locator("svg").getAttribute("data-total"));
    expect(total).toBeGreaterThanOrEqual(2);
  }).toPass({ timeout: 10_000 });
  await expect(page.getByTestId("usage-24h").locator("rect.succeeded").first()).toBeVisible();
  await expect(page.getByTestId("latest-verifications")).toContainText("VALID");
  await expect(page.getByTestId("latest-verifications")).toContainText("INSUFFICIENT_PERMISSIONS");
  await page.screenshot({ path: screenshotPath("keyspace-key-usage"), fullPage: true });

  // Revoke, after the confirmation; the next verification is refused.
  page.once("dialog", (d) => d.accept());
  await page.getByTestId("revoke-key").click();
  await expect(page.getByTestId("key-status")).toHaveText("revoked");
  await expect(page.getByTestId("revoke-key")).toHaveCount(0);
  expect((await verify(base, verifier, { key: token })).code).toBe("REVOKED");

  expect(leaks, "responses after the dialog that held the token").toEqual([]);
});

test("an engineer is not offered key spaces and cannot reach them", async ({ page }) => {
  const { engineer } = config();
  await signIn(page, engineer);
  await expect(page.getByTestId("nav-keyspaces")).toHaveCount(0);
  const r = await page.goto("/console/keyspaces");
  expect(r.status()).toBe(404);
});
