// Compliance reports: list, create (auditor), progress polling and download.
// API contract: POST/GET /reports, GET /reports/{id}, GET /reports/{id}/download.

import { h, mount, card, pageHead, table, empty, errorBox, pill, fmtTime, fmtBytes, formError, showFormError, field, toast } from '../dom.js';
import { FRAMEWORKS } from './dashboard.js';

const FORMATS = [['pdf', 'PDF'], ['json', 'JSON'], ['csv', 'CSV'], ['ocsf', 'OCSF'], ['sarif', 'SARIF']];
const TONES = { queued: 'neutral', running: 'info', done: 'good', failed: 'bad' };
const POLL_MS = 1500;

function progress(r) {
  const pct = Math.max(0, Math.min(100, Number(r.progress) || (r.status === 'done' ? 100 : 0)));
  const bar = h('span', { class: 'progress-fill' });
  bar.style.width = `${pct}%`;
  return h('div', { class: 'progress', role: 'progressbar', 'aria-valuenow': pct, 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-label': `Report ${r.id} progress` },
    h('span', { class: 'progress-track' }, bar), h('span', { class: 'small muted' }, `${pct}%`));
}

/** Renders the reports page. */
export async function render(ctx) {
  const list = h('div', { id: 'reports-list' });
  let timer = null;
  ctx.onLeave(() => clearTimeout(timer));

  let createCard = null;
  if (ctx.can('auditor')) {
    const fw = h('select', { name: 'framework', id: 'report-framework' }, FRAMEWORKS.map(([k, n]) => h('option', { value: k }, n)));
    const fmt = h('select', { name: 'format', id: 'report-format' }, FORMATS.map(([k, n]) => h('option', { value: k }, n)));
    const err = formError();
    const submit = h('button', { class: 'btn btn-primary', type: 'submit', id: 'create-report' }, 'Create report');
    const form = h('form', { class: 'form form-inline', 'aria-label': 'Create report' }, field('Framework', fw), field('Format', fmt), submit, err);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      showFormError(err, null);
      submit.disabled = true;
      try {
        await ctx.api.post('/reports', { framework: fw.value, format: fmt.value });
        toast('Report queued');
        load();
      } catch (ex) { showFormError(err, ex); } finally { submit.disabled = false; }
    });
    createCard = card('New report', form);
  }
  mount(ctx.main, pageHead('Reports', 'Compliance reports per framework'), createCard, card('Reports', list));

  async function load() {
    clearTimeout(timer);
    let reports;
    try {
      reports = await ctx.api.get('/reports');
    } catch (e) {
      if (ctx.alive()) mount(list, errorBox(e, 'reports'));
      return;
    }
    if (!ctx.alive()) return;
    reports.sort((a, b) => (b.created_ms || 0) - (a.created_ms || 0));
    mount(list, table([
      { label: 'Report', render: (r) => h('div', {}, h('span', { class: 'badge badge-fw' }, r.framework), h('div', { class: 'sub-line' }, r.id)) },
      { label: 'Format', render: (r) => (r.format || '').toUpperCase() },
      { label: 'Status', render: (r) => h('span', { class: 'report-status', dataset: { id: r.id, status: r.status } }, pill(r.status, TONES[r.status] || 'neutral')) },
      { label: 'Progress', render: progress },
      { label: 'Requested', class: 'nowrap', render: (r) => h('div', {}, fmtTime(r.created_ms), h('div', { class: 'small muted' }, r.requested_by || '')) },
      { label: 'Size', class: 'nowrap', render: (r) => fmtBytes(r.size_bytes) },
      {
        label: 'Download', render: (r) => (r.status === 'done'
          ? h('a', { class: 'btn btn-small', href: ctx.api.url(`/reports/${encodeURIComponent(r.id)}/download`), download: '', dataset: { download: r.id } }, 'Download')
          : r.status === 'failed' ? h('span', { class: 'small text-bad' }, r.error || 'failed') : h('span', { class: 'muted small' }, 'not ready')),
      },
    ], reports, { caption: 'Reports', emptyState: empty('No reports yet', ctx.can('auditor') ? 'Create one above.' : 'An auditor or admin can create reports.') }));
    if (reports.some((r) => r.status === 'queued' || r.status === 'running')) timer = setTimeout(load, POLL_MS);
  }
  await load();
}
