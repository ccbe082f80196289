// What the tests share: the environment ./run sets, Chromium's offline flags, artifact paths.
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** Where screenshots, traces and reports go (printed by ./run at the end). */
export function artifactsDir() {
  return resolve(process.env.ALIGN_BROWSER_ARTIFACTS ?? join(here, "..", "..", "target", "browser-artifacts"));
}

/** A path for a named screenshot, its folder created. */
export function screenshotPath(name) {
  const dir = join(artifactsDir(), "screenshots");
  mkdirSync(dir, { recursive: true });
  return join(dir, `${name}.png`);
}

/** Debian's Chromium (never a browser Playwright downloads). */
export function chromiumPath() {
  return process.env.ALIGN_CHROMIUM ?? "/usr/bin/chromium";
}

/**
 * Flags that keep Chromium off the network: every host name but the loopback ones fails to
 * resolve, every connection not to 127.0.0.1, 127.0.0.2 or localhost goes to a proxy on a
 * closed loopback port, and the background services that phone home are off. Playwright adds
 * its own set too (--disable-background-networking, --disable-component-update,
 * --disable-sync, --no-first-run, --disable-features=OptimizationHints,MediaRouter,
 * NetworkTimeServiceQuerying,...); a second --disable-features here would replace its list,
 * so there is none.
 */
export const OFFLINE_ARGS = [
  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE 127.0.0.2 , EXCLUDE localhost",
  "--proxy-server=http://127.0.0.1:9",
  "--proxy-bypass-list=127.0.0.1;127.0.0.2;localhost",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-domain-reliability",
  "--disable-client-side-phishing-detection",
  "--safebrowsing-disable-auto-update",
  "--no-pings",
  "--no-first-run",
  "--no-default-browser-check",
  "--disable-default-apps",
  "--disable-extensions",
  "--disable-breakpad",
  "--metrics-recording-only",
  "--disable-dev-shm-usage",
];

/** A required environment variable (./run sets them all). */
export function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the tests with browser/run`);
  return v;
}

/** Everything the tests read from ./run. */
export function config() {
  return {
    base: need("ALIGN_BASE_URL").replace(/\/$/, ""),
    admin: { email: need("ALIGN_ADMIN_EMAIL"), password: need("ALIGN_ADMIN_PASSWORD") },
    engineer: { email: need("ALIGN_ENGINEER_EMAIL"), password: need("ALIGN_ENGINEER_PASSWORD") },
    bootstrapKey: need("ALIGN_BOOTSTRAP_KEY"),
    projectId: need("ALIGN_PROJECT_ID"),
    // Users only the throttling tests sign in as (each suite its own), so no one else is locked out.
    throttled: { email: need("ALIGN_THROTTLE_EMAIL"), password: need("ALIGN_THROTTLE_PASSWORD") },
    throttledHttp: { email: need("ALIGN_THROTTLE_HTTP_EMAIL"), password: need("ALIGN_THROTTLE_HTTP_PASSWORD") },
    // Users only the privacy tests touch (tests/privacy.spec.mjs).
    profile: { email: need("ALIGN_PROFILE_EMAIL"), password: need("ALIGN_PROFILE_PASSWORD") },
    doomed: { email: need("ALIGN_DOOMED_EMAIL"), password: need("ALIGN_DOOMED_PASSWORD") },
  };
}

/** An API token (live `ako_`, sandbox `akt_`; docs/key-format.md). */
export const TOKEN_RE = /ak[ot]_[0-9a-f]{8}_[0-9A-Za-z]{49}/;
