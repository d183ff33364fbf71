// The job list: sign-in, filters, paging, batch expansion, selection and auto-refresh.
import {
  call, forgetToken, fromCookie, isAdmin, keepToken, loadNarrativeBase, session, storedToken,
  useToken,
} from "./api.js";
import {
  $, $$, ACTIVE, RETRYABLE, appName, duration, el, narrative, readable, shortId, statusBadge,
  timeQueued, timeRunning, when,
} from "./dom.js";
import {describeCounts, summarizeBatches} from "./batch.js";
import {
  closeDetail, detailIsActive, detailJobId, openDetail, refreshDetail, retryFromList, setupDetail,
} from "./detail.js";

const REFRESH_MS = 5000;
const HOUR = 3600 * 1000;
const RANGES = {hour: HOUR, "48h": 48 * HOUR, week: 7 * 24 * HOUR, month: 30 * 24 * HOUR};
// The page's "queued" covers every state before running.
const STATUS_GROUPS = {
  queued: ["created", "estimating", "queued"], running: ["running"], completed: ["completed"],
  error: ["error"], terminated: ["terminated"],
};
const LIST_FIELDS = ["user", "wsid", "status", "updated", "queued", "running", "finished", "job_input",
                     "batch_job", "child_jobs", "batch_id", "retry_parent", "retry_ids", "errormsg"];

const view = {page: 0, total: 0, jobs: [], children: {}, expanded: new Set(), selected: new Map(),
              loading: null};

const readAdmin = () => (isAdmin() ? {as_admin: 1} : {});

function notify(message, isError = false) {
  const notice = $("#notice");
  notice.textContent = message;
  notice.classList.toggle("error", isError);
}

// --- sign-in -----------------------------------------------------------------------------

async function signIn(token) {
  useToken(token);
  const now = Date.now();  // a one-second query names the caller and checks the token
  const probe = await call("check_jobs_date_range_for_user",
                           {start_time: now - 1000, end_time: now, limit: 1, projection: ["status"]});
  session.me = probe.filter.user;
  session.permission = (await call("get_admin_permission")).permission;
  await loadNarrativeBase();
}

function showLogin(message = "") {
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message;
  $("#token-input").focus();
}

function showApp() {
  $("#login").hidden = true;
  $("#app").hidden = false;
  const role = {w: " · admin", r: " · read-only admin"}[session.permission] || "";
  $("#whoami").textContent = `Signed in as ${session.me}${role}`;
  $("#sign-out").hidden = fromCookie();
  $("#admin-filter").hidden = !isAdmin();
  loadList();
  routeHash();
}

async function start() {
  setupFilters();
  setupDetail({onChange: () => loadList(), notify});
  $("#login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = $("#token-input").value.trim();
    try {
      await signIn(token);
    } catch (err) {
      showLogin(`Sign-in failed: ${err.message}`);
      return;
    }
    keepToken(token);
    showApp();
  });
  $("#sign-out").addEventListener("click", () => { forgetToken(); location.hash = ""; location.reload(); });
  window.addEventListener("hashchange", routeHash);
  setInterval(autoRefresh, REFRESH_MS);
  const token = storedToken();
  if (!token) return showLogin();
  try {
    await signIn(token);
  } catch (err) {
    forgetToken();
    return showLogin(`Your token was not accepted: ${err.message}`);
  }
  showApp();
}

function routeHash() {
  const match = /job=([0-9a-f]{24})/.exec(location.hash);
  if (!match) return closeDetail();
  if (match[1] !== detailJobId()) openDetail(match[1], readAdmin());
  markOpenRow();
}

function markOpenRow() {
  const match = /job=([0-9a-f]{24})/.exec(location.hash);
  for (const row of $$("#jobs tbody tr")) row.classList.toggle("open", Boolean(match) && row.dataset.jobId === match[1]);
}

// --- filters ------------------------------------------------------------------------------

