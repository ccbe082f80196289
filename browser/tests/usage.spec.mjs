// DESIGN §11 in the console: a key's page shows its usage as charts and its latest requests,
// and after a rotation the old and the new key's traffic side by side, so "is traffic flowing
// on the new key?" is one look.
import { expect, test } from "@playwright/test";
import { me, uniqueName } from "../lib/api.mjs";
import { createKey, shownSecret, signIn } from "../lib/console.mjs";
import { config, screenshotPath } from "../lib/env.mjs";

/** Reloads until `figure`'s chart counts at least `n` requests (the request log commits
 * within tens of milliseconds). */
async function expectTotal(page, figure, n) {
  await expect(async () => {
    await page.reload();
    const total = Number(await page.getByTestId(figure).locator("svg").getAttribute("data-total"));
    expect(total).toBeGreaterThanOrEqual(n);
  }).toPass({ timeout: 10_000 });
}

test("a key's page charts its usage and lists its latest requests; a rotation shows old and new traffic side by side", async ({
  page,
}) => {
  const { base, admin } = config();
  await signIn(page, admin);
  const name = uniqueName("usage");
  await page.goto(`${base}/console/keys/new`);
  await createKey(page, { name, scope: "organization", environment: "live" });
  const oldToken = await shownSecret(page);
  for (let i = 0; i < 3; i++) expect((await me(base, oldToken)).status).toBe(200);

  // From the list, the key's name opens its page.
  await page.getByTestId("done").click();
  await page.locator("table[data-testid=keys-table] td[data-col=name] a", { hasText: name }).click();
  await expect(page).toHaveURL(/\/console\/keys\/[0-9a-f-]{36}(\?|$)/);
  const keyPage = page.url();
  await expect(page.getByTestId("key-name")).toHaveText(name);
  await expectTotal(page, "usage-24h", 3);
  await expectTotal(page, "usage-30d", 3);
  await expect(page.getByTestId("usage-24h").locator("svg g")).toHaveCount(25);
  await expect(page.getByTestId("usage-24h").locator("rect.succeeded").first()).toBeVisible();
  await expect(page.getByTestId("latest-requests")).toContainText("/api/v1/me");
  await page.screenshot({ path: screenshotPath("key-usage"), fullPage: true });

  // Rotate from the list; the successor's dialog links to the side-by-side view.
  await page.goto(`${base}/console/keys?env=live&q=${encodeURIComponent(name)}`);
  await page.locator("tr", { hasText: name }).getByTestId("rotate-key").click();
  await page.getByTestId("confirm-rotate").click();
  const newToken = await shownSecret(page);
  expect(newToken).not.toBe(oldToken);
  for (let i = 0; i < 2; i++) expect((await me(base, newToken)).status).toBe(200);
  expect((await me(base, oldToken)).status).toBe(200); // still within the grace period
  await page.getByTestId("watch-rotation").click();
  await expect(page.getByTestId("rotation-traffic")).toBeVisible();
  await expectTotal(page, "new-key-usage", 2);
  await expectTotal(page, "old-key-usage", 4);
  expect(page.url()).not.toBe(keyPage);
  await page.screenshot({ path: screenshotPath("rotation-traffic"), fullPage: true });
});
