// The HTTP API client of the page: every read and write goes through api(),
// with the API key kept in local storage.

const KEY = 'logbook.apiKey';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const auth = {
  get key() { return localStorage.getItem(KEY) || ''; },
  save(k) { localStorage.setItem(KEY, k); },
  clear() { localStorage.removeItem(KEY); },
};

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

// api calls /api/v1 + path. A 401 with the saved key (revoked, or the
// server's data was reset) signs the user out.
export async function api(path, { method = 'GET', body, key, signal, response } = {}) {
  const headers = { Authorization: 'Bearer ' + (key ?? auth.key) };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch('/api/v1' + path, {
    method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) {
    let code = 'http_' + res.status, msg = res.statusText || ('HTTP ' + res.status);
    try {
      const j = await res.json();
      if (j && j.error) ({ code, message: msg } = j.error);
    } catch { /* not JSON */ }
    const err = new ApiError(res.status, code, msg);
    if (res.status === 401 && key === undefined) onUnauthorized(err);
    throw err;
  }
  if (response) return res;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

export const enc = encodeURIComponent;
export const projectPath = (e, p) => `/projects/${enc(e)}/${enc(p)}`;

// searchRuns asks for one page of runs: params is the API's search syntax
// (URLSearchParams). Answers {runs, total, next}.
export async function searchRuns(e, p, params, signal) {
  const res = await api(`${projectPath(e, p)}/runs?${params}`, { signal, response: true });
  const runs = await res.json();
  return { runs, total: Number(res.headers.get('X-Total-Count') || runs.length), next: res.headers.get('X-Next-Cursor') || '' };
}
