// The key-management guide's flow, as an admin: sign in, Settings → Developer → API Keys,
// Create Key `prod-sync` with Organisation scope, copy it from the shown-once dialog, use it,
// reload (the secret is gone), find it by prefix, revoke it, and the next call is refused.
import { expect, test } from "@playwright/test";
import { me } from "../lib/api.mjs";
import { createKey, shownSecret, signIn } from "../lib/console.mjs";
import { config, screenshotPath, TOKEN_RE } from "../lib/env.mjs";

test.use({ permissions: ["clipboard-read", "clipboard-write"] });

test("admin creates an organisation key, copies it once, uses it, revokes it; the secret never shows again", async ({
  page,
}) => {
  const { base, admin } = config();
  await signIn(page, admin);

  // The console links to the API reference this server serves.
  await expect(page.getByTestId("nav-docs")).toHaveAttribute("href", "/docs");

  // Settings → Developer → API Keys.
  await page.getByTestId("nav-keys").click();
  await expect(page).toHaveURL(/\/console\/keys(\?|$)/);
  await expect(page.getByRole("heading", { name: "API Keys" })).toBeVisible();
  await expect(page.locator("body")).toContainText("Settings → Developer → API Keys");
  await expect(page.locator("table[data-testid=keys-table]")).toBeVisible();

  await page.getByTestId("create-key").click();
  await expect(page).toHaveURL(/\/console\/keys\/new/);
  await createKey(page, { name: "prod-sync", scope: "organization", environment: "live" });
  const createdUrl = page.url();
  const keyId = createdUrl.match(/\/console\/keys\/([0-9a-f-]{36})\/created(\?[^/]*)?$/)[1];

  // The shown-once dialog.
  const dialog = page.getByTestId("key-dialog");
  await expect(dialog).toBeVisible();
  await expect(dialog.getByTestId("key-warning")).toHaveText(/Copy this key now\. It will not be shown again\./);
  const token = await shownSecret(page);
  expect(token).toMatch(new RegExp(`^${TOKEN_RE.source}$`));
  expect(token.startsWith("ako_")).toBe(true);
  await page.screenshot({ path: screenshotPath("shown-once-dialog"), fullPage: true });

  // Copy: the clipboard holds exactly the shown token.
  await dialog.getByTestId("copy-key").click();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  expect(copied).toBe(token);

  // An HTTP client uses the copied key.
  const first = await me(base, copied);
  expect(first.status).toBe(200);
  expect(first.body.keyName).toBe("prod-sync");
  expect(first.body.scope).toBe("organization");
  expect(first.body.apiKeyId).toBe(keyId);
  const prefix = first.body.keyPrefix;
  expect(token.startsWith(prefix)).toBe(true);

  // From here on, no page the browser receives may hold the token.
  const leaks = [];
  page.on("response", async (r) => {
    const type = r.headers()["content-type"] ?? "";
    if (!/text\/html|json|javascript|text\/plain/.test(type)) return;
    const body = await r.text().catch(() => "");
    if (body.includes(token) || body.includes(token.slice(13))) leaks.push(r.url());
  });
  const seen = async (label) => {
    const html = await page.content();
    expect(html.includes(token), `${label}: the token is in the page`).toBe(false);
    expect(html.includes(token.slice(13)), `${label}: the secret part is in the page`).toBe(false);
  };

  // Reload: the secret is gone for good.
  const reload = await page.reload();
  expect(reload.status()).toBeLessThan(500);
  await expect(page.getByTestId("key-gone")).toHaveText(/This key was shown once and cannot be shown again\./);
  await expect(page.getByTestId("key-secret")).toHaveCount(0);
  expect(await reload.text()).not.toContain(token);
  await seen("reload of the dialog");
  // And again, by a fresh navigation to the same URL.
  await page.goto(createdUrl);
  await expect(page.getByTestId("key-gone")).toBeVisible();
  await seen("second visit of the dialog");

  // The key list: the new key, active, organisation-scoped.
  await page.goto("/console/keys");
  const row = page.locator(`tr[data-key-id="${keyId}"]`);
  await expect(row).toBeVisible();
  await expect(row.locator("[data-col=name]")).toHaveText("prod-sync");
  await expect(row.locator("[data-col=prefix]")).toContainText(prefix);
  await expect(row.locator("[data-col=scope]")).toHaveText("organization");
  await expect(row.locator("[data-col=environment]")).toContainText("live");
  await expect(row.locator("[data-col=status]")).toHaveText("active");
  for (const header of ["Name", "Prefix", "Scope", "Project", "Environment", "Created", "Last used", "Status"]) {
    await expect(page.locator("table[data-testid=keys-table] th", { hasText: header }).first()).toBeVisible();
  }
  await seen("key list");
  await page.screenshot({ path: screenshotPath("key-list"), fullPage: true });

  // Find it by its prefix with the search box.
  await page.locator("input[name=q]").fill(prefix);
  await page.locator("input[name=q]").press("Enter");
  await expect(page).toHaveURL(/[?&]q=/);
  const rows = page.locator("table[data-testid=keys-table] tr[data-key-id]");
  await expect(rows).toHaveCount(1);
  await expect(rows.first()).toHaveAttribute("data-key-id", keyId);
  await seen("search result");

  // Revoke, with confirmation.
  await rows.first().getByTestId("revoke-key").click();
  const confirm = page.getByTestId("confirm-revoke");
  await expect(confirm).toBeVisible();
  await expect(page.locator("body")).toContainText("prod-sync");
  await expect(page.locator("body")).toContainText(prefix);
  await seen("revoke confirmation");
  await confirm.click();
  await expect(page).toHaveURL(/\/console\/keys(\?|$)/);
  await expect(page.locator(`tr[data-key-id="${keyId}"] [data-col=status]`)).toHaveText("revoked");
  await expect(page.locator(`tr[data-key-id="${keyId}"]`).getByTestId("revoke-key")).toHaveCount(0);
  await seen("key list after revoke");

  // The very next call with the key is refused as revoked.
  const after = await me(base, token);
  expect(after.status).toBe(401);
  expect(after.body.error.code).toBe("key_revoked");

  expect(leaks, "responses after the dialog that held the token").toEqual([]);
});
