// Drives the dashboard in Debian's headless Chromium with playwright-core:
// token from the fragment, the token prompt, then start a campaign from the
// runner form, watch it progress in the monitor, stop it, pause and resume
// the queue, and screenshot.
//
//   node tests/ui/dashboard.mjs BASE_URL TOKEN PARENT_DIR SCREENSHOT.png
//
// Prints one JSON object (what the page showed) on stdout; exits non-zero with
// the reason on any failed expectation.
import { failedWith, failer, finish, launch, openPage } from "./browser.mjs";

const [base, token, parent, shot] = process.argv.slice(2);
const fail = failer("dashboard test");

const browser = await launch();
let ctx = null;
let page = null;
const result = { progress: [] };
try {
  // 1. Without a token: the prompt; a wrong token is refused, the right one works.
  const ctx1 = await browser.newContext();
  const p1 = await ctx1.newPage();
  await p1.goto(base + "/ui/");
  await p1.locator("#login").waitFor({ state: "visible", timeout: 10000 });
  await p1.fill("#token", "wrong-token");
  await p1.click("#login-form button");
  await p1.locator("#login-error").filter({ hasText: "refused" }).waitFor({ timeout: 10000 });
  await p1.fill("#token", token);
  await p1.click("#login-form button");
  await p1.locator("#app").waitFor({ state: "visible", timeout: 10000 });
  await ctx1.close();

  // 2. Token in the fragment: taken, kept in sessionStorage, wiped from the URL.
  ctx = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  let errors;
  ({ page, errors } = await openPage(ctx));
  await page.goto(base + "/ui/#token=" + encodeURIComponent(token));
  await page.locator("#app").waitFor({ state: "visible", timeout: 10000 });
  if (page.url().includes("token")) fail("the token stayed in the URL: " + page.url());
  if ((await page.evaluate(() => sessionStorage.getItem("batchd-token"))) !== token) fail("token not in sessionStorage");
  await page.locator("#conn").filter({ hasText: "live" }).waitFor({ timeout: 30000 });

  // 3. Start a campaign from the runner with a generated id.
  await page.fill("#c-parent", parent);
  await page.fill("#c-batch", "3");
  await page.click("#c-generate");
  const id = await page.inputValue("#c-id");
  if (!/^c-\d{8}-[0-9a-f]{12}$/.test(id)) fail("generated id looks wrong: " + id);
  result.id = id;
  await page.click("#c-start");
  await page.locator("#campaign-msg").filter({ hasText: "Started campaign " + id }).waitFor({ timeout: 10000 });
  const row = page.locator(`#campaigns tbody tr[data-id="${id}"]`);
  await row.waitFor({ timeout: 10000 });

  // 4. Watch it progress: the monitor's numbers grow as the page polls.
  const read = async () => ({
    status: await row.locator("td").nth(1).innerText(),
    parent_batches: Number(await row.locator(".parent-batches").innerText()),
    child_jobs: Number(await row.locator(".child-jobs").innerText()),
    unique_children: Number(await row.locator(".unique-children").innerText()),
    succeeded: Number(await row.locator(".succeeded").innerText()),
    next_start_position: await row.locator(".next-start").innerText(),
  });
  const deadline = Date.now() + 90000;
  for (;;) {
    const r = await read();
    const last = result.progress[result.progress.length - 1];
    if (!last || last.succeeded !== r.succeeded || last.parent_batches !== r.parent_batches) result.progress.push(r);
    if (result.progress.length >= 2 && r.parent_batches >= 2 && r.succeeded >= 3) break;
    if (r.status !== "RUNNING") fail("campaign is " + r.status + " before it could be stopped");
    if (Date.now() > deadline) fail("no progress shown: " + JSON.stringify(result.progress));
    await page.waitForTimeout(150);
  }
  // The job list shows the child jobs with progress bars.
  await page.locator("#jobs tbody tr .bar").first().waitFor({ timeout: 5000 });

  // 5. Stop after the current batch.
  await row.locator('button[data-action="stop"]').click();
  await page.locator("#campaign-msg").filter({ hasText: "Stopping " + id }).waitFor({ timeout: 5000 });
  await row.locator("td").nth(1).filter({ hasText: "STOPPED" }).waitFor({ timeout: 30000 });
  await page.waitForTimeout(1200); // one more poll, so the numbers are final
  result.final = await read();
  await row.click();
  await page.locator("#campaign-detail .campaign-message").waitFor({ timeout: 5000 });
  result.detail = await page.locator("#campaign-detail .campaign-message").innerText();
  await row.locator('button[data-action="resume"]').waitFor({ timeout: 5000 });

  // 6. Pause the queue from the page, see it shown, resume it.
  await page.locator("#queue-toggle").filter({ hasText: "Pause queue" }).click();
  await page.locator("#queue-state").filter({ hasText: "PAUSED" }).waitFor({ timeout: 5000 });
  result.queue_paused = await page.locator("#queue-state").innerText();
  await page.screenshot({ path: shot.replace(/\.png$/, "-paused.png"), fullPage: false });
  await page.locator("#queue-toggle").filter({ hasText: "Resume queue" }).click();
  await page.locator("#queue-state").filter({ hasText: "running" }).waitFor({ timeout: 5000 });
  await finish(fail, page, errors, shot, result);
} catch (e) {
  await failedWith(fail, page, e);
} finally {
  await browser.close();
}
