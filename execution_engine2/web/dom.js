// Small DOM and formatting helpers. Text always goes in as text nodes, never as HTML.

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

// el("a", {href: "#x", class: "y", onclick: fn}, "text", child, ...)
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const ACTIVE = new Set(["created", "queued", "estimating", "running"]);
export const RETRYABLE = new Set(["error", "terminated"]);

// A JobState, not the {job_id, error} entry of a job the caller may not read
// (a failed job's JobState has an "error" field too, so look for its status).
export const readable = (state) => typeof state.status === "string";

export function statusBadge(status) {
  return el("span", {class: `status status-${status}`}, status);
}

const pad = (n) => String(n).padStart(2, "0");

export function when(ms) {
  if (!ms) return "—";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
         `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function duration(ms) {
  if (ms === null || ms === undefined || ms < 0) return "—";
  let s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  return `${m}m ${s}s`;
}

// Time from submission until the job started running (or until now / its end).
export function timeQueued(job, now = Date.now()) {
  const start = job.created;
  const end = job.running || job.finished || (ACTIVE.has(job.status) ? now : null);
  return end ? end - start : null;
}

export function timeRunning(job, now = Date.now()) {
  if (!job.running) return null;
  return (job.finished || (ACTIVE.has(job.status) ? now : job.updated)) - job.running;
}

// The job's narrative: a link to it in a KBase deployment, else the workspace id.
export function narrative(job, base) {
  if (!job.wsid) return "—";
  const label = `workspace ${job.wsid}`;
  return base ? el("a", {href: `${base}${job.wsid}`, target: "_blank", rel: "noopener",
                         onclick: (event) => event.stopPropagation()}, label) : label;
}

export function appName(job) {
  const input = job.job_input || {};
  if (job.batch_job) return "batch";
  return input.app_id || input.method || "—";
}

export function shortId(id) {
  return id ? `${id.slice(0, 6)}…${id.slice(-4)}` : "";
}

export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], {type}));
  const link = el("a", {href: url, download: name});
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function pretty(value) {
  return JSON.stringify(value, null, 2);
}
