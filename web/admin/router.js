// Navigation: the hash names the tab (and the open conversation); the tab's view loads on
// first showing.

import { loadActions } from './actions.js';
import { hideError } from './api.js';
import { API_REFERENCE, TABS } from './config.js';
import { closeDetail, openDetail } from './conversation.js';
import { loadList } from './conversations.js';
import { byId } from './dom.js';
import { t } from './i18n.js';
import { loadEvals } from './evals.js';
import { loadDrafts } from './drafts.js';
import { loadDocuments } from './knowledge.js';
import { loadMetrics } from './metrics.js';
import { navigate } from './nav.js';
import { els, state } from './state.js';

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  let tab = parts[0] || 'conversations';
  if (!TABS.includes(tab)) tab = 'conversations';
  let id = null;
  if (tab === 'conversations' && parts[1]) {
    try {
      id = decodeURIComponent(parts[1]);
    } catch (error) {
      id = null;
    }
  }
  return { tab, id };
}

function selectTab(tab) {
  for (const button of els.tabs) {
    const selected = button.dataset.tab === tab;
    button.setAttribute('aria-selected', selected ? 'true' : 'false');
    button.tabIndex = selected ? 0 : -1;
  }
  for (const name of TABS) byId(`panel-${name}`).hidden = name !== tab;
}

export function onRoute() {
  if (!state.token) return;
  const previous = state.route;
  const route = parseRoute();
  // An error belongs to the view it happened in.
  if (previous.tab !== route.tab || previous.id !== route.id) hideError();
  state.route = route;
  selectTab(route.tab);
  document.title = `${t(`tab${route.tab[0].toUpperCase()}${route.tab.slice(1)}`)} · ${t('docTitle')}`;
  if (route.tab !== 'conversations' || !route.id) closeDetail(previous.tab === 'conversations' && route.tab === 'conversations');
  switch (route.tab) {
    case 'conversations':
      if (!state.list.loaded) loadList('reset');
      if (route.id) openDetail(route.id);
      break;
    case 'actions':
      if (!state.actions.loaded) loadActions();
      break;
    case 'knowledge':
      if (!state.knowledge.loaded) {
        loadDocuments();
        loadDrafts();
      }
      break;
    case 'metrics':
      if (!state.metrics.loaded) loadMetrics();
      break;
    case 'evals':
      if (!state.evals.loaded) loadEvals();
      break;
    case 'api':
      // The reference page is large: it loads when the tab is first shown.
      if (!els.apiFrame.getAttribute('src')) els.apiFrame.src = API_REFERENCE;
      break;
    default:
      break;
  }
}

export function onTabKeydown(event) {
  const index = els.tabs.indexOf(event.target);
  if (index < 0) return;
  let next = null;
  if (event.key === 'ArrowRight') next = (index + 1) % els.tabs.length;
  else if (event.key === 'ArrowLeft') next = (index - 1 + els.tabs.length) % els.tabs.length;
  else if (event.key === 'Home') next = 0;
  else if (event.key === 'End') next = els.tabs.length - 1;
  if (next === null) return;
  event.preventDefault();
  els.tabs[next].focus();
  navigate(`#/${els.tabs[next].dataset.tab}`);
}
