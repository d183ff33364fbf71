// Retry lineage and batch retries, built from check_job / check_jobs / retry_jobs.
import {adminFor, call} from "./api.js";
import {readable} from "./dom.js";

const CHUNK = 500;  // ids per check_jobs call

// JobStates of ids (any number), keyed by id; unreadable or missing ids are left out.
export async function loadJobs(ids, admin = {}) {
  const found = {};
  const unique = [...new Set(ids)];
  for (let i = 0; i < unique.length; i += CHUNK) {
    const part = unique.slice(i, i + CHUNK);
    const reply = await call("check_jobs", {job_ids: part, exclude_fields: ["job_input"], ...admin});
    for (const state of reply.job_states) if (readable(state)) found[state.job_id] = state;
  }
  return found;
}

// The root of job's retry family and every attempt, oldest first: [{job, role}].
export async function lineage(job) {
  const admin = adminFor(job);
  const rootId = job.retry_parent || job.job_id;
  const root = rootId === job.job_id ? job
    : await call("check_job", {job_id: rootId, exclude_fields: ["job_input"], ...admin});
  const retryIds = root.retry_ids || [];
  const attempts = retryIds.length ? await loadJobs(retryIds, admin) : {};
  return [{job: root, role: "original"},
          ...retryIds.map((id, i) => ({job: attempts[id] || {job_id: id, status: "unknown"},
                                       role: `retry ${i + 1}`}))];
}

// retry_jobs over jobs; admins pass as_admin when any job is someone else's.
// Resolves to {retried: [{job_id, retry_id}], failed: [{job_id, error}]}.
export async function retryJobs(jobs) {
  const admin = jobs.some((job) => adminFor(job).as_admin) ? {as_admin: 1} : {};
  const results = await call("retry_jobs", {job_ids: jobs.map((job) => job.job_id), ...admin});
  return {retried: results.filter((r) => r.retry_id), failed: results.filter((r) => r.error)};
}

export function retrySummary({retried, failed}) {
  const parts = [`${retried.length} retried`];
  if (failed.length) parts.push(`${failed.length} refused: ${failed[0].error}`);
  return parts.join("; ");
}
