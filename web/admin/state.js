// What the console holds while signed in: one object per view, each with a generation counter
// so that a late answer to a superseded request is dropped; keyed debounce timers; and `els`,
// the page's fixed elements (collected once at start-up by main.js).

export const state = {
  token: null,
  route: { tab: 'conversations', id: null },
  timers: new Map(),
  list: null,
  detail: null,
  actions: null,
  knowledge: null,
  metrics: null,
  evals: null,
  live: { source: null, failures: 0, pollTimer: null, retryTimer: null, retries: 0, hadError: false, gen: 0 },
};

export function resetState() {
  state.list = { items: [], next: null, gen: 0, loaded: false, error: null, seen: new Map() };
  state.detail = { id: null, data: null, gen: 0, busy: new Set(), els: null };
  state.actions = { defs: [], runs: [], loaded: false, defsGen: 0, runsGen: 0, pending: new Set() };
  state.knowledge = { docs: [], loaded: false, gen: 0, runId: null, pollFailures: 0, searchGen: 0, drafts: [], draftsGen: 0 };
  state.metrics = { data: null, loaded: false, gen: 0 };
  state.evals = { entries: [], loaded: false, gen: 0 };
}

/** Run `fn` once, `ms` after the latest call with the same key. */
export function later(key, ms, fn) {
  clearTimeout(state.timers.get(key));
  state.timers.set(key, setTimeout(() => {
    state.timers.delete(key);
    fn();
  }, ms));
}

export function cancel(key) {
  clearTimeout(state.timers.get(key));
  state.timers.delete(key);
}

export function cancelAll() {
  for (const timer of state.timers.values()) clearTimeout(timer);
  state.timers.clear();
}

export const els = {};
