// Batch containers: their members' latest attempts and a status derived from them
// (a container's stored status stays "created"; clients derive it, as KBase's do).
import {adminFor} from "./api.js";
import {ACTIVE, RETRYABLE} from "./dom.js";
import {loadJobs} from "./retry.js";

// The latest attempt of each member: retries of a child join child_jobs, so keep
// the newest job of each retry family (job ids grow with creation time).
export function latestAttempts(states) {
  const latest = {};
  for (const job of Object.values(states)) {
    const root = job.retry_parent || job.job_id;
    if (!latest[root] || job.job_id > latest[root].job_id) latest[root] = job;
  }
  return Object.values(latest);
}

// The members' latest attempts that ended in error or terminated.
export async function failedMembers(container) {
  const admin = adminFor(container);
  const children = await loadJobs(container.child_jobs || [], admin);
  const missing = Object.values(children).flatMap((c) => c.retry_ids || []).filter((id) => !(id in children));
  Object.assign(children, missing.length ? await loadJobs(missing, admin) : {});
  return latestAttempts(children).filter((job) => RETRYABLE.has(job.status));
}

const ORDER = ["running", "queued", "error", "terminated", "completed"];

// {status, counts: {status: n}, queuedMs, runningMs} of a container from its members.
export function summarize(container, members, now = Date.now()) {
  const counts = {};
  for (const job of members) {
    const status = ACTIVE.has(job.status) && job.status !== "running" ? "queued" : job.status;
    counts[status] = (counts[status] || 0) + 1;
  }
  const status = members.length ? ORDER.find((name) => counts[name]) : "queued";
  const starts = members.map((job) => job.running).filter(Boolean);
  const ends = members.map((job) => job.finished).filter(Boolean);
  const firstStart = starts.length ? Math.min(...starts) : null;
  const stillGoing = members.some((job) => ACTIVE.has(job.status));
  const queuedMs = firstStart ? firstStart - container.created
    : (stillGoing || !members.length ? now - container.created : null);
  const runningMs = firstStart ? (stillGoing ? now : Math.max(firstStart, ...ends)) - firstStart : null;
  return {status, counts, queuedMs, runningMs};
}

// Sets ``summary`` on every container in jobs, with one check_jobs pass for all of them.
export async function summarizeBatches(jobs, admin) {
  const containers = jobs.filter((job) => job.batch_job);
  if (!containers.length) return;
  const states = await loadJobs(containers.flatMap((job) => job.child_jobs || []), admin);
  for (const container of containers) {
    const members = (container.child_jobs || []).filter((id) => id in states).map((id) => states[id]);
    container.summary = summarize(container, latestAttempts(members));
  }
}

// A container's JobState with its ``summary``.
export async function summarized(container, admin) {
  await summarizeBatches([container], admin);
  return container;
}

export function describeCounts(counts) {
  return ORDER.filter((name) => counts[name]).map((name) => `${counts[name]} ${name}`).join(" · ");
}
