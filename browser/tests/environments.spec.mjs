// Live and sandbox are told apart: the badge, the body's class (a distinct colour band), and the
// keys each list shows.
import { expect, test } from "@playwright/test";
import { uniqueName } from "../lib/api.mjs";
import { signIn } from "../lib/console.mjs";
import { config, screenshotPath } from "../lib/env.mjs";

test("sandbox and live pages carry their own badge, body class and keys", async ({ page }) => {
  const { base, admin, bootstrapKey } = config();
  const name = uniqueName("sandbox-only");
  const minted = await fetch(`${base}/api/v1/keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${bootstrapKey}`, "content-type": "application/json" },
    body: JSON.stringify({ name, scope: "organization", environment: "sandbox" }),
  });
  expect(minted.status).toBe(201);
  const sandboxKeyId = (await minted.json()).apiKeyId;

  await signIn(page, admin);
  // Live is the default.
  await expect(page.getByTestId("env-badge")).toHaveText("LIVE");
  await expect(page.locator("body")).toHaveClass(/(^|\s)env-live(\s|$)/);
  await expect(page.locator(`tr[data-key-id="${sandboxKeyId}"]`)).toHaveCount(0);

  await page.getByTestId("env-sandbox").click();
  await expect(page).toHaveURL(/[?&]env=sandbox/);
  await expect(page.getByTestId("env-badge")).toHaveText("SANDBOX");
  await expect(page.locator("body")).toHaveClass(/(^|\s)env-sandbox(\s|$)/);
  await expect(page.locator("body")).not.toHaveClass(/(^|\s)env-live(\s|$)/);
  const row = page.locator(`tr[data-key-id="${sandboxKeyId}"]`);
  await expect(row).toBeVisible();
  await expect(row.locator("[data-col=environment]")).toContainText("sandbox");
  await page.screenshot({ path: screenshotPath("key-list-sandbox"), fullPage: true });

  // The two bands look different.
  const sandboxBand = await page.locator("body").evaluate((b) => getComputedStyle(b).backgroundColor + getComputedStyle(b).borderTopColor);
  await page.getByTestId("env-live").click();
  await expect(page).toHaveURL(/[?&]env=live/);
  await expect(page.getByTestId("env-badge")).toHaveText("LIVE");
  await expect(page.locator("body")).toHaveClass(/(^|\s)env-live(\s|$)/);
  const liveBand = await page.locator("body").evaluate((b) => getComputedStyle(b).backgroundColor + getComputedStyle(b).borderTopColor);
  const badgeColours = async () =>
    page.getByTestId("env-badge").evaluate((b) => getComputedStyle(b).backgroundColor + getComputedStyle(b).color);
  const liveBadge = await badgeColours();
  await page.getByTestId("env-sandbox").click();
  const sandboxBadge = await badgeColours();
  expect(`${sandboxBand}|${sandboxBadge}`).not.toBe(`${liveBand}|${liveBadge}`);
});
