// A conversation's messages, kept in place between reloads: a message is rebuilt only when
// what it shows changed, so scrolling and selection survive live updates.

import { NEAR_BOTTOM_PX } from './config.js';
import { ownerTitle } from './conversations.js';
import {
  badge,
  externalLink,
  h,
  isEmptyValue,
  jsonDetails,
  jsonText,
  kbHref,
  shortId,
} from './dom.js';
import { fmtNumber, fmtShare, timeEl } from './format.js';
import { label, t } from './i18n.js';
import { state } from './state.js';

function attachmentsOf(m) {
  return Array.isArray(m.attachments) ? m.attachments.filter((a) => a && typeof a.url === 'string') : [];
}

function messageSignature(m, data) {
  const run = m.action_run_id ? (data.action_runs || []).find((r) => r.id === m.action_run_id) : null;
  // A file's link is signed afresh on every load: only what the file is counts.
  const files = attachmentsOf(m).map((a) => `${a.id}:${a.transcript || ''}`).join(',');
  return [m.seq, m.role, m.content, jsonText(m.metadata), run ? run.status : '', m.role === 'user' ? ownerTitle(data) : '', files].join('\u0000');
}

/** A size as people read it. */
export function fileSize(bytes) {
  const size = Number(bytes) || 0;
  if (size >= 1024 * 1024) return t('fileSizeMb', { n: (size / (1024 * 1024)).toFixed(1) });
  return t('fileSizeKb', { n: Math.max(1, Math.ceil(size / 1024)) });
}

// A message's files: images as thumbnails opening the file, voice as a player with its
// transcript, other files as a link with name and size. Links are signed paths of this site.
function attachmentList(m) {
  const files = attachmentsOf(m).filter((a) => a.url.startsWith('/'));
  if (!files.length) return null;
  return h('div', { class: 'msg-files', 'data-testid': 'attachments' }, files.map((file) => {
    const name = String(file.file_name || '');
    if (file.kind === 'image') {
      return h('a', { class: 'msg-file image', href: file.url, target: '_blank', rel: 'noopener noreferrer', title: name },
        h('img', { src: file.url, alt: name, 'data-testid': 'attachment-image' }));
    }
    if (file.kind === 'voice') {
      const said = typeof file.transcript === 'string' ? file.transcript.trim() : '';
      return h('div', { class: 'msg-file voice' },
        h('audio', { controls: true, preload: 'metadata', src: file.url, 'data-testid': 'attachment-voice' }),
        h('div', { class: 'msg-extra', 'data-testid': 'voice-transcript' }, said ? t('voiceTranscript', { text: said }) : t('voiceNoTranscript')));
    }
    return h('a', { class: 'msg-file doc', href: file.url, target: '_blank', rel: 'noopener noreferrer', 'data-testid': 'attachment-file' },
      name, ' ', h('span', { class: 'muted' }, fileSize(file.size_bytes)));
  }));
}

export function renderTranscript(data, initial) {
  const d = state.detail.els;
  const box = d.transcript;
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < NEAR_BOTTOM_PX;
  const messages = Array.isArray(data.messages) ? data.messages.slice().sort((a, b) => a.seq - b.seq) : [];
  const seqById = new Map(messages.map((m) => [m.id, m.seq]));
  const runsById = new Map((data.action_runs || []).map((r) => [r.id, r]));
  const seen = new Set();
  let previous = null;
  let added = false;
  for (const m of messages) {
    seen.add(m.id);
    const signature = messageSignature(m, data);
    let entry = d.messages.get(m.id);
    if (!entry || entry.signature !== signature) {
      const el = renderMessage(m, data, seqById, runsById);
      if (entry) entry.el.replaceWith(el);
      else added = true;
      entry = { el, signature };
      d.messages.set(m.id, entry);
    }
    const expected = previous ? previous.nextSibling : box.firstChild;
    if (entry.el !== expected) box.insertBefore(entry.el, expected);
    previous = entry.el;
  }
  for (const [id, entry] of d.messages) {
    if (!seen.has(id)) {
      entry.el.remove();
      d.messages.delete(id);
    }
  }
  d.noMessages.hidden = messages.length > 0;
  if (initial || (added && nearBottom)) box.scrollTop = box.scrollHeight;
}

