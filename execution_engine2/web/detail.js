// The job detail panel: overview (parameters, output, error), log, retry lineage,
// cancel and retry.
import {adminFor, call, session} from "./api.js";
import {
  $, $$, ACTIVE, RETRYABLE, appName, download, duration, el, narrative, pretty, statusBadge,
  timeQueued, timeRunning, when,
} from "./dom.js";
import {describeCounts, failedMembers, summarized} from "./batch.js";
import {lineage, retryJobs, retrySummary} from "./retry.js";

const LOG_PAGE = 1000;
const LOG_POLL_MS = 2000;

// The open job, the request ticket that may fill the panel, its log lines so far,
// the log poll, and the list's callbacks.
const state = {
  job: null, ticket: 0, lines: [], logTimer: null, logChain: Promise.resolve(),
  onChange: () => {}, notify: () => {},
};

export function setupDetail({onChange, notify}) {
  state.onChange = onChange;
  state.notify = notify;
  $("#detail-close").addEventListener("click", () => { location.hash = ""; });
  for (const tab of $$(".tabs button")) tab.addEventListener("click", () => showTab(tab.dataset.tab));
  $("#cancel-job").addEventListener("click", confirmCancel);
  $("#retry-job").addEventListener("click", () => retry([state.job]));
  $("#retry-batch").addEventListener("click", retryFailedChildren);
  $("#log-text").addEventListener("click", () => download(
    `${state.job.job_id}.log.txt`, state.lines.map((l) => l.line).join("\n") + "\n", "text/plain"));
  $("#log-json").addEventListener("click", () => download(
    `${state.job.job_id}.log.json`, pretty(state.lines), "application/json"));
  $("#log-follow").addEventListener("change", followLog);
}

export const detailJobId = () => (state.job ? state.job.job_id : null);
const shownStatus = (job) => (job.summary ? job.summary.status : job.status);
export const detailIsActive = () => Boolean(state.job && ACTIVE.has(shownStatus(state.job)));

export async function openDetail(jobId, admin = {}) {
  const ticket = ++state.ticket;  // only the latest request may fill the panel
  let job;
  try {
    job = await call("check_job", {job_id: jobId, ...admin});
    if (job.batch_job) await summarized(job, admin);
  } catch (err) {
    if (ticket === state.ticket) state.notify(`Job ${jobId}: ${err.message}`, true);
    return;
  }
  if (ticket !== state.ticket) return;
  const first = !state.job || state.job.job_id !== jobId;
  const wasActive = !first && ACTIVE.has(shownStatus(state.job));
  if (first) {
    stopLog();
    state.lines = [];
    $("#log-pane").textContent = "";
    $("#log-follow").checked = true;
  }
  state.job = job;
  $("#detail").hidden = false;
  render();
  if (first) showTab("overview");
  if (first || (wasActive && !ACTIVE.has(shownStatus(job)))) pollLog();  // a last read at the end
  renderLineage();
}

export function closeDetail() {
  state.ticket += 1;
  stopLog();
  state.job = null;
  $("#detail").hidden = true;
}

export async function refreshDetail() {
  if (state.job) await openDetail(state.job.job_id, adminFor(state.job));
}

function showTab(name) {
  for (const tab of $$(".tabs button")) tab.classList.toggle("active", tab.dataset.tab === name);
  for (const panel of $$("#detail [data-panel]")) panel.hidden = panel.dataset.panel !== name;
  if (name === "log") followLog();
}

function render() {
  const job = state.job;
  $("#detail-title").textContent = `Job ${job.job_id}`;
  $("#detail-status").replaceChildren(statusBadge(shownStatus(job)));
  $("#cancel-job").hidden = !ACTIVE.has(shownStatus(job));
  $("#retry-job").hidden = !RETRYABLE.has(job.status) || Boolean(job.batch_job);
  $("#retry-batch").hidden = !job.batch_job;
  $("#overview").replaceChildren(...overview(job));
}

function jobLink(id) {
  return el("a", {href: `#job=${id}`, class: "job-link"}, id);
}

