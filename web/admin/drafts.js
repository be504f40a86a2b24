// Knowledge drafts on the knowledge tab: articles made from operators' answers (`/kb` in a
// Telegram topic). A draft waiting for review can be edited, then approved — a worker writes
// the document and reindexes, followed here until the draft is published — or discarded.

import { api, report, showError } from './api.js';
import { DRAFTS_LIMIT, DRAFT_POLL_MAX_TRIES, DRAFT_POLL_MS } from './config.js';
import { badge, externalLink, h, kbHref, setBusy } from './dom.js';
import { timeEl } from './format.js';
import { label, t } from './i18n.js';
import { loadDocuments } from './knowledge.js';
import { els, later, state } from './state.js';

const TONES = { writing: 'warn', ready: 'accent', publishing: 'warn', approved: 'ok', discarded: 'outline' };

export async function loadDrafts() {
  const kb = state.knowledge;
  const gen = ++kb.draftsGen;
  const status = els.draftsFilter.value || undefined;
  try {
    const drafts = await api('GET', '/knowledge/drafts/', { query: { status, limit: DRAFTS_LIMIT } });
    if (state.knowledge !== kb || gen !== kb.draftsGen) return;
    kb.drafts = Array.isArray(drafts) ? drafts : [];
    renderDrafts();
  } catch (error) {
    if (state.knowledge !== kb || gen !== kb.draftsGen) return;
    if (!kb.drafts.length) els.draftsList.replaceChildren(h('p', { class: 'muted' }, t('loadFailed')));
    report(error);
  }
}

function renderDrafts() {
  const drafts = state.knowledge.drafts;
  els.draftsCount.textContent = drafts.length ? t('draftsCount', { count: drafts.length }) : '';
  if (!drafts.length) {
    els.draftsList.replaceChildren(h('p', { class: 'muted', 'data-testid': 'kb-drafts-empty' }, t('draftsEmpty')));
    return;
  }
  els.draftsList.replaceChildren(...drafts.map(renderDraft));
}

function renderDraft(draft) {
  const editable = draft.status === 'ready';
  const title = h('input', {
    type: 'text', maxlength: '200', value: draft.title || '', 'aria-label': t('draftTitle'),
    'data-testid': 'kb-draft-title', disabled: !editable,
  });
  const body = h('textarea', {
    rows: '10', maxlength: '20000', 'aria-label': t('draftBody'), 'data-testid': 'kb-draft-body', disabled: !editable,
  });
  body.value = draft.body || '';
  const by = draft.written_by ? label('draftWriters', draft.written_by) : t('dash');
  const parts = [
    h('div', { class: 'section-head' },
      h('strong', null, draft.title || t('draftUntitled')),
      badge(label('draftStatuses', draft.status), TONES[draft.status] || 'outline'),
      h('span', { class: 'muted small' }, t('draftRequested', { name: draft.requested_by }), ' ', timeEl(draft.created_at, true)),
      h('span', { class: 'muted small' }, t('draftWrittenBy', { by }), draft.model_fallback ? ` (${draft.model_fallback})` : '')),
    h('details', null,
      h('summary', null, t('draftSource')),
      h('p', { class: 'pre-wrap' }, h('strong', null, t('draftQuestion')), ' ', draft.question || t('dash')),
      h('p', { class: 'pre-wrap' }, h('strong', null, t('draftAnswer')), ' ', draft.answer || t('dash')),
      h('a', { href: `#/conversations/${encodeURIComponent(draft.conversation_id)}` }, t('draftConversation'))),
  ];
  if (draft.status === 'writing') {
    parts.push(h('p', { class: 'muted' }, t('draftWriting')));
  } else {
    parts.push(h('label', { class: 'field' }, t('draftTitle'), title), h('label', { class: 'field wide' }, t('draftBody'), body));
  }
  if (draft.status === 'approved' && draft.path) {
    parts.push(h('p', null, t('draftPublished', { where: label('draftStores', draft.stored_in) }), ' ',
      externalLink(kbHref(draft.path), draft.path, { class: 'mono', 'data-testid': 'kb-draft-path' })));
  }
  if (editable) {
    const save = h('button', { type: 'button', class: 'btn', 'data-testid': 'kb-draft-save' }, t('draftSave'));
    const approve = h('button', { type: 'button', class: 'btn primary', 'data-testid': 'kb-draft-approve' }, t('draftApprove'));
    const discard = h('button', { type: 'button', class: 'btn danger', 'data-testid': 'kb-draft-discard' }, t('draftDiscard'));
    save.addEventListener('click', () => saveDraft(draft, title, body, save));
    approve.addEventListener('click', () => approveDraft(draft, title, body, approve));
    discard.addEventListener('click', () => discardDraft(draft, discard));
    parts.push(h('div', { class: 'actions-row' }, save, approve, discard));
  }
  return h('article', { class: 'box draft', 'data-testid': 'kb-draft', 'data-id': draft.id, 'data-status': draft.status }, parts);
}

