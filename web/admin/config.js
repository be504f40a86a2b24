// The console's fixed settings: where the API is, page sizes, timings and chart colours.

export const API = '/api/concierge';
/** The API reference page (Scalar over the OpenAPI document), opened in the API tab. */
export const API_REFERENCE = '/admin/api';
export const TOKEN_KEY = 'concierge.admin.token';
export const LANG_KEY = 'concierge.admin.lang';
export const DEFAULT_LANG = 'ru';

export const TABS = ['conversations', 'actions', 'knowledge', 'metrics', 'evals', 'api'];

export const PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 200;
export const RUNS_LIMIT = 100;
export const EVALS_LIMIT = 100;
export const SEARCH_LIMIT = 10;
export const REQUEST_TIMEOUT_MS = 20000;
export const TYPING_EVERY_MS = 3000;
export const LIST_DEBOUNCE_MS = 500;
export const DETAIL_DEBOUNCE_MS = 250;
export const RUNS_DEBOUNCE_MS = 1000;
export const POLL_FALLBACK_MS = 10000;
export const LIVE_FAILURES_BEFORE_POLLING = 3;
export const LIVE_RETRY_BASE_MS = 2000;
export const LIVE_RETRY_MAX_MS = 60000;
export const REINDEX_POLL_MS = 1000;
export const REINDEX_POLL_MAX_FAILURES = 5;
export const DRAFTS_LIMIT = 50;
export const DRAFT_POLL_MS = 1000;
export const DRAFT_POLL_MAX_TRIES = 60;
export const METRICS_RELOAD_DELAY_MS = 2500;
export const METRICS_DEFAULT_DAYS = 14;
export const METRICS_PRESETS = [7, 14, 30, 90];
export const NEAR_BOTTOM_PX = 80;

export const COLORS = {
  ai: '#4f46e5',
  escalated: '#f59e0b',
  unresolved: '#e11d48',
  rating: '#059669',
  p50: '#a5b4fc',
  p90: '#4f46e5',
};
