// NIS2 incidents: list with reporting deadlines, create (auditor), mark stages
// sent, export. API contract: /incidents, /incidents/{id}, /incidents/{id}/export/{stage}.

import { h, mount, card, pageHead, table, empty, errorBox, pill, fmtTime, relTime, formError, showFormError, field, toast } from '../dom.js';

const STAGES = [['early_warning', 'Early warning'], ['notification', 'Notification'], ['final_report', 'Final report']];

function deadlineCell(i, stage) {
  const sent = i.stages?.[`${stage}_sent_ms`];
  const due = i.deadlines?.[`${stage}_ms`];
  if (sent) return h('span', {}, pill('sent', 'good'), ' ', h('span', { class: 'small muted' }, fmtTime(sent)));
  const overdue = (i.overdue || []).includes(stage);
  return h('span', {}, overdue ? pill('overdue', 'bad') : pill('due', 'warn'), ' ', h('span', { class: 'small' }, relTime(due)));
}

/** Renders the incidents page. */
export async function render(ctx) {
  const list = h('div', { id: 'incidents-list' });
  let createCard = null;
  if (ctx.can('auditor')) {
    const title = h('input', { type: 'text', name: 'title', required: true, placeholder: 'Short description of the incident' });
    const desc = h('textarea', { name: 'description', rows: 2, placeholder: 'What happened, impact, affected services' });
    const significant = h('input', { type: 'checkbox', name: 'significant' });
    const err = formError();
    const form = h('form', { class: 'form', 'aria-label': 'Report incident' },
      field('Title', title), field('Description', desc),
      h('label', { class: 'checkbox' }, significant, ' Significant incident (NIS2 Art. 23 reporting applies)'),
      err, h('div', { class: 'form-actions' }, h('button', { class: 'btn btn-primary', type: 'submit' }, 'Open incident')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      showFormError(err, null);
      try {
        await ctx.api.post('/incidents', { title: title.value.trim(), description: desc.value.trim(), significant: significant.checked, significance: {} });
        toast('Incident opened');
        form.reset();
        load();
      } catch (ex) { showFormError(err, ex); }
    });
    createCard = card('Open an incident', form);
  }
  mount(ctx.main, pageHead('Incidents', 'NIS2 reporting deadlines: early warning 24 h, notification 72 h, final report one month after detection'), createCard, card('Incidents', list));

  async function markSent(i, stage) {
    try {
      await ctx.api.patch(`/incidents/${encodeURIComponent(i.id)}`, { mark_stage_sent: stage });
      toast('Stage marked as sent');
      load();
    } catch (e) { toast(e.describe(), 'bad'); }
  }

  async function load() {
    let incidents;
    try {
      incidents = await ctx.api.get('/incidents');
    } catch (e) {
      if (ctx.alive()) mount(list, errorBox(e, 'incidents'));
      return;
    }
    if (!ctx.alive()) return;
    mount(list, table([
      { label: 'Incident', class: 'col-wide', render: (i) => h('div', {}, h('strong', {}, i.title), h('div', { class: 'small muted' }, `detected ${fmtTime(i.detected_ms)}`)) },
      { label: 'Status', render: (i) => h('span', {}, pill(i.status, i.status === 'open' ? 'warn' : 'neutral'), i.significant ? [' ', pill('significant', 'bad')] : null) },
      ...STAGES.map(([s, label]) => ({ label, render: (i) => deadlineCell(i, s) })),
      {
        label: 'Actions', render: (i) => h('div', { class: 'actions actions-stacked' },
          ctx.can('auditor') && i.status === 'open'
            ? STAGES.filter(([s]) => !i.stages?.[`${s}_sent_ms`]).slice(0, 1).map(([s]) => h('button', { class: 'btn btn-small', type: 'button', onclick: () => markSent(i, s) }, `Mark ${s.replace('_', ' ')} sent`))
            : null,
          STAGES.map(([s]) => h('a', { class: 'btn btn-small btn-ghost', href: ctx.api.url(`/incidents/${encodeURIComponent(i.id)}/export/${s}?format=pdf`), download: '' }, `Export ${s.replace('_', ' ')}`))),
      },
    ], incidents, { caption: 'Incidents', rowClass: (i) => ((i.overdue || []).length ? 'row-alert' : null), emptyState: empty('No incidents', 'Incidents with their NIS2 reporting deadlines appear here.') }));
  }
  await load();
}
