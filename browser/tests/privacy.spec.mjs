// The privacy pages (issue 23): a user corrects their name and e-mail on their profile and
// downloads everything Align holds about them as a file; an admin's Users page changes a
// role and deletes a user, whose session ends and whose keys stop working.
import { readFile } from "node:fs/promises";
import { expect, test } from "@playwright/test";
import { me, uniqueName } from "../lib/api.mjs";
import { createKey, shownSecret, signIn } from "../lib/console.mjs";
import { config } from "../lib/env.mjs";

test("a user corrects their profile and downloads their data", async ({ page }) => {
  const { profile } = config();
  await signIn(page, profile);
  await page.getByTestId("nav-profile").click();
  await expect(page).toHaveURL(/\/console\/profile$/);
  await expect(page.getByTestId("profile-email")).toHaveValue(profile.email);
  await expect(page.getByTestId("profile-role")).toHaveText("viewer");
  // Not an admin: no Users page in the navigation, and the page itself is refused.
  await expect(page.getByTestId("nav-users")).toHaveCount(0);
  expect((await page.request.get("/console/users")).status()).toBe(403);

  const name = uniqueName("Pat Profile");
  await page.getByTestId("profile-name").fill(name);
  await page.getByTestId("profile-save").click();
  await expect(page.getByTestId("saved")).toBeVisible();
  await expect(page.getByTestId("profile-name")).toHaveValue(name);

  // A malformed e-mail is refused with the reason, and nothing changes.
  await page.getByTestId("profile-email").fill("not-an-address");
  await page.getByTestId("profile-email").evaluate((el) => el.setAttribute("type", "text"));
  await page.getByTestId("profile-save").click();
  await expect(page.getByTestId("error")).toContainText("e-mail");

  await page.goto("/console/profile");
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByTestId("export-data").click(),
  ]);
  expect(download.suggestedFilename()).toBe("align-my-data.jsonl");
  const lines = (await readFile(await download.path(), "utf8"))
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  expect(lines[0].kind).toBe("user");
  expect(lines[0].email).toBe(profile.email);
  expect(lines[0].name).toBe(name);
  // The sign-in and the correction are in it, as audit records about the user.
  const actions = lines.filter((l) => l.kind === "audit").map((l) => l.action);
  expect(actions).toContain("user.updated");
});

test("an admin changes a role and deletes a user on the Users page", async ({ browser, page }) => {
  const { admin, doomed, base, projectId } = config();
  // The doomed user signs in (a session) and makes a key.
  const theirs = await browser.newContext();
  const theirPage = await theirs.newPage();
  await signIn(theirPage, doomed);
  await theirPage.getByTestId("create-key").click();
  await createKey(theirPage, { name: uniqueName("doomed"), scope: "project", projectId });
  const token = await shownSecret(theirPage);
  expect((await me(base, token)).status).toBe(200);

  await signIn(page, admin);
  await page.getByTestId("nav-users").click();
  await expect(page).toHaveURL(/\/console\/users$/);
  const table = page.getByTestId("users-table");
  await expect(table).toContainText(admin.email);
  const row = table.locator("tr", { hasText: doomed.email });
  await expect(row).toHaveCount(1);

  // Role: engineer → viewer.
  await row.getByTestId("role-select").selectOption("viewer");
  await row.getByTestId("role-save").click();
  await expect(page).toHaveURL(/\/console\/users$/);
  await expect(
    page.getByTestId("users-table").locator("tr", { hasText: doomed.email }).getByTestId("role-select"),
  ).toHaveValue("viewer");

  // The admin's own row has no Delete button.
  const mine = page.getByTestId("users-table").locator("tr", { hasText: admin.email });
  await expect(mine.getByTestId("delete-user")).toHaveCount(0);

  // Delete, confirming the dialog.
  page.once("dialog", (d) => d.accept());
  await page
    .getByTestId("users-table")
    .locator("tr", { hasText: doomed.email })
    .getByTestId("delete-user")
    .click();
  await expect(page).toHaveURL(/\/console\/users$/);
  await expect(page.getByTestId("users-table")).not.toContainText(doomed.email);

  // Their key is revoked and their session is over.
  const after = await me(base, token);
  expect(after.status).toBe(401);
  expect(after.body.error.code).toBe("key_revoked");
  await theirPage.goto("/console/keys");
  await expect(theirPage).toHaveURL(/\/console\/login$/);
  await theirs.close();
});
