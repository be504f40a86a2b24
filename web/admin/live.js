// Live updates: the admin event stream (Server-Sent Events) says which conversation changed;
// the views reload what they show. When the stream keeps failing, a timer reloads instead.

import { loadRuns } from './actions.js';
import { api } from './api.js';
import {
  API,
  DETAIL_DEBOUNCE_MS,
  LIST_DEBOUNCE_MS,
  LIVE_FAILURES_BEFORE_POLLING,
  LIVE_RETRY_BASE_MS,
  LIVE_RETRY_MAX_MS,
  POLL_FALLBACK_MS,
  RUNS_DEBOUNCE_MS,
} from './config.js';
import { loadDetail } from './conversation.js';
import { loadList } from './conversations.js';
import { t } from './i18n.js';
import { els, later, state } from './state.js';

export function setLive(status) {
  els.live.dataset.state = status;
  const text = {
    live: t('liveOn'),
    connecting: t('liveConnecting'),
    polling: t('livePolling'),
    offline: t('liveOffline'),
  }[status];
  els.liveText.textContent = text;
  els.live.title = status === 'live' ? t('liveOnTitle') : t('liveOffTitle');
}

// The feed's URL carries a short-lived stream token, never the admin credential: URLs end
// up in access logs. A fresh token is taken for every connection.
export async function connectLive() {
  const live = state.live;
  clearTimeout(live.retryTimer);
  live.retryTimer = null;
  if (live.source) live.source.close();
  live.source = null;
  const gen = ++live.gen;
  if (!state.token) return;
  if (typeof EventSource === 'undefined') {
    startPolling();
    return;
  }
  setLive(live.pollTimer ? 'polling' : 'connecting');
  let issued = null;
  try {
    issued = await api('POST', '/admin/events/token/');
  } catch (error) {
    issued = null;
  }
  // Signed out, or connected again, while the token was on its way.
  if (gen !== live.gen) return;
  if (!issued || typeof issued.token !== 'string') {
    live.failures += 1;
    live.hadError = true;
    if (live.failures >= LIVE_FAILURES_BEFORE_POLLING) startPolling();
    retryLiveLater();
    return;
  }
  const source = new EventSource(`${API}/admin/events/?token=${encodeURIComponent(issued.token)}`);
  live.source = source;
  source.addEventListener('open', () => {
    if (live.source !== source) return;
    const recovering = live.hadError;
    live.failures = 0;
    live.retries = 0;
    live.hadError = false;
    stopPolling();
    setLive('live');
    // Whatever happened while the stream was down is only in the database.
    if (recovering) refreshVisible();
  });
  source.addEventListener('activity', (event) => {
    if (live.source === source) onActivity(event);
  });
  source.addEventListener('lagged', () => {
    if (live.source === source) refreshVisible();
  });
  // The feed's token expired and the server is ending the stream: connect again with a new
  // one, and reload what may have changed in between.
  source.addEventListener('expired', () => {
    if (live.source !== source) return;
    source.close();
    live.source = null;
    live.hadError = true;
    connectLive();
  });
  source.addEventListener('error', () => {
    if (live.source !== source) return;
    live.failures += 1;
    live.hadError = true;
    if (live.failures >= LIVE_FAILURES_BEFORE_POLLING) startPolling();
    else setLive('connecting');
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (an error status such as an expired stream token, not a dropped
      // connection): try again later with a new token, whose request checks the sign-in.
      source.close();
      live.source = null;
      retryLiveLater();
    }
  });
}

function retryLiveLater() {
  const live = state.live;
  const delay = Math.min(LIVE_RETRY_MAX_MS, LIVE_RETRY_BASE_MS * 2 ** live.retries);
  live.retries += 1;
  live.retryTimer = setTimeout(connectLive, delay);
}

export function stopLive() {
  const live = state.live;
  live.gen += 1;
  if (live.source) live.source.close();
  live.source = null;
  clearTimeout(live.retryTimer);
  live.retryTimer = null;
  live.failures = 0;
  live.retries = 0;
  live.hadError = false;
  stopPolling();
  setLive('offline');
}

function startPolling() {
  const live = state.live;
  setLive('polling');
  if (live.pollTimer) return;
  live.pollTimer = setInterval(() => {
    if (!document.hidden) refreshVisible();
  }, POLL_FALLBACK_MS);
}

function stopPolling() {
  const live = state.live;
  if (live.pollTimer) clearInterval(live.pollTimer);
  live.pollTimer = null;
}

function onActivity(event) {
  let data = null;
  try {
    data = JSON.parse(event.data);
  } catch (error) {
    return;
  }
  if (!data || typeof data !== 'object') return;
  if (state.list.loaded) later('list', LIST_DEBOUNCE_MS, () => loadList('refresh'));
  const detail = state.detail;
  if (detail.id && data.conversation_id === detail.id) {
    const known = detail.data ? Number(detail.data.last_seq) : -1;
    if (!(Number(data.seq) <= known)) later('detail', DETAIL_DEBOUNCE_MS, () => loadDetail());
  }
  if (state.route.tab === 'actions' && state.actions.loaded) later('runs', RUNS_DEBOUNCE_MS, () => loadRuns());
}

/** Reload what the operator is looking at (after a gap in the live feed). */
function refreshVisible() {
  if (!state.token) return;
  if (state.list.loaded) later('list', 0, () => loadList('refresh'));
  if (state.detail.id) later('detail', 0, () => loadDetail());
  if (state.route.tab === 'actions' && state.actions.loaded) later('runs', 0, () => loadRuns());
}
