// batchd dashboard: plain JavaScript over the JSON API, no build step and no
// outside assets. The token comes from the URL fragment (#token=…) or a prompt
// and lives in sessionStorage; the fragment is wiped at once so it does not
// linger in the address bar or in history.
"use strict";

const $ = (sel) => document.querySelector(sel);
let token = sessionStorage.getItem("batchd-token");
let selectedJob = null;
let selectedCampaign = null;

(function takeTokenFromFragment() {
  const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (m) {
    token = decodeURIComponent(m[1]);
    sessionStorage.setItem("batchd-token", token);
    history.replaceState(null, "", location.pathname + location.search);
  }
})();

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || ("HTTP " + status));
    this.status = status;
    this.code = body && body.error && body.error.code;
  }
}

async function api(method, path, body) {
  const r = await fetch(path, {
    method,
    headers: Object.assign({ Authorization: "Bearer " + token }, body ? { "Content-Type": "application/json" } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

// Builds an element: el("td", {class: "x"}, child, "text", …).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick") e.onclick = v; else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c === null || c === undefined ? "" : String(c)));
  return e;
}

function bar(percent, failed) {
  const b = el("span", { class: "bar" + (failed ? " failed" : ""), role: "progressbar", "aria-valuenow": percent, "aria-valuemin": 0, "aria-valuemax": 100 });
  const fill = el("span");
  fill.style.width = Math.max(0, Math.min(100, percent || 0)) + "%";
  b.append(fill);
  return el("span", {}, b, " " + (percent || 0).toFixed(1) + " %");
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function showLogin(message) {
  $("#app").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  $("#conn").textContent = "not connected";
}

// The job list's filters and page: `pages` holds the `after` cursor of each
// page seen, so "newer" goes back without the server keeping any state.
const jobView = { pages: [null], next: null };

function jobQuery() {
  const q = new URLSearchParams({ limit: "20" });
  for (const [key, id] of [["status", "#f-status"], ["trigger", "#f-trigger"], ["label", "#f-label"]]) {
    const v = $(id).value.trim();
    if (v) q.set(key, v);
  }
  const after = jobView.pages[jobView.pages.length - 1];
  if (after !== null) q.set("after", after);
  return q.toString();
}

async function jobAction(id, action) {
  try {
    const j = await api("POST", "/v1/jobs/" + encodeURIComponent(id) + "/" + action, {});
    $("#job-msg").textContent = (action === "cancel" ? "Cancelled " : "Retrying ") + id + ": " + j.status + ".";
    $("#job-msg").className = "muted";
  } catch (e) {
    $("#job-msg").textContent = (e.code ? e.code + ": " : "") + e.message;
    $("#job-msg").className = "error";
  }
  tick();
}

function actionsFor(j) {
  const b = (action, label) => el("button", { "data-action": action, onclick: (ev) => { ev.stopPropagation(); jobAction(j.id, action); } }, label);
  if (["DRAFT", "QUEUED", "PROCESSING"].includes(j.status)) return b("cancel", "Cancel");
  if (j.kind === "ingest" && ["FAILED", "CANCELLED"].includes(j.status)) return b("retry", "Retry");
  return "";
}

// A part is fetched with the token (a plain link cannot send it) and handed to
// the browser as a download.
async function download(jobId, part) {
  const r = await fetch("/v1/jobs/" + encodeURIComponent(jobId) + "/parts/" + part.source + "." + part.n + "/content", {
    headers: { Authorization: "Bearer " + token },
  });
  if (!r.ok) {
    const body = await r.json().catch(() => null);
    $("#job-msg").textContent = "Download failed: " + ((body && body.error && body.error.message) || "HTTP " + r.status);
    $("#job-msg").className = "error";
    return;
  }
  const url = URL.createObjectURL(await r.blob());
  const a = el("a", { href: url, download: part.path.split("/").pop() });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  $("#job-msg").textContent = "Downloaded " + part.path.split("/").pop() + " (" + part.bytes + " bytes, sha256 " + part.sha256.slice(0, 12) + "…).";
  $("#job-msg").className = "muted";
}

async function refreshJobs() {
  const { jobs, next } = await api("GET", "/v1/jobs?" + jobQuery());
  jobView.next = next;
  $("#jobs-older").disabled = next === null;
  $("#jobs-newer").disabled = jobView.pages.length < 2;
  $("#jobs-page").textContent = "page " + jobView.pages.length;
  fill($("#jobs tbody"), jobs.length ? jobs.map((j) => {
    const stage = j.progress.current_stage;
    return el("tr", { class: j.id === selectedJob ? "sel" : "", "data-id": j.id, onclick: () => { selectedJob = j.id; tick(); } },
      el("td", { class: "id" }, j.id),
      el("td", {}, j.name || ""),
      el("td", { class: "status-" + j.status }, j.status),
      el("td", {}, j.trigger + (j.kind === "parent" ? " (parent)" : "")),
      el("td", {}, bar(j.progress.percent, j.status === "FAILED"), " ", j.progress.processed + " / " + j.progress.total),
      el("td", {}, stage ? stage.name + " (" + stage.index + "/" + stage.total + ")" : "—"),
      el("td", {}, j.health),
      el("td", { class: "msg" }, j.status_message),
      el("td", { class: "actions" }, actionsFor(j)));
  }) : [el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No jobs match."))]);
  if (!selectedJob) { $("#job-detail").replaceChildren(); return; }
  const [job, parts] = await Promise.all([api("GET", "/v1/jobs/" + selectedJob), api("GET", "/v1/jobs/" + selectedJob + "/parts")]);
  const tasks = (job.status_detail && job.status_detail.tasks) || {};
  const labels = Object.entries(job.labels || {}).map(([k, v]) => k + "=" + v).join(", ");
  $("#job-detail").replaceChildren(el("div", { class: "detail" },
    el("h3", {}, "Job ", el("span", { class: "id" }, job.id), job.name ? " · " + job.name : ""),
    el("p", {}, job.status_message),
    labels || job.external_ref ? el("p", {}, "Labels: " + (labels || "—") + (job.external_ref ? " · external_ref " + job.external_ref : "")) : "",
    el("p", {}, "Sources: ", job.sources.join(", ")),
    job.watched_file ? el("p", {}, "Watched file " + job.watched_file.name + ": " + (job.watched_file.disposition || "processing") + (job.watched_file.path ? " → " + job.watched_file.path : "")) : "",
    job.retries || job.retry_of ? el("p", {}, "Retries: " + job.retries + (job.retry_of ? " · retry of " + job.retry_of : "")) : "",
    el("p", {}, "Stages: ", Object.entries(tasks).map(([k, v]) => k + " " + Object.entries(v).map(([st, n]) => n + " " + st).join(", ")).join(" · ") || "—"),
    el("p", {}, "Parts (" + parts.parts.length + "):"),
    el("ul", { class: "parts" }, ...parts.parts.slice(0, 200).map((p) => el("li", {},
      p.path.split("/").pop() + " · " + p.rows + " rows · " + p.state + " ",
      p.state === "DONE" ? el("button", { class: "link", "data-download": p.source + "." + p.n, onclick: (ev) => { ev.stopPropagation(); download(job.id, p); } }, "download") : ""))),
    el("p", { class: job.errors.length ? "error" : "muted" }, "Errors: ", job.errors.length ? job.errors.map((e) => e.code + ": " + e.message).join(" | ") : "none")));
}

async function refreshWatches() {
  const { watches } = await api("GET", "/v1/watches");
  if (!watches.length) {
    fill($("#watches tbody"), [el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No watched inboxes."))]);
    return;
  }
  fill($("#watches tbody"), watches.map((w) => {
    const s = w.summary;
    const waiting = w.waiting.map((f) => f.name + " (" + f.size + " B, " + f.age_seconds + " s)").join(", ");
    return el("tr", { "data-watch": w.name },
      el("td", {}, w.name),
      el("td", {}, el("code", {}, w.dir)),
      el("td", { class: "waiting" }, w.waiting_count ? w.waiting_count + ": " + waiting : "none"),
      el("td", {}, s.taken), el("td", {}, s.in_progress),
      el("td", { class: s.failed ? "error" : "" }, s.failed), el("td", {}, s.duplicates),
      el("td", {}, s.last_taken ? s.last_taken.name + " at " + new Date(s.last_taken.at).toLocaleTimeString() : "—"),
      el("td", { class: "failures" }, s.recent_failures.map((f) => f.name + " (job " + (f.job_id || "?") + ")").join(", ") || "—"));
  }));
}

// Plain SVG bars, one per minute; `series` is a list of [class, values].
function drawBars(svg, series) {
  const n = series[0][1].length;
  const max = Math.max(1, ...series[0][1].map((_, i) => series.reduce((sum, [, v]) => sum + v[i], 0)));
  const w = 600 / n;
  const rects = [];
  for (let i = 0; i < n; i++) {
    let y = 80;
    for (const [cls, values] of series) {
      const h = (values[i] / max) * 76;
      if (h > 0) {
        y -= h;
        const r = document.createElementNS(svg.namespaceURI, "rect");
        for (const [k, v] of Object.entries({ x: i * w + 0.5, y, width: Math.max(1, w - 1), height: h, class: cls })) r.setAttribute(k, v);
        const t = document.createElementNS(svg.namespaceURI, "title");
        t.textContent = values[i] + " " + cls;
        r.append(t);
        rects.push(r);
      }
    }
  }
  svg.replaceChildren(...rects);
}

async function refreshCharts() {
  const { minutes } = await api("GET", "/v1/stats?minutes=60");
  drawBars($("#chart-rows"), [["rows", minutes.map((m) => m.rows)]]);
  drawBars($("#chart-jobs"), [["ok", minutes.map((m) => m.jobs_completed)], ["bad", minutes.map((m) => m.jobs_failed)]]);
  const sum = (k) => minutes.reduce((a, m) => a + m[k], 0);
  const peak = Math.max(0, ...minutes.map((m) => m.rows)) / 60;
  $("#rows-total").textContent = "· " + sum("rows") + " rows in the hour, " + (sum("rows") / 3600).toFixed(2) + " rows/s on average, " + peak.toFixed(1) + " rows/s at the busiest minute";
  $("#jobs-total").textContent = "· " + sum("jobs_completed") + " completed, " + sum("jobs_failed") + " failed";
}

for (const id of ["#f-status", "#f-trigger"]) $(id).onchange = () => { jobView.pages = [null]; tick(); };
$("#f-label").onchange = () => { jobView.pages = [null]; tick(); };
$("#job-filter").onsubmit = (ev) => { ev.preventDefault(); jobView.pages = [null]; tick(); };
$("#jobs-older").onclick = () => { if (jobView.next !== null) { jobView.pages.push(jobView.next); tick(); } };
$("#jobs-newer").onclick = () => { if (jobView.pages.length > 1) { jobView.pages.pop(); tick(); } };

async function refreshSchedules() {
  const { schedules } = await api("GET", "/v1/schedules");
  if (!schedules.length) {
    fill($("#schedules tbody"), [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No schedules configured (add a [[schedule]] section to the config)."))]);
    return;
  }
  fill($("#schedules tbody"), schedules.map((s) => el("tr", {},
    el("td", {}, s.name), el("td", {}, el("code", {}, s.cron)), el("td", {}, s.timezone),
    el("td", {}, s.next_fire || "—"),
    el("td", {}, s.last_fire ? s.last_fire.scheduled_at : "never"),
    el("td", {}, s.last_fire ? s.last_fire.result : "—"))));
}

async function refreshCampaigns() {
  const { campaigns } = await api("GET", "/v1/campaigns");
  fill($("#campaigns tbody"), campaigns.map((c) => {
    const stop = el("button", { "data-action": "stop", onclick: (ev) => { ev.stopPropagation(); setCampaign(c.campaign_id, "stop"); } }, "Stop campaign");
    const resume = el("button", { "data-action": "resume", onclick: (ev) => { ev.stopPropagation(); setCampaign(c.campaign_id, "resume"); } }, "Resume");
    const retry = el("button", { "data-action": "retry-failed", onclick: (ev) => { ev.stopPropagation(); setCampaign(c.campaign_id, "retry-failed"); } }, "Retry failed");
    const live = c.status === "RUNNING";
    const state = !c.managed ? "" : live ? stop : (c.status === "STOPPED" || c.status === "FAILED") ? resume : "";
    const action = el("span", {}, state, c.children.failed > 0 ? retry : "");
    return el("tr", { class: c.campaign_id === selectedCampaign ? "sel" : "", "data-id": c.campaign_id, onclick: () => { selectedCampaign = c.campaign_id; tick(); } },
      el("td", { class: "id" }, c.campaign_id, c.name ? el("div", { class: "muted" }, c.name) : ""),
      el("td", { class: "status-" + c.status }, c.status),
      el("td", {}, bar(c.progress.percent, c.status === "FAILED")),
      el("td", { class: "parent-batches" }, c.parent_batches),
      el("td", { class: "child-jobs" }, c.child_jobs),
      el("td", { class: "unique-children" }, c.unique_children),
      el("td", { class: "succeeded" }, c.children.succeeded),
      el("td", { class: "failed" }, c.children.failed),
      el("td", { class: "running" }, c.children.running),
      el("td", { class: "skipped" }, c.children.skipped),
      el("td", { class: "next-start" }, c.next_start_position === null ? "—" : c.next_start_position),
      el("td", {}, action));
  }));
  const c = campaigns.find((x) => x.campaign_id === selectedCampaign);
  $("#campaign-detail").replaceChildren(c ? el("div", { class: "detail" },
    el("h3", {}, "Campaign ", el("span", { class: "id" }, c.campaign_id)),
    el("p", { class: "campaign-message" }, c.status_message),
    el("p", {}, "Parent: ", el("code", {}, c.parent), " · pattern ", el("code", {}, c.pattern), " · batch size " + c.batch_size),
    el("p", {}, "Current batch: ", c.current_batch ? "from position " + c.current_batch.start_position + " (job " + c.current_batch.job_id + ")" : "—"),
    c.error ? el("p", { class: "error" }, c.error) : "") : "");
}

async function setCampaign(id, action) {
  try {
    await api("POST", "/v1/campaigns/" + encodeURIComponent(id) + "/" + action, {});
    $("#campaign-msg").textContent = action === "stop" ? "Stopping " + id + " after the current batch."
      : action === "resume" ? "Resumed " + id + "." : "Retrying the failed child jobs of " + id + ".";
  } catch (e) {
    $("#campaign-msg").textContent = e.message;
  }
  tick();
}

function newCampaignId() {
  const b = new Uint8Array(6);
  crypto.getRandomValues(b);
  return "c-" + new Date().toISOString().slice(0, 10).replaceAll("-", "") + "-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

$("#c-generate").onclick = () => { $("#c-id").value = newCampaignId(); };

$("#campaign-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const num = (id) => ($(id).value === "" ? undefined : Number($(id).value));
  const body = {
    parent: $("#c-parent").value.trim(),
    batch_size: num("#c-batch"),
    campaign_id: $("#c-id").value.trim() || undefined,
    total_children: num("#c-total"),
    pattern: $("#c-pattern").value.trim() || undefined,
    max_failed_children: num("#c-maxfailed"),
    settings: num("#c-rows") ? { batch_size: num("#c-rows") } : undefined,
  };
  try {
    const c = await api("POST", "/v1/campaigns", body);
    selectedCampaign = c.campaign_id;
    $("#c-id").value = c.campaign_id;
    $("#campaign-msg").textContent = "Started campaign " + c.campaign_id + ".";
  } catch (e) {
    $("#campaign-msg").textContent = (e.code ? e.code + ": " : "") + e.message;
  }
  tick();
};

$("#login-form").onsubmit = (ev) => {
  ev.preventDefault();
  token = $("#token").value.trim();
  sessionStorage.setItem("batchd-token", token);
  start();
};

$("#logout").onclick = () => {
  sessionStorage.removeItem("batchd-token");
  token = null;
  showLogin();
};

// The pause switch: paused, no task is claimed and running ones finish.
let queuePaused = null;
async function refreshQueue() {
  const q = await api("GET", "/v1/queue");
  queuePaused = q.paused;
  $("#queue-state").textContent = q.paused
    ? "PAUSED since " + new Date(q.since).toLocaleString() + (q.reason ? " (" + q.reason + ")" : "") + " · " + q.running_tasks + " task(s) finishing"
    : "running · " + q.running_tasks + " task(s) running";
  if (q.waiting_for_space) {
    const w = q.waiting_for_space;
    $("#queue-state").textContent += " · waiting for disk space in " + w.dir + ": " + Math.floor(w.free_bytes / 1048576) +
      " MiB free, " + Math.floor(w.min_free_bytes / 1048576) + " MiB needed";
  }
  $("#queue-state").className = q.paused || q.waiting_for_space ? "status-FAILED" : "status-COMPLETED";
  const b = $("#queue-toggle");
  b.hidden = false;
  b.textContent = q.paused ? "Resume queue" : "Pause queue";
}

$("#queue-toggle").onclick = async () => {
  try {
    if (queuePaused) await api("POST", "/v1/queue/resume", {});
    else await api("POST", "/v1/queue/pause", { reason: "paused from the dashboard" });
  } catch (e) {
    $("#queue-state").textContent = (e.code ? e.code + ": " : "") + e.message;
  }
  tick();
};

let timer = null;
let busy = false;
// A click during a refresh asks for another one right after it, so what the
// page shows follows the click even when the server is slow.
let again = false;
async function tick() {
  if (busy) { again = true; return; }
  busy = true;
  again = false;
  try {
    // One request at a time: a page needs a single connection, and a busy
    // machine was seen to leave some of six parallel first requests unanswered
    // for over 30 s (in headless Chromium under load).
    for (const refresh of [refreshQueue, refreshJobs, refreshCampaigns, refreshSchedules, refreshWatches, refreshCharts]) await refresh();
    $("#conn").textContent = "live · updated " + new Date().toLocaleTimeString();
  } catch (e) {
    if (e.status === 401) {
      clearInterval(timer);
      sessionStorage.removeItem("batchd-token");
      showLogin("The token was refused; paste the current one.");
    } else {
      $("#conn").textContent = "connection problem: " + e.message;
    }
  } finally {
    busy = false;
    if (again) setTimeout(tick, 0);
  }
}

function start() {
  if (!token) { showLogin(); return; }
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#logout").hidden = false;
  clearInterval(timer);
  tick();
  timer = setInterval(tick, 1000);
}

start();
