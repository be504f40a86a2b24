// The console's entry point (loaded by index.html as a module): collect the page's elements,
// bind their events, then resume the stored session or ask for a token.

import { loadDefinitions, loadRuns } from './actions.js';
import { hideError, onAuthRejected } from './api.js';
import { METRICS_DEFAULT_DAYS, METRICS_PRESETS } from './config.js';
import { loadList } from './conversations.js';
import { byId, h } from './dom.js';
import { loadDrafts } from './drafts.js';
import { loadEvals } from './evals.js';
import { applyStrings, LANG, t } from './i18n.js';
import { loadDocuments, searchKnowledge, startReindex } from './knowledge.js';
import { setLive } from './live.js';
import { loadMetrics, recomputeMetrics, setMetricsRange } from './metrics.js';
import { navigate } from './nav.js';
import { onRoute, onTabKeydown } from './router.js';
import {
  onSignInSubmit,
  requireSignIn,
  resumeSession,
  signOut,
  takeTokenFromUrl,
} from './session.js';
import { els, resetState, state } from './state.js';

function collectElements() {
  Object.assign(els, {
    app: byId('app'),
    signinView: byId('signin-view'),
    signinForm: byId('signin-form'),
    signinToken: byId('signin-token'),
    signinError: byId('signin-error'),
    tabs: Array.from(document.querySelectorAll('#tabs [role="tab"]')),
    tablist: byId('tabs'),
    live: byId('live'),
    liveText: byId('live-text'),
    signOut: byId('sign-out'),
    banner: byId('banner'),
    bannerText: byId('banner-text'),
    bannerClose: byId('banner-close'),
    listView: byId('conv-list-view'),
    tgAlerts: byId('tg-alerts'),
    detailView: byId('conv-detail-view'),
    filters: byId('conv-filters'),
    fMode: byId('f-mode'),
    fStatus: byId('f-status'),
    fRating: byId('f-rating'),
    fFrom: byId('f-from'),
    fTo: byId('f-to'),
    convRefresh: byId('conv-refresh'),
    convRows: byId('conv-rows'),
    convMore: byId('conv-more'),
    convCount: byId('conv-count'),
    actionsRows: byId('actions-rows'),
    actionsRefresh: byId('actions-refresh'),
    runsRows: byId('runs-rows'),
    runsFilter: byId('runs-filter'),
    runsRefresh: byId('runs-refresh'),
    docsRows: byId('docs-rows'),
    docsCount: byId('docs-count'),
    docsRefresh: byId('docs-refresh'),
    reindex: byId('reindex'),
    reindexBox: byId('reindex-box'),
    kbSearch: byId('kb-search'),
    kbQuery: byId('kb-q'),
    kbResults: byId('kb-results'),
    draftsList: byId('drafts-list'),
    draftsCount: byId('drafts-count'),
    draftsFilter: byId('drafts-filter'),
    draftsRefresh: byId('drafts-refresh'),
    metricsForm: byId('metrics-form'),
    mFrom: byId('m-from'),
    mTo: byId('m-to'),
    mPresets: byId('m-presets'),
    mRecompute: byId('m-recompute'),
    mStatus: byId('m-status'),
    mCards: byId('m-cards'),
    mMissing: byId('m-missing'),
    mActions: byId('m-actions'),
    chartOutcomes: byId('chart-outcomes'),
    chartRating: byId('chart-rating'),
    chartReply: byId('chart-reply'),
    evalsRows: byId('evals-rows'),
    evalsRefresh: byId('evals-refresh'),
    apiFrame: byId('api-frame'),
  });
}

function bindEvents() {
  els.signinForm.addEventListener('submit', onSignInSubmit);
  els.signOut.addEventListener('click', signOut);
  els.bannerClose.addEventListener('click', hideError);
  for (const tab of els.tabs) tab.addEventListener('click', () => navigate(`#/${tab.dataset.tab}`));
  els.tablist.addEventListener('keydown', onTabKeydown);
  window.addEventListener('hashchange', onRoute);

  els.filters.addEventListener('change', () => loadList('reset'));
  els.filters.addEventListener('submit', (event) => {
    event.preventDefault();
    loadList('reset');
  });
  // The form's own reset clears the controls; the list follows once it has.
  els.filters.addEventListener('reset', () => setTimeout(() => loadList('reset'), 0));
  els.convRefresh.addEventListener('click', () => loadList(state.list.items.length ? 'refresh' : 'reset'));
  els.convMore.addEventListener('click', () => loadList('more'));

  els.actionsRefresh.addEventListener('click', loadDefinitions);
  els.runsRefresh.addEventListener('click', loadRuns);
  els.runsFilter.addEventListener('change', () => {
    state.actions.runs = [];
    loadRuns();
  });

  els.docsRefresh.addEventListener('click', loadDocuments);
  els.reindex.addEventListener('click', startReindex);
  els.kbSearch.addEventListener('submit', searchKnowledge);
  els.draftsRefresh.addEventListener('click', loadDrafts);
  els.draftsFilter.addEventListener('change', () => {
    state.knowledge.drafts = [];
    loadDrafts();
  });

  els.metricsForm.addEventListener('submit', (event) => {
    event.preventDefault();
    loadMetrics();
  });
  els.mRecompute.addEventListener('click', recomputeMetrics);
  els.evalsRefresh.addEventListener('click', loadEvals);
  for (const days of METRICS_PRESETS) {
    els.mPresets.appendChild(h('button', {
      type: 'button',
      class: 'btn ghost small',
      onclick: () => {
        setMetricsRange(days);
        loadMetrics();
      },
    }, t('presetDays', { n: days })));
  }
}

function boot() {
  document.documentElement.lang = LANG;
  document.title = t('docTitle');
  applyStrings(document);
  collectElements();
  resetState();
  setMetricsRange(METRICS_DEFAULT_DAYS);
  setLive('offline');
  bindEvents();
  onAuthRejected(requireSignIn);
  takeTokenFromUrl();
  resumeSession();
}

boot();
