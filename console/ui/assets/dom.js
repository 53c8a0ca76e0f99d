// Small DOM toolkit: element builder, formatting, badges and the loading,
// empty and error states every page shares. No innerHTML with data anywhere:
// text always goes through text nodes.

/** Builds an element: h('a', {href, class, onclick}, child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const SEVERITIES = ['critical', 'high', 'medium', 'low', 'info'];

/** Severity names, most severe first. */
export const severities = () => SEVERITIES.slice();

/** Coloured severity badge. */
export function severityBadge(sev) {
  const s = SEVERITIES.includes(sev) ? sev : 'info';
  return h('span', { class: `badge sev-${s}` }, sev || 'unknown');
}

/** Neutral or coloured status pill. */
export function pill(text, tone = 'neutral') {
  return h('span', { class: `pill tone-${tone}` }, text);
}

const STATE_TONES = { new: 'info', open: 'warn', reopened: 'bad', resolved: 'good' };

/** Lifecycle state pill of a finding. */
export function statePill(state) {
  return pill(state || 'unknown', STATE_TONES[state] || 'neutral');
}

/** Absolute time (local), or a dash. */
export function fmtTime(ms) {
  if (!ms) return '—';
  const d = new Date(ms);
  return d.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit',
  });
}

/** "3 min ago" / "in 2 h", with the absolute time as a tooltip. */
export function relTime(ms) {
  if (!ms) return h('span', { class: 'muted' }, '—');
  const diff = ms - Date.now();
  const abs = Math.abs(diff);
  const units = [['d', 86400000], ['h', 3600000], ['min', 60000], ['s', 1000]];
  let text = 'just now';
  for (const [u, n] of units) {
    if (abs >= n) {
      const v = Math.floor(abs / n);
      text = diff < 0 ? `${v} ${u} ago` : `in ${v} ${u}`;
      break;
    }
  }
  return h('time', { datetime: new Date(ms).toISOString(), title: fmtTime(ms) }, text);
}

/** Bytes as KiB/MiB. */
export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

/** Number with thousands separators. */
export const fmtNum = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString());

/** Spinner with a label, for areas still loading. */
export function loading(label = 'Loading…') {
  return h('div', { class: 'state state-loading', role: 'status' },
    h('span', { class: 'spinner', 'aria-hidden': 'true' }), label);
}

/** Friendly empty state. */
export function empty(title, hint) {
  return h('div', { class: 'state state-empty' },
    h('div', { class: 'state-icon', 'aria-hidden': 'true' }, '∅'),
    h('div', { class: 'state-title' }, title),
    hint ? h('div', { class: 'state-hint' }, hint) : null);
}

/** Error state with the API's message. */
export function errorBox(err, what) {
  const text = err && typeof err.describe === 'function' ? err.describe() : String(err && err.message || err);
  return h('div', { class: 'state state-error', role: 'alert' },
    h('strong', {}, what ? `Could not load ${what}` : 'Something went wrong'),
    h('div', { class: 'state-hint' }, text));
}

/**
 * Table from column specs [{label, render(row), class?}] and rows; shows
 * `emptyState` when there are none.
 */
export function table(columns, rows, { emptyState, caption, rowClass } = {}) {
  if (!rows || rows.length === 0) return emptyState || empty('Nothing here yet');
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'data' },
      caption ? h('caption', { class: 'sr-only' }, caption) : null,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label)))),
      h('tbody', {}, rows.map((r) => h('tr', { class: rowClass ? rowClass(r) : null },
        columns.map((c) => h('td', { class: c.class, 'data-label': c.label }, c.render(r))))))));
}

/** Card with a title and optional actions. */
export function card(title, body, actions) {
  return h('section', { class: 'card', 'aria-label': title },
    h('header', { class: 'card-head' }, h('h2', {}, title), actions ? h('div', { class: 'card-actions' }, actions) : null),
    h('div', { class: 'card-body' }, body));
}

/** Page title row. */
export function pageHead(title, subtitle, actions) {
  return h('div', { class: 'page-head' },
    h('div', {}, h('h1', {}, title), subtitle ? h('p', { class: 'subtitle' }, subtitle) : null),
    actions ? h('div', { class: 'page-actions' }, actions) : null);
}

/** Fills `el` with the result of `load()` showing loading and error states meanwhile. */
export async function section(el, what, load) {
  mount(el, loading(`Loading ${what}…`));
  try {
    const node = await load();
    mount(el, node);
  } catch (e) {
    mount(el, errorBox(e, what));
  }
}

/** Modal confirmation; resolves true when confirmed. */
export function confirmDialog(title, message, confirmLabel = 'Confirm', danger = true) {
  return new Promise((resolve) => {
    const dlg = h('dialog', { class: 'modal', 'aria-label': title });
    const close = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    mount(dlg,
      h('h2', {}, title),
      h('p', {}, message),
      h('div', { class: 'modal-actions' },
        h('button', { class: 'btn', type: 'button', onclick: () => close(false) }, 'Cancel'),
        h('button', { class: danger ? 'btn btn-danger' : 'btn btn-primary', type: 'button', onclick: () => close(true) }, confirmLabel)));
    dlg.addEventListener('cancel', (e) => { e.preventDefault(); close(false); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

let toastTimer;
/** Short notice at the bottom right. */
export function toast(text, tone = 'good') {
  let el = document.getElementById('toast');
  if (!el) {
    el = h('div', { id: 'toast', role: 'status', 'aria-live': 'polite' });
    document.body.append(el);
  }
  el.className = `toast tone-${tone} show`;
  el.textContent = text;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove('show'), 4000);
}

/** Inline form error slot. */
export function formError() {
  return h('div', { class: 'form-error', role: 'alert', hidden: true });
}

/** Shows (or hides, with null) an error in a formError() slot. */
export function showFormError(slot, err) {
  if (!err) { slot.hidden = true; slot.textContent = ''; return; }
  slot.hidden = false;
  slot.textContent = typeof err.describe === 'function' ? err.describe() : String(err.message || err);
}

/** Labelled form field. */
export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h('div', { class: 'field' },
    h('label', { for: id }, label), input, hint ? h('div', { class: 'field-hint' }, hint) : null);
}

/** Key/value description list. */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}