function renderMessage(m, data, seqById, runsById) {
  const meta = m.metadata && typeof m.metadata === 'object' && !Array.isArray(m.metadata) ? m.metadata : {};
  const role = ['user', 'assistant', 'operator', 'system'].includes(m.role) ? m.role : 'system';
  let author = label('roles', role);
  let via = null;
  if (role === 'user') author = ownerTitle(data);
  if (role === 'operator' && meta.operator && typeof meta.operator === 'object') {
    if (meta.operator.name) author = `${meta.operator.name} · ${label('roles', 'operator')}`;
    if (meta.operator.via) via = t('via', { via: label('vias', meta.operator.via) });
  }
  const head = h('div', { class: 'msg-head' },
    h('span', { class: 'msg-author' }, author),
    via ? h('span', null, via) : null,
    timeEl(m.created_at),
    h('span', { title: `seq ${m.seq}` }, `#${m.seq}`),
    m.reply_to && seqById.has(m.reply_to)
      ? h('span', { title: t('replyToTitle', { seq: seqById.get(m.reply_to) }) }, t('replyTo', { seq: seqById.get(m.reply_to) }))
      : null);

  const chips = [];
  if (meta.kind && role === 'system') chips.push(badge(label('messageKinds', meta.kind), 'outline'));
  if (meta.decision) chips.push(badge(label('decisions', meta.decision), meta.decision === 'escalate' ? 'warn' : 'accent', 'decision'));
  if (meta.engine) chips.push(badge(label('engines', meta.engine), 'outline', 'engine'));
  if (meta.model) chips.push(badge(String(meta.model), 'outline', 'model'));
  if (meta.prompt_version) chips.push(badge(String(meta.prompt_version), 'outline', 'prompt_version'));
  if (meta.fallback) chips.push(badge(t('fallback'), 'warn', typeof meta.fallback === 'string' ? meta.fallback : null));
  if (meta.reason) chips.push(badge(label('reasons', meta.reason), 'warn', 'reason'));

  const extras = [];
  if (m.action_run_id) {
    const run = runsById.get(m.action_run_id);
    extras.push(h('div', { class: 'msg-extra' },
      t('actionRun', { action: run ? run.action : shortId(m.action_run_id), status: run ? label('runStatuses', run.status) : t('dash') })));
  }
  if (meta.summary && typeof meta.summary === 'string') extras.push(h('div', { class: 'msg-extra pre-wrap' }, t('summary', { text: meta.summary })));
  if (Array.isArray(meta.sources) && meta.sources.length) {
    extras.push(h('div', { class: 'msg-extra' },
      h('strong', null, t('sources')),
      h('ol', null, meta.sources.map((source) => sourceItem(source)))));
  }
  if (Array.isArray(meta.suggestions) && meta.suggestions.length) {
    extras.push(h('div', { class: 'msg-extra' },
      h('strong', null, t('suggestions')),
      h('ul', null, meta.suggestions.map((item) => h('li', null, typeof item === 'string' ? item : jsonText(item))))));
  }
  if (!isEmptyValue(meta)) extras.push(h('div', { class: 'msg-extra' }, jsonDetails(t('metadata'), meta)));

  return h('article', {
    class: `msg msg-${role}`,
    'data-testid': 'message',
    'data-role': role,
    'data-id': m.id,
    'data-seq': m.seq,
  },
  head,
  m.content || !attachmentsOf(m).length ? h('div', { class: 'msg-body' }, m.content || '') : null,
  attachmentList(m),
  chips.length ? h('div', { class: 'msg-meta' }, chips) : null,
  extras);
}

function sourceItem(source) {
  if (!source || typeof source !== 'object') return h('li', null, String(source));
  const title = source.title || source.path || t('dash');
  const text = source.heading && source.heading !== source.title ? `${title} — ${source.heading}` : title;
  const score = Number.isFinite(Number(source.score)) ? fmtNumber(source.score, 2) : t('dash');
  const coverage = Number.isFinite(Number(source.coverage)) ? fmtShare(source.coverage, 1) : t('dash');
  return h('li', null,
    source.path ? externalLink(kbHref(source.path), text) : text,
    ' ',
    h('span', { class: 'score', title: t('scoreTitle', { score, coverage }) }, `${score} · ${coverage}`));
}
