// Findings search: query language of docs/search.md, facets that refine the
// query on click, paginated results (offset/limit).

import { h, mount, pageHead, table, empty, errorBox, loading, severityBadge, statePill, relTime, fmtNum, pill } from '../dom.js';
import { qs } from '../api.js';

const PAGE_SIZES = [10, 25, 50, 100];
const DEFAULT_PAGE_SIZE = 25;

const FACET_LABELS = {
  severity: 'Severity', state: 'Status', control: 'Framework control', rule: 'Rule', asset: 'Asset', type: 'Change type',
};
const FACET_ORDER = ['severity', 'state', 'control', 'rule', 'asset', 'type'];

/** A query value, quoted when it holds anything but plain word characters. */
export function quote(v) {
  return /^[A-Za-z0-9_.\-]+$/.test(v) ? v : `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** Clause(s) a facet value adds to the query. */
function facetClause(facet, value) {
  if (facet === 'control') {
    const i = value.indexOf(':');
    return i > 0 ? `framework:${quote(value.slice(0, i))} control:${quote(value.slice(i + 1))}` : `control:${quote(value)}`;
  }
  return `${facet}:${quote(value)}`;
}

const EXAMPLES = [
  ['severity:>=high -state:resolved', 'high and critical, not resolved'],
  ['framework:nis2 sort:-severity', 'everything mapped to NIS2, worst first'],
  ['check:http rule:http.*', 'HTTP header findings'],
  ['kind:change seen:>now-7d', 'changes of the last 7 days'],
  ['days_left:<30', 'certificates expiring within 30 days'],
];

function help(onPick) {
  return h('details', { class: 'query-help' },
    h('summary', {}, 'Query language help'),
    h('div', { class: 'help-body' },
      h('p', {}, 'Clauses separated by spaces must all match. Use ', h('code', {}, 'OR'), ', parentheses, and ', h('code', {}, '-clause'), ' to negate. ',
        'Fields: ', ['severity', 'state', 'suppressed', 'port', 'framework', 'control', 'rule', 'asset', 'job', 'kind', 'type', 'check', 'days_left', 'seen', 'first_seen']
          .map((f, i) => [i ? ', ' : '', h('code', {}, f)]),
        '. Ranges: ', h('code', {}, 'port:[1 TO 1024]'), ', comparisons: ', h('code', {}, 'severity:>=high'),
        '. Sort: ', h('code', {}, 'sort:-last_seen'), '.'),
      h('ul', { class: 'examples' }, EXAMPLES.map(([q, what]) => h('li', {},
        h('button', { type: 'button', class: 'link', onclick: () => onPick(q) }, h('code', {}, q)), ` — ${what}`)))));
}

function resultsTable(hits, total, offset) {
  return table([
    { label: 'Severity', class: 'col-sev', render: (x) => (x.kind === 'change' ? pill('change', 'info') : severityBadge(x.doc.severity)) },
    {
      label: 'Finding', render: (x) => (x.kind === 'change'
        ? h('div', {}, h('strong', {}, x.doc.change), ' ', x.doc.subject, h('div', { class: 'sub-line' }, `job ${x.doc.job_id || '—'}`))
        : h('div', {},
          h('a', { href: `/ui/findings/${encodeURIComponent(x.doc.id)}`, class: 'finding-link' }, x.doc.title),
          h('div', { class: 'sub-line' }, x.doc.rule_id, x.doc.location ? ` · ${x.doc.location}` : ''))),
    },
    { label: 'Asset', render: (x) => h('a', { href: `/ui/asset/${encodeURIComponent(x.doc.asset)}` }, x.doc.asset) },
    { label: 'Status', render: (x) => (x.kind === 'change' ? '—' : h('span', {}, statePill(x.doc.state), x.doc.suppression ? [' ', pill(x.doc.suppression.kind === 'accepted_risk' ? 'risk accepted' : 'suppressed', 'neutral')] : null)) },
    { label: 'Last seen', class: 'nowrap', render: (x) => relTime(x.kind === 'change' ? x.doc.detected_ms : x.doc.last_seen_ms) },
  ], hits, {
    caption: `Results ${offset + 1} to ${offset + hits.length} of ${total}`,
    emptyState: empty('No matches', 'Try a broader query or remove a filter.'),
  });
}

/** Renders the search page. */
export async function render(ctx) {
  const q = ctx.query.get('q') ?? 'kind:finding -state:resolved sort:-severity';
  const page = Math.max(1, Number(ctx.query.get('page')) || 1);
  const wanted = Number(ctx.query.get('size'));
  const PAGE_SIZE = PAGE_SIZES.includes(wanted) ? wanted : DEFAULT_PAGE_SIZE;
  const offset = (page - 1) * PAGE_SIZE;
  const go = (query, p = 1, size = PAGE_SIZE) => ctx.navigate(`/ui/search${qs({
    q: query, page: p > 1 ? p : '', size: size !== DEFAULT_PAGE_SIZE ? size : '',
  })}`);

  const input = h('input', {
    type: 'search', id: 'query', name: 'q', value: q, class: 'query-input mono', 'aria-label': 'Search query',
    placeholder: 'severity:high port:443 framework:nis2 …', spellcheck: 'false', autocomplete: 'off',
  });
  const form = h('form', { class: 'search-bar', role: 'search' },
    input, h('button', { class: 'btn btn-primary', type: 'submit' }, 'Search'));
  form.addEventListener('submit', (e) => { e.preventDefault(); go(input.value.trim()); });

  const facets = h('aside', { class: 'facets', 'aria-label': 'Filters' }, loading('Loading filters…'));
  const results = h('div', { class: 'results' }, loading('Searching…'));
  mount(ctx.main,
    pageHead('Findings', 'Search findings and change events'),
    form,
    help((example) => { input.value = example; go(example); }),
    h('div', { class: 'search-layout' }, facets, results));

  let answer;
  try {
    answer = await ctx.api.get(`/findings${qs({ q, limit: PAGE_SIZE, offset, facets: 'true' })}`);
  } catch (e) {
    mount(results, errorBox(e, 'results'));
    mount(facets);
    return;
  }
  if (!ctx.alive()) return;

  const groups = FACET_ORDER.filter((f) => answer.facets && answer.facets[f] && answer.facets[f].length);
  mount(facets, groups.length === 0
    ? h('p', { class: 'muted small' }, 'No filters for this result.')
    : groups.map((f) => h('section', { class: 'facet', dataset: { facet: f } },
      h('h3', {}, FACET_LABELS[f] || f),
      h('ul', {}, answer.facets[f].map(([value, n]) => {
        const clause = facetClause(f, value);
        const active = q.split(/\s+/).includes(clause);
        return h('li', {},
          h('button', {
            type: 'button', class: `facet-value${active ? ' active' : ''}`, 'aria-pressed': active ? 'true' : 'false',
            title: `Add ${clause} to the query`,
            onclick: () => go(active ? q.replace(clause, '').replace(/\s+/g, ' ').trim() : `${q} ${clause}`.trim()),
          }, f === 'severity' ? severityBadge(value) : h('span', { class: 'facet-name' }, value), h('span', { class: 'facet-count' }, fmtNum(n))));
      })))));

  const total = answer.total || 0;
  const hits = answer.hits || [];
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pagination' },
    h('span', { class: 'muted', id: 'result-range' }, total ? `${fmtNum(offset + 1)}–${fmtNum(offset + hits.length)} of ${fmtNum(total)}` : '0 results'),
    h('span', { class: 'muted small' }, answer.took_us !== undefined ? ` · ${(answer.took_us / 1000).toFixed(1)} ms` : ''),
    h('div', { class: 'pager-buttons' },
      h('label', { class: 'small muted', for: 'page-size' }, 'Per page'),
      h('select', { id: 'page-size', class: 'small', onchange: (e) => go(q, 1, Number(e.target.value)) },
        PAGE_SIZES.map((n) => h('option', { value: n, selected: n === PAGE_SIZE }, String(n)))),
      h('button', { type: 'button', class: 'btn btn-small', id: 'prev-page', disabled: page <= 1, onclick: () => go(q, page - 1) }, '← Previous'),
      h('span', { class: 'small' }, `Page ${page} of ${pages}`),
      h('button', { type: 'button', class: 'btn btn-small', id: 'next-page', disabled: page >= pages, onclick: () => go(q, page + 1) }, 'Next →')));
  mount(results, pager, resultsTable(hits, total, offset));
}
