// Asset view: current snapshot against the baseline, pending drift, change
// history, open findings and the accept-baseline action (admin).

import { h, mount, card, pageHead, table, facts, empty, section, severityBadge, statePill, pill, fmtTime, relTime, toast, confirmDialog, errorBox } from '../dom.js';
import { qs } from '../api.js';
import { quote } from './search.js';

function describe(entry) {
  if (!entry || typeof entry !== 'object') return String(entry ?? '');
  return Object.entries(entry)
    .filter(([k]) => k !== 'kind')
    .map(([k, v]) => `${k}: ${Array.isArray(v) ? (v.length ? v.join(', ') : 'none') : v}`)
    .join(' · ');
}

function snapshotRows(current, baseline) {
  const rows = [];
  const cur = current?.sections || {};
  const base = baseline?.sections || {};
  const names = [...new Set([...Object.keys(cur), ...Object.keys(base)])].sort();
  for (const s of names) {
    const keys = [...new Set([...Object.keys(cur[s] || {}), ...Object.keys(base[s] || {})])].sort();
    for (const k of keys) {
      const c = cur[s]?.[k];
      const b = base[s]?.[k];
      const same = JSON.stringify(c) === JSON.stringify(b);
      rows.push({ section: s, key: k, current: c, baseline: b, same });
    }
  }
  return rows;
}

/** Renders one asset. */
export async function render(ctx) {
  const name = ctx.params[0];
  const a = await ctx.api.get(`/assets/${encodeURIComponent(name)}`);
  if (!ctx.alive()) return;
  const drift = a.drift || [];
  const actions = ctx.can('admin') ? h('button', {
    class: 'btn btn-primary', type: 'button', id: 'accept-baseline', disabled: drift.length === 0,
    title: drift.length ? 'Make the current snapshot the baseline' : 'No pending drift',
    onclick: async () => {
      if (!(await confirmDialog('Accept baseline', `Make the current snapshot of ${name} its baseline? Pending drift is cleared.`, 'Accept', false))) return;
      try {
        await ctx.api.post(`/assets/${encodeURIComponent(name)}/accept-baseline`);
        toast('Baseline accepted');
        render(ctx);
      } catch (e) { toast(e.describe(), 'bad'); }
    },
  }, 'Accept baseline') : null;
  const findings = h('div');
  const changes = h('div');
  mount(ctx.main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/ui/search' }, 'Findings'), ' / asset'),
    pageHead(h('span', { id: 'asset-name' }, name), a.disappeared ? 'Not observed for 7 days' : `Last observed ${fmtTime(a.last_observed_ms)}`, actions),
    h('div', { class: 'grid-2' },
      card('Asset', facts([
        ['First seen', fmtTime(a.first_seen_ms)],
        ['Last observed', h('span', {}, fmtTime(a.last_observed_ms), ' (', relTime(a.last_observed_ms), ')')],
        ['Baseline accepted', a.baseline_accepted_ms ? fmtTime(a.baseline_accepted_ms) : 'first snapshot (never accepted)'],
        ['Status', a.disappeared ? pill('disappeared', 'bad') : pill('present', 'good')],
        ['Pending drift', drift.length ? pill(`${drift.length} change(s)`, 'warn') : pill('none', 'good')],
      ])),
      card('Pending drift', drift.length
        ? h('ul', { class: 'drift' }, drift.map((d) => h('li', {}, typeof d === 'string' ? d : describe(d))))
        : empty('No drift', 'The current snapshot matches the baseline.'))),
    card('Snapshot', table([
      { label: 'Section', render: (r) => h('span', { class: 'mono small' }, r.section) },
      { label: 'Endpoint', render: (r) => h('span', { class: 'mono' }, r.key) },
      { label: 'Current', render: (r) => (r.current ? describe(r.current) : h('span', { class: 'muted' }, 'absent')) },
      { label: 'Baseline', render: (r) => (r.same ? h('span', { class: 'muted' }, 'same') : r.baseline ? describe(r.baseline) : h('span', { class: 'muted' }, 'absent')) },
    ], snapshotRows(a.current, a.baseline), { caption: 'Snapshot', rowClass: (r) => (r.same ? null : 'row-changed'), emptyState: empty('Empty snapshot') })),
    card('Open findings', findings),
    card('Change history', changes));

  section(findings, 'findings', async () => {
    const r = await ctx.api.get(`/findings${qs({ q: `kind:finding -state:resolved asset:${quote(name)} sort:-severity`, limit: 100 })}`);
    return table([
      { label: 'Severity', render: (x) => severityBadge(x.doc.severity) },
      { label: 'Title', render: (x) => h('a', { href: `/ui/findings/${encodeURIComponent(x.doc.id)}` }, x.doc.title) },
      { label: 'Location', render: (x) => h('span', { class: 'mono small' }, x.doc.location) },
      { label: 'Status', render: (x) => statePill(x.doc.state) },
      { label: 'Last seen', render: (x) => relTime(x.doc.last_seen_ms) },
    ], r.hits, { caption: 'Open findings', emptyState: empty('No open findings on this asset') });
  }).catch((e) => mount(findings, errorBox(e, 'findings')));

  section(changes, 'changes', async () => {
    const list = await ctx.api.get(`/changes${qs({ asset: name, limit: 100 })}`);
    return table([
      { label: 'Change', render: (c) => h('span', { class: 'badge badge-change' }, c.change) },
      { label: 'Subject', render: (c) => h('span', { class: 'mono small' }, c.subject) },
      { label: 'Before', render: (c) => c.before ?? '—' },
      { label: 'After', render: (c) => c.after ?? '—' },
      { label: 'Job', render: (c) => c.job_id || '—' },
      { label: 'Detected', render: (c) => fmtTime(c.detected_ms) },
    ], list, { caption: 'Change history', emptyState: empty('No changes recorded') });
  });
}
