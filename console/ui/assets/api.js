// HTTP client of the console API (/api/v1). Every call is same-origin with the
// session cookie; errors carry the API's {error:{code,message}} body.

/** An error answer of the API (or a network failure, status 0). */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }

  /** A one-line explanation for people, with the status. */
  describe() {
    if (this.status === 0) return `Cannot reach the collector: ${this.message}`;
    if (this.status === 404) return this.message === 'not found' ? 'Not found (404)' : `Not found (404): ${this.message}`;
    if (this.status === 403) return `Forbidden (403): ${this.message}`;
    return `${this.message} (${this.status})`;
  }
}

let onUnauthenticated = () => {};

/** Registers what happens when the session has ended (401 on a call that needs one). */
export function setUnauthenticatedHandler(fn) {
  onUnauthenticated = fn;
}

async function request(method, path, body, { auth = true, raw = false } = {}) {
  const init = { method, credentials: 'same-origin', headers: { accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(`/api/v1${path}`, init);
  } catch (e) {
    throw new ApiError(0, 'network', e.message || String(e));
  }
  if (!resp.ok) {
    let code = 'http_' + resp.status;
    let message = resp.statusText || 'request failed';
    try {
      const j = await resp.json();
      if (j && j.error) {
        code = j.error.code || code;
        message = j.error.message || message;
      }
    } catch {
      // Not JSON (a proxy page, say): keep the status text.
    }
    const retry = Number(resp.headers.get('retry-after')) || undefined;
    const err = new ApiError(resp.status, code, message, retry);
    if (resp.status === 401 && auth) onUnauthenticated(err);
    throw err;
  }
  if (raw) return resp;
  if (resp.status === 204) return null;
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}

const enc = encodeURIComponent;

/** Query string from an object, skipping empty values. */
export function qs(params) {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${enc(k)}=${enc(v)}`);
  return parts.length ? `?${parts.join('&')}` : '';
}

export const api = {
  login: (email, password) => request('POST', '/login', { email, password }, { auth: false }),
  logout: () => request('POST', '/logout', undefined, { auth: false }),
  me: () => request('GET', '/me', undefined, { auth: false }),
  openapi: () => request('GET', '/openapi.json', undefined, { auth: false }),
};

/** Calls scoped to one tenant. */
export function tenantApi(tenant) {
  const t = (p) => `/tenants/${enc(tenant)}${p}`;
  return {
    tenant,
    get: (p) => request('GET', t(p)),
    post: (p, body) => request('POST', t(p), body),
    put: (p, body) => request('PUT', t(p), body),
    patch: (p, body) => request('PATCH', t(p), body),
    del: (p) => request('DELETE', t(p)),
    /** URL for a browser download (same-origin GET with the session cookie). */
    url: (p) => `/api/v1${t(p)}`,
  };
}
