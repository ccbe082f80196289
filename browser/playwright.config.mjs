// Playwright configuration for the Align browser tests. Run them with ./run, which builds and
// starts `align serve`, makes the users and sets the ALIGN_* variables the tests read.
import { defineConfig } from "@playwright/test";
import { artifactsDir, chromiumPath, OFFLINE_ARGS } from "./lib/env.mjs";

const artifacts = artifactsDir();

export default defineConfig({
  testDir: "./tests",
  testMatch: /.*\.spec\.mjs$/,
  outputDir: `${artifacts}/test-results`,
  // One server, one browser at a time: the machine has two cores shared with a compiler.
  workers: 1,
  fullyParallel: false,
  retries: 0,
  forbidOnly: true,
  timeout: 120_000,
  expect: { timeout: 15_000 },
  reporter: [
    ["list"],
    ["json", { outputFile: `${artifacts}/results.json` }],
    ["html", { outputFolder: `${artifacts}/report`, open: "never" }],
  ],
  use: {
    baseURL: process.env.ALIGN_BASE_URL,
    browserName: "chromium",
    headless: true,
    launchOptions: { executablePath: chromiumPath(), args: OFFLINE_ARGS },
    screenshot: "on",
    trace: "on",
    video: "off",
    actionTimeout: 20_000,
    navigationTimeout: 30_000,
  },
});
