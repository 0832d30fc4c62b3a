// Open URL in Debian's headless Chromium, wait until the page's title says "loaded"
// (OpenSeadragon has drawn every tile), and save a screenshot.
// Usage: node shot.mjs URL OUT.png CHROMIUM PROFILE_DIR
import { chromium } from "playwright-core";

const [url, out, executablePath, profile] = process.argv.slice(2);
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  viewport: { width: 800, height: 600 },
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto(url);
  await page.waitForFunction(() => document.title !== "loading", null, { timeout: 60000 });
  const title = await page.title();
  if (title !== "loaded") throw new Error(`page says: ${title}`);
  await page.screenshot({ path: out });
  console.log("ok");
} finally {
  await context.close();
}
