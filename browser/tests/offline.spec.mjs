// The flags in lib/env.mjs hold: an address other than 127.0.0.1, 127.0.0.2 and localhost
// does not resolve (--host-resolver-rules maps IP literals too) or goes to the dead proxy.
// Checked against 127.0.0.3, which is loopback too, so no packet leaves the machine even if the
// flags were lost: then the answer would be net::ERR_CONNECTION_REFUSED.
import { expect, test } from "@playwright/test";

test("the browser connects only to the test server's loopback addresses", async ({ page }) => {
  let error = "";
  try {
    await page.goto("http://127.0.0.3:58213/", { timeout: 10_000 });
  } catch (e) {
    error = String(e);
  }
  expect(error).toMatch(/net::ERR_(NAME_NOT_RESOLVED|PROXY_CONNECTION_FAILED)/);
});
