// Console steps a person takes, as Playwright actions on the pages of the console contract
// (/work/console-contract.md: test ids, form names, routes).
import { expect } from "@playwright/test";

/** Signs in through the login form and lands on the key list. */
export async function signIn(page, user) {
  await page.goto("/console/login");
  await fillLogin(page, user);
  await expect(page).toHaveURL(/\/console\/keys(\?|$)/);
  await expect(page.getByTestId("whoami")).toContainText(user.email);
}

/** Fills and submits the login form; returns the response to the POST. */
export async function fillLogin(page, user) {
  const form = page.locator("form#login");
  await form.locator("input[name=email]").fill(user.email);
  await form.locator("input[name=password]").fill(user.password);
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/console/login") && r.request().method() === "POST"),
    page.getByTestId("sign-in").click(),
  ]);
  await page.waitForLoadState("domcontentloaded");
  return response;
}

/** The token shown in the shown-once dialog (a <code> or a readonly input). */
export async function shownSecret(page) {
  const secret = page.getByTestId("key-dialog").getByTestId("key-secret");
  await expect(secret).toBeVisible();
  return (
    await secret.evaluate((el) => ("value" in el && typeof el.value === "string" ? el.value : el.textContent))
  ).trim();
}

/** Fills the Create Key form and submits it; lands on the shown-once page. */
export async function createKey(page, { name, scope, environment = "live", projectId }) {
  const form = page.locator("form#create-key");
  await form.locator("input[name=name]").fill(name);
  await form.locator("select[name=scope]").selectOption(scope);
  if (projectId) await form.locator("select[name=projectId]").selectOption(projectId);
  await form.locator("select[name=environment]").selectOption(environment);
  await page.getByTestId("create-key-submit").click();
  await expect(page).toHaveURL(/\/console\/keys\/[0-9a-f-]{36}\/created(\?[^/]*)?$/);
}

/** The CSRF token of the first form on the page (a hidden input named csrf). */
export async function csrfOf(page, formSelector = "form") {
  return page.locator(`${formSelector} input[name=csrf]`).first().inputValue();
}

/** The `align_session` cookie of the page's context, or undefined. */
export async function sessionCookie(context) {
  return (await context.cookies()).find((c) => c.name === "align_session");
}