function setupFilters() {
  const reload = () => { view.page = 0; loadList(); };
  $("#range").addEventListener("change", () => {
    $("#custom-range").hidden = $("#range").value !== "custom";
    if ($("#range").value === "custom" && !$("#range-from").value) {
      $("#range-to").valueAsDate = new Date();
      $("#range-from").valueAsDate = new Date(Date.now() - 7 * 24 * HOUR);
    }
    reload();
  });
  for (const input of [$("#range-from"), $("#range-to"), $("#page-size"), ...$$("#status-filter input")]) {
    input.addEventListener("change", reload);
  }
  $("#all-users").addEventListener("change", () => {
    $("#user-filter").disabled = !$("#all-users").checked;
    reload();
  });
  $("#user-filter").addEventListener("change", reload);
  $("#filters").addEventListener("submit", (event) => { event.preventDefault(); reload(); });
  $("#refresh").addEventListener("click", () => loadList());
  $("#prev").addEventListener("click", () => { view.page -= 1; loadList(); });
  $("#next").addEventListener("click", () => { view.page += 1; loadList(); });
  $("#select-all").addEventListener("change", () => {
    for (const job of visibleJobs()) toggleSelected(job, $("#select-all").checked);
    render();
  });
  $("#retry-selected").addEventListener("click", async () => {
    const jobs = [...view.selected.values()].filter((job) => RETRYABLE.has(job.status));
    view.selected.clear();
    await retryFromList(jobs);
  });
}

// [start, end] in epoch ms. Custom dates are whole local days, both included.
function timeWindow() {
  const now = Date.now();
  const range = $("#range").value;
  if (range !== "custom") return [now - RANGES[range], now + 1000];
  const day = (input, fallback) => (input.value ? new Date(`${input.value}T00:00`).getTime() : fallback);
  const start = day($("#range-from"), 0);
  const end = day($("#range-to"), now) + 24 * HOUR;
  return [Math.min(start, end), end];
}

function statusFilter() {
  const checked = $$("#status-filter input:checked").map((input) => input.value);
  if (checked.length === 0 || checked.length === Object.keys(STATUS_GROUPS).length) return {};
  return {status: checked.flatMap((name) => STATUS_GROUPS[name])};
}

function listRequest() {
  const [start, end] = timeWindow();
  const size = Number($("#page-size").value);
  const params = {start_time: start, end_time: end, limit: size, offset: view.page * size,
                  ascending: false, projection: LIST_FIELDS,
                  filter: {batch_id: null, ...statusFilter()}};  // batch children show under their batch
  if (!isAdmin() || !$("#all-users").checked) return ["check_jobs_date_range_for_user", params];
  const user = $("#user-filter").value.trim();
  if (user) return ["check_jobs_date_range_for_user", {...params, user, as_admin: 1}];
  return ["check_jobs_date_range_for_all", params];
}

// --- the list -----------------------------------------------------------------------------

async function loadList() {
  const [method, params] = listRequest();
  const request = (view.loading = call(method, params));
  let reply;
  try {
    reply = await request;
  } catch (err) {
    if (view.loading === request) notify(err.message, true);
    return;
  }
  if (view.loading !== request) return;  // a newer request was made meanwhile
  if (method === "check_jobs_date_range_for_all") knownUsers(Object.keys(reply.stats.user || {}));
  try {
    await Promise.all([summarizeBatches(reply.jobs, readAdmin()), ...[...view.expanded].map(loadChildren)]);
  } catch (err) {
    notify(err.message, true);
  }
  if (view.loading !== request) return;
  view.jobs = reply.jobs;
  view.total = reply.query_count;
  render();
}

function knownUsers(users) {
  const list = $("#known-users");
  const known = new Set($$("option", list).map((option) => option.value));
  for (const user of users) if (!known.has(user)) list.append(el("option", {value: user}));
}

async function loadChildren(containerId) {
  try {
    const reply = await call("check_job_batch", {job_id: containerId, ...readAdmin()});
    view.children[containerId] = reply.child_jobstates.filter(readable);
  } catch (err) {
    notify(err.message, true);
  }
}

function visibleJobs() {
  return view.jobs.flatMap((job) => [job, ...(view.expanded.has(job.job_id)
    ? view.children[job.job_id] || [] : [])]);
}

