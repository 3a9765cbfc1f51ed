// api.js: fetch wrapper for the JSON API. Uses the HttpOnly session cookie, turns error
// bodies into ApiError, and drives the "server unreachable" banner.
import { $ } from './dom.js';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export function setReachable(ok) {
  const b = $('#offline-banner');
  if (b) b.hidden = ok;
}

export async function api(path, { method = 'GET', body, query } = {}) {
  let url = '/api/' + path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v != null && v !== '') q.set(k, v);
    const qs = q.toString();
    if (qs) url += '?' + qs;
  }
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch (e) {
    setReachable(false);
    throw new ApiError(0, 'Cannot reach the server');
  }
  setReachable(true);
  if (res.status === 204) return {};
  let data = {};
  try {
    data = await res.json();
  } catch (e) {
    data = {};
  }
  if (!res.ok) {
    let msg = (data && data.error) || `Request failed (${res.status})`;
    const retry = res.headers.get('Retry-After');
    if (res.status === 429 && retry) msg += ` (try again in ${retry} s)`;
    if (res.status === 401 && path !== 'login/') onUnauthorized();
    throw new ApiError(res.status, msg);
  }
  return data;
}
