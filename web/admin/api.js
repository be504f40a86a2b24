// The API client: one `api()` call per request, bearer token, timeout, the stable error body
// turned into an ApiError; and the banner that shows failed calls.

import { API, REQUEST_TIMEOUT_MS } from './config.js';
import { t } from './i18n.js';
import { els, state } from './state.js';

class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field || null;
    this.auth = false;
  }
}

function queryString(query) {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === null || value === undefined || value === '') continue;
    params.append(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** One call to the Concierge API. Resolves with the parsed body; rejects with an ApiError. */
export async function api(method, path, options) {
  const { query, body } = options || {};
  const token = state.token;
  if (!token) {
    const error = new ApiError(401, 'unauthorized', t('tokenRejected'));
    error.auth = true;
    throw error;
  }
  const headers = { Accept: 'application/json' };
  headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, cache: 'no-store', credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const controller = new AbortController();
  init.signal = controller.signal;
  const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  let response;
  let text = '';
  try {
    response = await fetch(API + path + queryString(query), init);
    text = await response.text();
  } catch (error) {
    const timedOut = controller.signal.aborted;
    throw new ApiError(0, timedOut ? 'timeout' : 'network', t(timedOut ? 'errTimeout' : 'errNetwork'));
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (error) {
      data = null;
    }
  }
  if (!response.ok) {
    const detail = data && data.error && typeof data.error === 'object' ? data.error : {};
    const message = typeof detail.message === 'string' && detail.message ? detail.message : t('errHttp', { status: response.status });
    const error = new ApiError(response.status, detail.code || `http_${response.status}`, message, detail.field);
    if (response.status === 401 || response.status === 403) {
      error.auth = true;
      // A late answer to a token that is no longer in use says nothing about the current one.
      if (token === state.token) authRejected(message);
    }
    throw error;
  }
  if (bannerUnreachable) hideError();
  return data;
}

/** Upload one file as a form's `file` part; resolves with the stored file, rejects with an ApiError. */
export async function upload(path, file) {
  const token = state.token;
  const form = new FormData();
  form.append('file', file, file.name);
  let response;
  let data = null;
  try {
    response = await fetch(API + path, {
      method: 'POST',
      headers: { Accept: 'application/json', Authorization: `Bearer ${token}` },
      body: form,
      cache: 'no-store',
      credentials: 'same-origin',
    });
    data = await response.json().catch(() => null);
  } catch (error) {
    throw new ApiError(0, 'network', t('errNetwork'));
  }
  if (!response.ok) {
    const detail = data && data.error && typeof data.error === 'object' ? data.error : {};
    const message = typeof detail.message === 'string' && detail.message ? detail.message : t('errHttp', { status: response.status });
    throw new ApiError(response.status, detail.code || `http_${response.status}`, message, detail.field);
  }
  return data;
}

/** Show a failed call in the banner; authentication failures have the sign-in box instead. */
export function report(error) {
  if (!error || error.auth) return;
  if (error instanceof ApiError) {
    const unreachable = error.code === 'network' || error.code === 'timeout';
    showError(error.field ? t('errField', { message: error.message, field: error.field }) : error.message, unreachable);
  } else {
    showError(error.message || String(error), false);
  }
}

// Whether the banner says the server could not be reached (cleared once it answers again).
let bannerUnreachable = false;

// What to do when the server refuses the token (set by the session).
let authRejected = () => {};

/** Call `handler(message)` whenever the server refuses the current token. */
export function onAuthRejected(handler) {
  authRejected = handler;
}

export function showError(message, unreachable) {
  bannerUnreachable = !!unreachable;
  els.bannerText.textContent = message;
  els.banner.hidden = false;
}

export function hideError() {
  bannerUnreachable = false;
  els.banner.hidden = true;
  els.bannerText.textContent = '';
}
