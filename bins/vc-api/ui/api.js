// The REST client of the dashboard: the public API only, authenticated by the session cookie, with the
// session's CSRF token on every write.

let csrfToken = null;
let onUnauthorized = () => {};

/** An answer of the API that is not a success: status, code and the API's message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Called when a request answers 401 (the session ended): the app shows the login page. */
export function setUnauthorizedHandler(f) {
  onUnauthorized = f;
}

const WRITE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** One request; resolves with the JSON body (null for 204), rejects with ApiError. */
export async function request(method, path, body, opts = {}) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (WRITE.has(method) && csrfToken) headers["x-csrf-token"] = csrfToken;
  if (opts.fresh) headers["cache-control"] = "no-cache";
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      signal: opts.signal,
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "NETWORK", `the control plane did not answer (${e.message})`);
  }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (res.status === 401 && !opts.login) {
    csrfToken = null;
    onUnauthorized();
  }
  if (!res.ok) {
    throw new ApiError(res.status, data?.code || "ERROR", data?.error || `${res.status} ${res.statusText}`);
  }
  if (res.status === 202 && data?.statusUrl) return settle(data);
  return data;
}

// A write the worker did not finish within the API's wait: follow its status for up to 30 s.
async function settle(pending) {
  const until = Date.now() + 30000;
  while (Date.now() < until) {
    await new Promise((r) => setTimeout(r, 500));
    const st = await request("GET", pending.statusUrl);
    if (st.status === "succeeded") return st.result ?? {};
    if (st.status === "failed") {
      const code = st.error?.code || "BAD_REQUEST";
      const status = { CONFLICT: 409, NOT_FOUND: 404, FORBIDDEN: 403 }[code] || 400;
      throw new ApiError(status, code, st.error?.message || "the command failed");
    }
  }
  throw new ApiError(202, "PENDING", `still pending: see ${pending.statusUrl}`);
}

export const get = (path, opts) => request("GET", path, undefined, opts);
export const post = (path, body) => request("POST", path, body ?? {});
export const put = (path, body) => request("PUT", path, body);
export const patch = (path, body) => request("PATCH", path, body);
export const del = (path) => request("DELETE", path);

/** The current session, or null when there is none. */
export async function currentSession() {
  try {
    const r = await request("GET", "/api/session", undefined, { login: true });
    csrfToken = r.session ? r.session.csrfToken : null;
    return r.session;
  } catch (e) {
    if (e.status === 401) return null;
    throw e;
  }
}

export async function login(token) {
  const r = await request("POST", "/api/session", { token }, { login: true });
  csrfToken = r.session.csrfToken;
  return r.session;
}

export async function logout() {
  try {
    await request("DELETE", "/api/session", undefined, { login: true });
  } finally {
    csrfToken = null;
  }
}

/** A path with query parameters (empty values left out). */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** Every item of a paged list (`key` names the array) with `params`, following `next`, up to `max` items. */
export async function all(path, key, params = {}, max = 10000) {
  const out = [];
  let cursor = null;
  do {
    const page = await get(withQuery(path, { ...params, limit: 1000, cursor }));
    out.push(...page[key]);
    cursor = page.next;
  } while (cursor && out.length < max);
  return out;
}

export const enc = encodeURIComponent;