/** Send the edits, if any; resolves with the draft as stored. */
async function patchIfChanged(draft, title, body) {
  const changes = {};
  if (title.value !== (draft.title || '')) changes.title = title.value;
  if (body.value !== (draft.body || '')) changes.body = body.value;
  if (!Object.keys(changes).length) return draft;
  return api('PATCH', `/knowledge/drafts/${encodeURIComponent(draft.id)}/`, { body: changes });
}

async function saveDraft(draft, title, body, button) {
  setBusy(button, true);
  try {
    replaceDraft(await patchIfChanged(draft, title, body));
  } catch (error) {
    setBusy(button, false);
    report(error);
  }
}

async function approveDraft(draft, title, body, button) {
  setBusy(button, true);
  try {
    await patchIfChanged(draft, title, body);
    const approved = await api('POST', `/knowledge/drafts/${encodeURIComponent(draft.id)}/approve/`);
    replaceDraft(approved);
    followPublishing(approved, 0);
  } catch (error) {
    setBusy(button, false);
    report(error);
  }
}

async function discardDraft(draft, button) {
  if (!window.confirm(t('draftDiscardConfirm'))) return;
  setBusy(button, true);
  try {
    replaceDraft(await api('POST', `/knowledge/drafts/${encodeURIComponent(draft.id)}/discard/`));
  } catch (error) {
    setBusy(button, false);
    report(error);
  }
}

/** Poll an approved draft until it is published, then show the documents again. */
function followPublishing(draft, tries) {
  const kb = state.knowledge;
  if (draft.status !== 'publishing') {
    if (draft.status === 'approved') {
      // The reindex the approval queued may still run: show the documents once it is done.
      if (draft.reindex_run_id) followReindexRun(draft.reindex_run_id, 0);
      else loadDocuments();
    }
    return;
  }
  if (tries >= DRAFT_POLL_MAX_TRIES) {
    showError(t('draftPublishSlow'));
    return;
  }
  later(`draft:${draft.id}`, DRAFT_POLL_MS, async () => {
    if (state.knowledge !== kb) return;
    try {
      const next = await api('GET', `/knowledge/drafts/${encodeURIComponent(draft.id)}/`);
      if (state.knowledge !== kb) return;
      replaceDraft(next);
      followPublishing(next, tries + 1);
    } catch (error) {
      if (!error.auth) followPublishing(draft, tries + 1);
    }
  });
}

function followReindexRun(runId, tries) {
  const kb = state.knowledge;
  later(`draft-run:${runId}`, DRAFT_POLL_MS, async () => {
    if (state.knowledge !== kb) return;
    try {
      const run = await api('GET', `/knowledge/reindex/${encodeURIComponent(runId)}/`);
      if (run && (run.status === 'succeeded' || run.status === 'failed')) loadDocuments();
      else if (tries < DRAFT_POLL_MAX_TRIES) followReindexRun(runId, tries + 1);
    } catch (error) {
      if (!error.auth && tries < DRAFT_POLL_MAX_TRIES) followReindexRun(runId, tries + 1);
    }
  });
}

function replaceDraft(draft) {
  if (!draft || !draft.id) return;
  const kb = state.knowledge;
  const index = kb.drafts.findIndex((d) => d.id === draft.id);
  if (index >= 0) kb.drafts[index] = draft;
  else kb.drafts.unshift(draft);
  renderDrafts();
}