function toggleSelected(job, on) {
  if (on) view.selected.set(job.job_id, job); else view.selected.delete(job.job_id);
}

function render() {
  const showUser = isAdmin() && $("#all-users").checked;
  $("#jobs").classList.toggle("show-user", showUser);
  const rows = view.jobs.flatMap((job) => [row(job, false), ...batchRows(job)]);
  $("#jobs tbody").replaceChildren(...rows);
  $("#empty").hidden = view.jobs.length > 0;
  const size = Number($("#page-size").value);
  const first = view.total ? view.page * size + 1 : 0;
  $("#page-info").textContent = `${first}–${view.page * size + view.jobs.length} of ${view.total}`;
  $("#prev").disabled = view.page === 0;
  $("#next").disabled = (view.page + 1) * size >= view.total;
  const retryable = [...view.selected.values()].filter((job) => RETRYABLE.has(job.status)).length;
  $("#retry-selected").disabled = retryable === 0;
  $("#retry-selected").textContent = retryable ? `Retry selected (${retryable})` : "Retry selected";
  $("#auto-refresh").textContent = anyActive() ? `refreshing every ${REFRESH_MS / 1000} s` : "";
  markOpenRow();
}

function row(job, isChild) {
  const retries = (job.retry_ids || []).length;
  const select = el("input", {type: "checkbox", class: "select", "aria-label": `Select ${job.job_id}`,
                              onclick: (event) => event.stopPropagation(),
                              onchange: (event) => { toggleSelected(job, event.target.checked); render(); }});
  select.checked = view.selected.has(job.job_id);
  return el("tr", {class: isChild ? "child" : null, dataset: {jobId: job.job_id, status: shownStatus(job)},
                   onclick: () => { location.hash = `job=${job.job_id}`; }},
    el("td", {}, select),
    el("td", {class: "id"}, job.batch_job ? expander(job) : null,
       el("a", {href: `#job=${job.job_id}`, class: "job-link", title: job.job_id}, shortId(job.job_id))),
    el("td", {}, narrative(job, session.narrativeBase)),
    el("td", {}, appName(job)),
    el("td", {class: "user-col"}, job.user),
    el("td", {}, when(job.created)),
    ...(job.summary ? batchCells(job.summary) : [
      el("td", {}, duration(timeQueued(job))),
      el("td", {}, duration(timeRunning(job))),
      el("td", {}, statusBadge(job.status),
         retries ? el("span", {class: "tag", title: "retries"}, `↻ ${retries}`) : null,
         job.retry_parent ? el("span", {class: "tag"}, "retry") : null)]));
}

// A container's times and status, derived from its jobs' latest attempts.
function batchCells(summary) {
  return [el("td", {}, duration(summary.queuedMs)), el("td", {}, duration(summary.runningMs)),
          el("td", {title: describeCounts(summary.counts)}, statusBadge(summary.status),
             el("span", {class: "counts"}, describeCounts(summary.counts)))];
}

const shownStatus = (job) => (job.summary ? job.summary.status : job.status);

function expander(job) {
  const open = view.expanded.has(job.job_id);
  const count = (job.child_jobs || []).length;
  return el("button", {type: "button", class: "expander", "aria-expanded": String(open),
                       title: open ? "Hide the batch's jobs" : "Show the batch's jobs",
                       onclick: async (event) => {
                         event.stopPropagation();
                         if (open) view.expanded.delete(job.job_id);
                         else { view.expanded.add(job.job_id); await loadChildren(job.job_id); }
                         render();
                       }}, `${open ? "▾" : "▸"} ${count}`);
}

function batchRows(job) {
  if (!view.expanded.has(job.job_id)) return [];
  return (view.children[job.job_id] || []).map((child) => row(child, true));
}

function anyActive() {
  return visibleJobs().some((job) => ACTIVE.has(shownStatus(job))) || detailIsActive();
}

async function autoRefresh() {
  if ($("#app").hidden || !anyActive() || document.hidden) return;
  await Promise.all([loadList(), refreshDetail()]);
}

start();
