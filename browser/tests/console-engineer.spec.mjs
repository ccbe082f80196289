// An engineer: Organisation scope is not offered, a forged request for it is refused by the
// server and makes no key, and a Project-scoped key (`ci-read`) can be created.
import { expect, test } from "@playwright/test";
import { keysNamed, me, uniqueName } from "../lib/api.mjs";
import { createKey, csrfOf, shownSecret, signIn } from "../lib/console.mjs";
import { config } from "../lib/env.mjs";

test("engineer sees no organisation scope and the server refuses a forged organisation key", async ({ page }) => {
  const { base, engineer, bootstrapKey, projectId } = config();
  await signIn(page, engineer);
  await expect(page.getByTestId("whoami")).toContainText("engineer");

  await page.getByTestId("create-key").click();
  await expect(page).toHaveURL(/\/console\/keys\/new/);
  const scopes = await page
    .locator("form#create-key select[name=scope] option")
    .evaluateAll((options) => options.map((o) => o.value));
  expect(scopes).toContain("project");
  expect(scopes).not.toContain("organization");
  const projects = await page
    .locator("form#create-key select[name=projectId] option")
    .evaluateAll((options) => options.map((o) => o.value));
  expect(projects).toContain(projectId);

  // A forged form post with the engineer's valid session and CSRF token, same origin.
  const name = uniqueName("forged-org");
  const csrf = await csrfOf(page, "form#create-key");
  expect(csrf.length).toBeGreaterThan(0);
  const forged = await page.request.post("/console/keys", {
    form: { csrf, name, scope: "organization", projectId, environment: "live" },
    headers: { origin: base },
    maxRedirects: 0,
  });
  expect(forged.status()).toBe(403);
  expect(await forged.text()).toContain('data-testid="error"');
  expect(await keysNamed(base, bootstrapKey, name)).toEqual([]);

  // The same form with scope=project is accepted, so the refusal above was the role rule.
  const control = uniqueName("forged-control");
  const allowed = await page.request.post("/console/keys", {
    form: { csrf, name: control, scope: "project", projectId, environment: "live" },
    headers: { origin: base },
    maxRedirects: 0,
  });
  expect(allowed.status()).toBe(303);
  expect(allowed.headers()["location"]).toMatch(/\/console\/keys\/[0-9a-f-]{36}\/created(\?[^/]*)?$/);
  expect(await keysNamed(base, bootstrapKey, control)).toHaveLength(1);
});

test("engineer creates a project key ci-read and it works", async ({ page }) => {
  const { base, engineer, projectId } = config();
  await signIn(page, engineer);
  await page.getByTestId("create-key").click();
  await createKey(page, { name: "ci-read", scope: "project", projectId, environment: "live" });
  const token = await shownSecret(page);
  const r = await me(base, token);
  expect(r.status).toBe(200);
  expect(r.body.keyName).toBe("ci-read");
  expect(r.body.scope).toBe("project");
  expect(r.body.scopedProjectId).toBe(projectId);

  await page.getByTestId("done").click();
  await expect(page).toHaveURL(/\/console\/keys(\?|$)/);
  const row = page.locator(`tr[data-key-id="${r.body.apiKeyId}"]`);
  await expect(row.locator("[data-col=scope]")).toHaveText("project");
  await expect(row.locator("[data-col=status]")).toHaveText("active");
  expect(await page.content()).not.toContain(token);
});