function overview(job) {
  const input = job.job_input || {};
  const rows = [
    ["User", job.user], ["App", appName(job)], ["Method", input.method],
    ["Narrative", narrative(job, session.narrativeBase)],
    ["Submitted", when(job.created)], ["Started", when(job.running)],
    ["Finished", when(job.finished)],
    ["Time queued", duration(job.summary ? job.summary.queuedMs : timeQueued(job))],
    ["Time running", duration(job.summary ? job.summary.runningMs : timeRunning(job))],
    ["Client group", (input.requirements || {}).clientgroup],
    ["Batch", job.batch_id ? jobLink(job.batch_id) : null],
    ["Retry of", job.retry_parent ? jobLink(job.retry_parent) : null],
    ["Retries", job.retry_count ? String(job.retry_count) : null],
    ["Jobs", job.summary ? describeCounts(job.summary.counts) || "none" : null],
  ].filter(([, value]) => value !== null && value !== undefined && value !== "");
  const parts = [el("dl", {class: "facts"}, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]))];
  if (job.errormsg || job.error) {
    parts.push(el("h3", {}, "Error"),
               el("p", {class: "error", id: "job-errormsg"}, job.errormsg || ""),
               job.error ? el("pre", {class: "json"}, pretty(job.error)) : null);
  }
  if (input.params !== undefined && input.params !== null) {  // a batch container has none
    parts.push(el("h3", {}, "Parameters"), el("pre", {class: "json", id: "job-params"}, pretty(input.params)));
  }
  if (job.job_output !== undefined) {
    parts.push(el("h3", {}, "Output"), el("pre", {class: "json", id: "job-output"}, pretty(job.job_output)));
  }
  return parts;
}

// --- log -------------------------------------------------------------------------------

function stopLog() {
  clearTimeout(state.logTimer);
  state.logTimer = null;
}

// Reads the log on from where it stopped; runs one at a time (chained), and again
// every LOG_POLL_MS while the job is active.
function pollLog() {
  stopLog();
  state.logChain = state.logChain.then(readLog).then(() => {
    if (state.job && ACTIVE.has(state.job.status) && !state.logTimer) {
      state.logTimer = setTimeout(pollLog, LOG_POLL_MS);
    }
  });
}

async function readLog() {
  const jobId = detailJobId();
  if (!jobId) return;
  const admin = adminFor(state.job);
  try {
    let page;
    do {
      page = await call("get_job_logs", {job_id: jobId, skip_lines: state.lines.length,
                                         limit: LOG_PAGE, ...admin});
      if (detailJobId() !== jobId) return;
      appendLines(page.lines);
    } while (page.lines.length && state.lines.length < page.count);
    $("#log-count").textContent = `${state.lines.length} lines`;
  } catch (err) {
    $("#log-count").textContent = err.message;
  }
}

function appendLines(lines) {
  if (!lines.length) return;
  state.lines.push(...lines);
  $("#log-pane").append(...lines.map((l) => el("span", {class: l.is_error ? "log-line err" : "log-line"},
                                               `${l.line}\n`)));
  followLog();
}

function followLog() {
  const pane = $("#log-pane");
  if ($("#log-follow").checked) pane.scrollTop = pane.scrollHeight;
}

// --- lineage ---------------------------------------------------------------------------

async function renderLineage() {
  const job = state.job;
  let family;
  try {
    family = await lineage(job);
  } catch (err) {
    $("#lineage").replaceChildren(el("li", {class: "error"}, err.message));
    return;
  }
  if (detailJobId() !== job.job_id) return;
  $("#lineage").replaceChildren(...family.map(({job: member, role}) => el("li",
    {class: member.job_id === job.job_id ? "current" : null},
    el("span", {class: "role"}, role), " ", jobLink(member.job_id), " ", statusBadge(member.status),
    " ", el("span", {class: "muted"}, when(member.created)))));
}

// --- actions ---------------------------------------------------------------------------

function confirmCancel() {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = `Cancel job ${state.job.job_id} (${appName(state.job)})? ` +
    (state.job.batch_job ? "Every unfinished job of the batch is cancelled too." : "");
  dialog.returnValue = "";
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "yes") return;
    try {
      await call("cancel_job", {job_id: state.job.job_id, ...adminFor(state.job)});
      state.notify(`Cancelled ${state.job.job_id}`);
    } catch (err) {
      state.notify(`Cancel failed: ${err.message}`, true);
    }
    await refreshDetail();
    state.onChange();
  }, {once: true});
  dialog.showModal();
}

async function retry(jobs) {
  try {
    const outcome = await retryJobs(jobs);
    state.notify(retrySummary(outcome), outcome.failed.length > 0);
    if (outcome.retried.length === 1 && jobs.length === 1) {
      location.hash = `job=${outcome.retried[0].retry_id}`;  // the new attempt's detail
      state.onChange();
      return;
    }
  } catch (err) {
    state.notify(`Retry failed: ${err.message}`, true);
  }
  await refreshDetail();
  state.onChange();
}

async function retryFailedChildren() {
  const failed = await failedMembers(state.job);
  if (!failed.length) {
    state.notify("No failed jobs in this batch");
    return;
  }
  await retry(failed);
}

export {retry as retryFromList};
