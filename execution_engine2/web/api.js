// The service's JSON-RPC API as seen from the page, and the caller's token.
// The page lives at <service>/jobs/, so the service URL is the page URL without "jobs/".

const SESSION_KEY = "ee2_token";
export const SERVICE_URL = new URL(".", location.href).href.replace(/jobs\/$/, "");

export class RpcError extends Error {
  constructor(error) {
    super(error.message || String(error));
    this.code = error.code;
    this.name = error.name || "RpcError";
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return null;
}

// A token entered in this tab (it was entered because the cookie was absent or
// refused), else KBase's session cookie.
export function storedToken() {
  return sessionStorage.getItem(SESSION_KEY) || cookie("kbase_session");
}

// Whether the token in use came from the KBase session (signing out is KBase's business).
export const fromCookie = () => !sessionStorage.getItem(SESSION_KEY) && Boolean(cookie("kbase_session"));

export function keepToken(token) {
  sessionStorage.setItem(SESSION_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(SESSION_KEY);
}

let token = null;
let nextId = 1;

export function useToken(value) {
  token = value;
}

// Calls execution_engine2.<method> with one params object; resolves to the result
// (the first element of the JSON-RPC 1.1 result list) or rejects with an RpcError.
export async function call(method, params) {
  const body = {version: "1.1", id: String(nextId++), method: `execution_engine2.${method}`,
                params: params === undefined ? [] : [params]};
  const response = await fetch(SERVICE_URL, {
    method: "POST",
    headers: {"Content-Type": "application/json", ...(token ? {Authorization: token} : {})},
    body: JSON.stringify(body),
  });
  let reply;
  try {
    reply = await response.json();
  } catch (err) {
    throw new RpcError({message: `The service answered HTTP ${response.status} without JSON`});
  }
  if (reply.error) throw new RpcError(reply.error);
  return Array.isArray(reply.result) ? reply.result[0] : reply.result;
}

// Who is signed in: the user name and the admin permission ("n", "r" read, "w" full).
export const session = {me: null, permission: "n", narrativeBase: null};

export const isAdmin = () => session.permission !== "n";

// {as_admin: 1} when an admin acts on someone else's job; {} otherwise.
export function adminFor(job) {
  return isAdmin() && job && job.user && job.user !== session.me ? {as_admin: 1} : {};
}

// <kbase-endpoint without /services>/narrative/ when the service names a KBase
// deployment (list_config's kbase-endpoint); null standalone.
export async function loadNarrativeBase() {
  const endpoint = (await call("list_config"))["kbase-endpoint"];
  session.narrativeBase = endpoint ? `${endpoint.replace(/\/services\/?$/, "").replace(/\/$/, "")}/narrative/` : null;
}
