// The session: the admin token (from the sign-in form, `?token=` or sessionStorage), signing in
// and out, and emptying the views between two sessions. The token lives in sessionStorage: it
// survives reloads of this tab, and is gone when the tab closes.

import { hideError } from './api.js';
import { clearCharts } from './charts.js';
import { TOKEN_KEY } from './config.js';
import { h, setBusy } from './dom.js';
import { t } from './i18n.js';
import { connectLive, stopLive } from './live.js';
import { onRoute } from './router.js';
import { cancelAll, els, resetState, state } from './state.js';

function readStoredToken() {
  try {
    // Earlier versions kept the token in localStorage, where it outlived the browser session.
    localStorage.removeItem(TOKEN_KEY);
  } catch (error) {
    // Nothing to forget where storage is refused.
  }
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch (error) {
    return null;
  }
}

function storeToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch (error) {
    // Private modes may refuse storage; the token then lives for this page only.
  }
}

/** Start with the stored token, or ask for one. */
export function resumeSession() {
  const token = readStoredToken();
  if (token) startSession(token);
  else showSignIn('');
}

/** `?token=` in the page address: taken once, then removed from the address bar. */
export function takeTokenFromUrl() {
  const url = new URL(location.href);
  const token = url.searchParams.get('token');
  if (token === null) return;
  url.searchParams.delete('token');
  history.replaceState(history.state, '', url.pathname + url.search + url.hash);
  if (token.trim()) storeToken(token.trim());
}

function showSignIn(message) {
  els.app.hidden = true;
  els.signinView.hidden = false;
  els.signinError.textContent = message || '';
  els.signinError.hidden = !message;
  els.signinToken.value = '';
  els.signinToken.focus();
}

/** The token was refused: stop everything and ask for another. */
export function requireSignIn(message) {
  endSession();
  storeToken(null);
  showSignIn(message || t('tokenRejected'));
}

function endSession() {
  state.token = null;
  stopLive();
  cancelAll();
  hideError();
}

function startSession(token) {
  state.token = token;
  resetState();
  clearViews();
  els.signinView.hidden = true;
  els.app.hidden = false;
  connectLive();
  onRoute();
}

export function signOut() {
  endSession();
  storeToken(null);
  resetState();
  clearViews();
  showSignIn('');
}

export function onSignInSubmit(event) {
  event.preventDefault();
  const token = els.signinToken.value.trim();
  if (!token) {
    els.signinError.textContent = t('tokenRequired');
    els.signinError.hidden = false;
    els.signinToken.focus();
    return;
  }
  storeToken(token);
  startSession(token);
}

/** Empty every view of data from a previous session. */
function clearViews() {
  els.convRows.replaceChildren();
  els.convCount.textContent = '';
  els.convMore.hidden = true;
  els.detailView.replaceChildren();
  els.detailView.hidden = true;
  els.listView.hidden = false;
  els.actionsRows.replaceChildren();
  els.runsRows.replaceChildren();
  els.runsFilter.replaceChildren(h('option', { value: '' }, t('filterAll')));
  els.docsRows.replaceChildren();
  els.docsCount.textContent = '';
  els.reindexBox.replaceChildren();
  els.reindexBox.hidden = true;
  setBusy(els.reindex, false);
  els.kbResults.replaceChildren();
  els.mCards.replaceChildren();
  els.mMissing.hidden = true;
  els.mStatus.textContent = '';
  clearCharts();
  els.mActions.replaceChildren();
}
