// Finding detail: evidence, remediation, framework mappings, lifecycle history
// and the suppression form (admin).

import { h, mount, card, pageHead, table, facts, empty, severityBadge, statePill, pill, fmtTime, relTime, formError, showFormError, field, toast, confirmDialog } from '../dom.js';

function suppressionView(s) {
  if (!s) return h('p', { class: 'muted' }, 'Not suppressed: this finding counts against posture while unresolved.');
  const expired = s.expires_ms && s.expires_ms <= Date.now();
  return facts([
    ['Kind', pill(s.kind === 'accepted_risk' ? 'accepted risk' : 'suppressed (false positive)', expired ? 'neutral' : 'warn')],
    ['Reason', s.reason],
    ['Owner', s.owner],
    ['Since', fmtTime(s.created_ms)],
    ['Expires', s.expires_ms ? h('span', {}, fmtTime(s.expires_ms), expired ? ' (expired)' : '') : 'never'],
  ]);
}

function suppressionForm(ctx, f, rerender) {
  const kind = h('select', { name: 'kind' },
    h('option', { value: 'suppressed' }, 'Suppress (false positive)'),
    h('option', { value: 'accepted_risk' }, 'Accept risk (needs an expiry)'));
  const reason = h('textarea', { name: 'reason', rows: 2, required: true, placeholder: 'Why this does not need fixing' });
  const owner = h('input', { name: 'owner', type: 'text', placeholder: 'You, when empty' });
  const expires = h('input', { name: 'expires', type: 'date' });
  const err = formError();
  const form = h('form', { class: 'form', id: 'suppress-form', 'aria-label': 'Suppress finding' },
    h('div', { class: 'form-row' }, field('Kind', kind), field('Expires', expires)),
    field('Reason', reason), field('Owner', owner), err,
    h('div', { class: 'form-actions' },
      h('button', { class: 'btn btn-primary', type: 'submit' }, 'Save suppression'),
      f.suppression ? h('button', {
        class: 'btn btn-danger', type: 'button', id: 'unsuppress',
        onclick: async () => {
          if (!(await confirmDialog('Remove suppression', 'The finding will count against posture again.', 'Remove'))) return;
          try {
            await ctx.api.del(`/findings/${encodeURIComponent(f.id)}/suppression`);
            toast('Suppression removed');
            rerender();
          } catch (e) { showFormError(err, e); }
        },
      }, 'Remove suppression') : null));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showFormError(err, null);
    const body = { kind: kind.value, reason: reason.value.trim() };
    if (owner.value.trim()) body.owner = owner.value.trim();
    if (expires.value) body.expires_ms = new Date(`${expires.value}T23:59:59`).getTime();
    try {
      await ctx.api.put(`/findings/${encodeURIComponent(f.id)}/suppression`, body);
      toast('Suppression saved');
      rerender();
    } catch (ex) { showFormError(err, ex); }
  });
  return form;
}

/** Renders one finding. */
export async function render(ctx) {
  const id = ctx.params[0];
  const f = await ctx.api.get(`/findings/${encodeURIComponent(id)}`);
  if (!ctx.alive()) return;
  const rerender = () => render(ctx);
  const history = (f.history || []).slice().reverse();
  mount(ctx.main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' },
      h('a', { href: '/ui/search' }, 'Findings'), ' / ', h('span', { class: 'mono' }, f.id)),
    pageHead(h('span', { class: 'title-with-badge' }, severityBadge(f.severity), h('span', { id: 'finding-title' }, f.title)),
      h('span', {}, statePill(f.state), ' ', f.suppression ? pill('suppressed', 'warn') : null, ' ', h('span', { class: 'mono' }, f.rule_id))),
    h('div', { class: 'grid-2' },
      card('Evidence', h('div', {},
        h('pre', { class: 'evidence', id: 'evidence' }, f.evidence || '—'),
        facts([
          ['Asset', h('a', { href: `/ui/asset/${encodeURIComponent(f.asset)}`, id: 'asset-link' }, f.asset)],
          ['Location', h('span', { class: 'mono' }, f.location || '—')],
          ['Check', f.check || '—'],
          f.port ? ['Port', String(f.port)] : null,
          ['Job', f.job_id || '—'],
          f.not_after_ms ? ['Certificate expires', fmtTime(f.not_after_ms)] : null,
        ]))),
      card('Lifecycle', h('div', {},
        facts([
          ['Status', statePill(f.state)],
          ['First seen', fmtTime(f.first_seen_ms)],
          ['Last seen', h('span', {}, fmtTime(f.last_seen_ms), ' (', relTime(f.last_seen_ms), ')')],
          ['Resolved', f.resolved_ms ? fmtTime(f.resolved_ms) : '—'],
          ['Reopened', `${f.reopened || 0} times`],
        ]),
        h('h3', { class: 'sub' }, 'History'),
        history.length
          ? h('ol', { class: 'timeline', id: 'history' }, history.map((t) => h('li', {}, statePill(t.state), ' ', fmtTime(t.at_ms))))
          : h('p', { class: 'muted' }, 'No transitions recorded.')))),
    card('Remediation', h('p', { class: 'remediation' }, f.remediation || 'No remediation text for this rule.')),
    card('Framework mappings', table([
      { label: 'Framework', render: (m) => h('span', { class: 'badge badge-fw' }, m.framework) },
      { label: 'Control', render: (m) => h('span', { class: 'mono' }, m.control) },
      { label: 'Title', render: (m) => m.title },
    ], f.mappings || [], { caption: 'Framework mappings', emptyState: empty('Not mapped to any framework control') })),
    card('Suppression', h('div', { id: 'suppression' },
      suppressionView(f.suppression),
      ctx.can('admin') ? suppressionForm(ctx, f, rerender) : null)));
}
