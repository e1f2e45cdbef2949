// What both dashboard drivers (dashboard.mjs, actions.mjs) share: Debian's
// Chromium started headless the same way, and one way to fail that says what
// the page showed of its connection (a slow server reads differently from a
// failing one).
import { chromium } from "playwright-core";

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
}

export function failer(name) {
  return (msg) => { console.error(name + ": " + msg); process.exit(1); };
}

export async function failedWith(fail, page, e) {
  const conn = page ? await page.locator("#conn").innerText().catch(() => "?") : "no page";
  fail(String(e && e.stack || e) + "\n#conn: " + conn);
}

// A page whose script errors and console errors are collected in `errors`.
export async function openPage(ctx) {
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  return { page, errors };
}

// The end of a run: no page errors, a full-page screenshot, what the page showed on stdout.
export async function finish(fail, page, errors, shot, result) {
  if (errors.length) fail("page errors: " + errors.join(" | "));
  await page.screenshot({ path: shot, fullPage: true });
  console.log(JSON.stringify(result));
}
