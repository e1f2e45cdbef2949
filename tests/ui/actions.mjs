// Drives the dashboard's job actions in Debian's headless Chromium with
// playwright-core: the last hour's charts, paging and filtering the job list
// (status, label), retrying a failed job, cancelling a draft, downloading a
// part, and the watched inbox view; then a screenshot.
//
//   node tests/ui/actions.mjs BASE_URL TOKEN FAILED_JOB DRAFT_JOB DONE_JOB DOWNLOAD_TO SCREENSHOT.png
//
// Prints one JSON object (what the page showed) on stdout; exits non-zero with
// the reason on any failed expectation.
import { failedWith, failer, finish, launch, openPage } from "./browser.mjs";

const [base, token, failedId, draftId, doneId, saveTo, shot] = process.argv.slice(2);
const fail = failer("dashboard actions test");

const browser = await launch();
let ctx = null;
let page = null;
const result = {};
try {
  ctx = await browser.newContext({ viewport: { width: 1500, height: 1200 }, acceptDownloads: true });
  let errors;
  ({ page, errors } = await openPage(ctx));
  await page.goto(base + "/ui/#token=" + encodeURIComponent(token));
  await page.locator("#conn").filter({ hasText: "live" }).waitFor({ timeout: 30000 });
  const rows = page.locator("#jobs tbody tr[data-id]");
  const ids = async () => rows.evaluateAll((trs) => trs.map((t) => t.dataset.id));

  // 1. The charts: rows packed and jobs ended (completed and failed) this hour.
  await page.locator("#chart-rows rect.rows").first().waitFor({ timeout: 10000 });
  result.chart_rows = await page.locator("#chart-rows rect").count();
  result.chart_ok = await page.locator("#chart-jobs rect.ok").count();
  result.chart_bad = await page.locator("#chart-jobs rect.bad").count();
  result.rows_total = await page.locator("#rows-total").innerText();

  // 2. Paging: 20 a page, older then newer.
  await page.waitForFunction(() => document.querySelectorAll("#jobs tbody tr[data-id]").length === 20, null, { timeout: 10000 });
  const first = await ids();
  await page.click("#jobs-older");
  await page.locator("#jobs-page").filter({ hasText: "page 2" }).waitFor({ timeout: 15000 });
  await page.waitForFunction((f) => !document.querySelector(`#jobs tbody tr[data-id="${f}"]`), first[0], { timeout: 15000 });
  const second = await ids();
  result.page1 = first.length;
  result.page2 = second.length;
  if (second.some((id) => first.includes(id))) fail("page 2 repeats page 1");
  await page.click("#jobs-newer");
  await page.locator("#jobs-page").filter({ hasText: "page 1" }).waitFor({ timeout: 15000 });

  // 3. Filter by status, then retry the failed job from its row.
  await page.selectOption("#f-status", "FAILED");
  await page.waitForFunction(() => [...document.querySelectorAll("#jobs tbody tr[data-id] td:nth-child(3)")].every((td) => td.innerText === "FAILED"), null, { timeout: 15000 });
  await page.waitForFunction((id) => !!document.querySelector(`#jobs tbody tr[data-id="${id}"]`), failedId, { timeout: 15000 });
  result.failed_rows = await rows.count();
  await page.locator(`#jobs tbody tr[data-id="${failedId}"] button[data-action="retry"]`).click();
  await page.locator("#job-msg").filter({ hasText: "Retrying " + failedId }).waitFor({ timeout: 15000 });
  result.retry_msg = await page.locator("#job-msg").innerText();

  // 4. Filter by label: only the labelled job.
  await page.selectOption("#f-status", "");
  await page.fill("#f-label", "lab:herbarium");
  await page.press("#f-label", "Enter");
  // The labelled job alone (the FAILED view left by step 3 also had one row for a moment).
  await page.waitForFunction((id) => {
    const rows = document.querySelectorAll("#jobs tbody tr[data-id]");
    return rows.length === 1 && rows[0].dataset.id === id && document.querySelector("#f-status").value === "";
  }, failedId, { timeout: 15000 });
  await page.waitForTimeout(1100); // another refresh: still only that one
  result.label_rows = await ids();
  await page.fill("#f-label", "");
  await page.press("#f-label", "Enter");

  // 5. Cancel the draft from its row.
  await page.selectOption("#f-status", "DRAFT");
  await page.locator(`#jobs tbody tr[data-id="${draftId}"] button[data-action="cancel"]`).click();
  await page.locator("#job-msg").filter({ hasText: "Cancelled " + draftId }).waitFor({ timeout: 15000 });
  await page.selectOption("#f-status", "");

  // 6. The retried job completes; its row says so (it is the oldest: found by its label).
  await page.fill("#f-label", "lab:herbarium");
  await page.press("#f-label", "Enter");
  await page.locator(`#jobs tbody tr[data-id="${failedId}"] td:nth-child(3)`).filter({ hasText: "COMPLETED" }).waitFor({ timeout: 30000 });

  // 7. Download a part of a finished job.
  await page.fill("#f-label", "");
  await page.selectOption("#f-trigger", "cli");
  await page.locator(`#jobs tbody tr[data-id="${doneId}"]`).click();
  const button = page.locator("#job-detail button[data-download]").first();
  await button.waitFor({ timeout: 15000 });
  const [download] = await Promise.all([page.waitForEvent("download", { timeout: 10000 }), button.click()]);
  await download.saveAs(saveTo);
  result.download_name = download.suggestedFilename();
  await page.locator("#job-msg").filter({ hasText: "Downloaded" }).waitFor({ timeout: 15000 });

  // 8. The campaign's failed child, retried from its row.
  await page.locator('#campaigns tbody tr[data-id="ui-camp"] button[data-action="retry-failed"]').click();
  await page.locator("#campaign-msg").filter({ hasText: "Retrying the failed child jobs of ui-camp" }).waitFor({ timeout: 15000 });

  // 9. The inbox: the file still settling is shown as waiting.
  await page.locator('#watches tbody tr[data-watch="inbox"] td.waiting').filter({ hasText: "waiting.zip" }).waitFor({ timeout: 15000 });
  result.waiting = await page.locator('#watches tbody tr[data-watch="inbox"] td.waiting').innerText();
  await page.waitForTimeout(1100); // one more poll after the last action, for the screenshot
  await finish(fail, page, errors, shot, result);
} catch (e) {
  await failedWith(fail, page, e);
} finally {
  await browser.close();
}
