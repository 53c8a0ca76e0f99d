// Dashboard: agents online, active findings by severity (search facets),
// posture per framework and the most recent changes.

import { h, mount, card, pageHead, section, table, empty, severityBadge, relTime, fmtNum, severities } from '../dom.js';
import { qs } from '../api.js';

/** Frameworks the collector's rules map to (rules/data/frameworks.toml). */
export const FRAMEWORKS = [
  ['nis2', 'NIS2 Art. 21(2)'],
  ['nis2_ir', 'NIS2 Implementing Reg.'],
  ['iso27001', 'ISO/IEC 27001:2022'],
  ['soc2', 'SOC 2'],
  ['cis', 'CIS Controls v8'],
];

const ACTIVE = 'kind:finding -state:resolved';

function stat(label, value, hint, id) {
  return h('div', { class: 'stat', id },
    h('div', { class: 'stat-label' }, label),
    h('div', { class: 'stat-value' }, value),
    hint ? h('div', { class: 'stat-hint' }, hint) : null);
}

function severityBars(counts, total) {
  const max = Math.max(1, ...Object.values(counts));
  return h('ul', { class: 'sev-bars', 'aria-label': 'Active findings by severity' },
    severities().map((s) => {
      const n = counts[s] || 0;
      return h('li', {},
        h('a', { href: `/ui/search${qs({ q: `${ACTIVE} severity:${s}` })}`, class: 'sev-row', 'aria-label': `${s}: ${n}` },
          h('span', { class: 'sev-name' }, severityBadge(s)),
          h('span', { class: 'bar-track' }, h('span', { class: `bar-fill sev-bg-${s}`, 'data-width': Math.round((n / max) * 100) })),
          h('span', { class: 'sev-count', dataset: { severity: s } }, fmtNum(n))));
    }),
    h('li', { class: 'sev-total muted small' }, `${fmtNum(total)} active findings`));
}

// CSP forbids inline styles in markup, but CSSOM writes are allowed.
function applyWidths(el) {
  el.querySelectorAll('[data-width]').forEach((b) => { b.style.width = `${b.dataset.width}%`; });
  return el;
}

function postureRow(key, name, p) {
  if (p.error) {
    return h('div', { class: 'posture-row' },
      h('div', { class: 'posture-name' }, name), h('div', { class: 'muted small' }, p.error.describe()));
  }
  const { pass = 0, fail = 0, not_assessed: na = 0 } = p.posture || {};
  const assessed = pass + fail;
  const all = Math.max(1, pass + fail + na);
  const score = assessed ? Math.round((pass / assessed) * 100) : null;
  const tone = score === null ? 'neutral' : score >= 80 ? 'good' : score >= 50 ? 'warn' : 'bad';
  return h('a', { class: 'posture-row', href: `/ui/search${qs({ q: `${ACTIVE} framework:${key}` })}`, dataset: { framework: key } },
    h('div', { class: 'posture-name' }, name, h('span', { class: 'muted small' }, ` ${key}`)),
    h('div', { class: 'stacked', role: 'img', 'aria-label': `${pass} controls pass, ${fail} fail, ${na} not assessed` },
      h('span', { class: 'seg seg-pass', 'data-width': (pass / all) * 100 }),
      h('span', { class: 'seg seg-fail', 'data-width': (fail / all) * 100 }),
      h('span', { class: 'seg seg-na', 'data-width': (na / all) * 100 })),
    h('div', { class: `score score-${tone}` }, score === null ? '—' : `${score}%`),
    h('div', { class: 'posture-counts small muted' }, `${pass} pass · ${fail} fail · ${na} n/a`));
}

/** Renders the dashboard. */
export async function render(ctx) {
  const stats = h('div', { class: 'stats' });
  const sev = h('div');
  const posture = h('div');
  const changes = h('div');
  mount(ctx.main,
    pageHead('Dashboard', `Overview of tenant ${ctx.tenant}`),
    stats,
    h('div', { class: 'grid-2' },
      card('Active findings by severity', sev, h('a', { class: 'btn btn-small', href: `/ui/search${qs({ q: ACTIVE })}` }, 'Search')),
      card('Compliance posture', posture)),
    card('Recent changes', changes));

  const searchP = ctx.api.get(`/findings${qs({ q: ACTIVE, limit: 1, facets: 'true' })}`);
  const agentsP = ctx.api.get('/agents');
  const statsP = ctx.api.get('/stats');

  section(stats, 'totals', async () => {
    const [agents, s, found] = await Promise.all([agentsP, statsP, searchP]);
    const online = agents.filter((a) => a.online && !a.revoked_ms).length;
    const high = (found.facets?.severity || []).filter(([k]) => k === 'high' || k === 'critical').reduce((n, [, c]) => n + c, 0);
    return h('div', { class: 'stats' },
      stat('Agents online', h('span', {}, h('span', { id: 'agents-online' }, fmtNum(online)), h('span', { class: 'stat-of' }, ` / ${fmtNum(agents.length)}`)), 'connected now / enrolled', 'stat-agents'),
      stat('Active findings', h('span', { id: 'active-findings' }, fmtNum(found.total)), 'not resolved', 'stat-findings'),
      stat('High & critical', fmtNum(high), 'active', 'stat-high'),
      stat('Records received', fmtNum(s.records), `${fmtNum(s.batches)} signed batches`, 'stat-records'));
  });

  section(sev, 'findings', async () => {
    const found = await searchP;
    if (!found.total) return empty('No active findings', 'Findings appear here once agents report scan results.');
    const counts = Object.fromEntries(found.facets?.severity || []);
    return applyWidths(severityBars(counts, found.total));
  });

  section(posture, 'posture', async () => {
    const results = await Promise.all(FRAMEWORKS.map(([k]) =>
      ctx.api.get(`/posture/${k}${qs({ history: 0 })}`).catch((error) => ({ error }))));
    const none = results.every((p) => p.error || !((p.posture?.pass || 0) + (p.posture?.fail || 0)));
    const rows = h('div', { class: 'posture' }, FRAMEWORKS.map(([k, name], i) => postureRow(k, name, results[i])));
    const legend = h('div', { class: 'legend small muted' },
      h('span', { class: 'dot seg-pass' }), 'pass ', h('span', { class: 'dot seg-fail' }), 'fail ', h('span', { class: 'dot seg-na' }), 'not assessed');
    return applyWidths(h('div', {}, none ? empty('No controls assessed yet', 'Posture is computed from scan results.') : null, rows, legend));
  });

  section(changes, 'changes', async () => {
    const list = await ctx.api.get(`/changes${qs({ limit: 8 })}`);
    return table([
      { label: 'Change', render: (c) => h('span', { class: 'badge badge-change' }, c.change) },
      { label: 'Asset', render: (c) => h('a', { href: `/ui/asset/${encodeURIComponent(c.asset)}` }, c.asset) },
      { label: 'Subject', render: (c) => c.subject },
      { label: 'Before → after', render: (c) => (c.before || c.after ? `${c.before ?? '—'} → ${c.after ?? '—'}` : '—') },
      { label: 'Detected', render: (c) => relTime(c.detected_ms) },
    ], list, { caption: 'Recent changes', emptyState: empty('No changes detected', 'Changes against each asset\'s baseline show up here.') });
  });
}
