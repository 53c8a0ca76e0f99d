// Alerting: channels (webhook, Slack, email), rules, mute windows and the
// delivery log with retries. API contract: /alert-channels, /alert-rules,
// /mute-windows, /alert-deliveries. Needs auditor; changes need admin.

import { h, mount, card, pageHead, table, empty, section, pill, fmtTime, relTime, formError, showFormError, field, toast, confirmDialog, severityBadge } from '../dom.js';
import { qs } from '../api.js';

const DELIVERY_TONES = { pending: 'warn', delivered: 'good', dead: 'bad' };

function channelForm(ctx, reload) {
  const name = h('input', { type: 'text', name: 'name', required: true, placeholder: 'e.g. SOC webhook' });
  const kind = h('select', { name: 'kind' }, h('option', { value: 'webhook' }, 'Webhook'), h('option', { value: 'slack' }, 'Slack'), h('option', { value: 'email' }, 'Email'));
  const target = h('input', { type: 'text', name: 'target', required: true, placeholder: 'https://… or a@x.net, b@x.net' });
  const err = formError();
  const out = h('div');
  const form = h('form', { class: 'form form-inline', 'aria-label': 'Add alert channel' },
    field('Name', name), field('Kind', kind), field('URL or recipients', target),
    h('button', { class: 'btn btn-primary', type: 'submit' }, 'Add channel'), err);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showFormError(err, null);
    const body = { name: name.value.trim(), kind: kind.value };
    if (kind.value === 'email') body.to = target.value.split(',').map((s) => s.trim()).filter(Boolean);
    else body.url = target.value.trim();
    try {
      const c = await ctx.api.post('/alert-channels', body);
      form.reset();
      mount(out, c.secret ? h('div', { class: 'secret-box' }, h('strong', {}, 'Webhook signing secret (shown once): '), h('code', {}, c.secret)) : null);
      toast('Channel added');
      reload();
    } catch (ex) { showFormError(err, ex); }
  });
  return h('div', {}, form, out);
}

const EVENTS = [['finding_new', 'New findings'], ['finding_reopened', 'Reopened findings'], ['change', 'Changes'], ['incident_deadline', 'NIS2 incident deadlines']];
const CHANGE_TYPES = ['PORT_OPENED', 'PORT_CLOSED', 'CERT_ROTATED', 'CERT_EXPIRING', 'TLS_PROTOCOL_ADDED', 'HEADER_REMOVED', 'DNS_RECORD_CHANGED', 'SERVICE_CHANGED', 'ASSET_APPEARED', 'ASSET_DISAPPEARED'];

function ruleForm(ctx, reload) {
  const channel = h('select', { name: 'channel', id: 'rule-channel', required: true });
  const severity = h('select', { name: 'min_severity', id: 'rule-severity' }, ['info', 'low', 'medium', 'high', 'critical'].map((s) => h('option', { value: s, selected: s === 'high' }, s)));
  const events = EVENTS.map(([v, label]) => h('input', { type: 'checkbox', name: 'events', value: v, checked: v === 'finding_new' || v === 'incident_deadline' }));
  const changes = h('select', { name: 'change_types', id: 'rule-changes', multiple: true, size: 4 }, CHANGE_TYPES.map((t) => h('option', { value: t }, t)));
  const err = formError();
  const form = h('form', { class: 'form', 'aria-label': 'Add alert rule' },
    field('Channel', channel), field('Lowest severity', severity, 'for finding events'),
    h('fieldset', { class: 'checks' }, h('legend', {}, 'Events'), EVENTS.map(([, label], i) => h('label', { class: 'checkbox' }, events[i], ' ', label))),
    field('Change types', changes, 'for change events (Ctrl/⌘-click for several)'),
    err, h('div', { class: 'form-actions' }, h('button', { class: 'btn btn-primary', type: 'submit', id: 'add-rule' }, 'Add rule')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showFormError(err, null);
    const body = {
      channel_id: channel.value,
      min_severity: severity.value,
      events: events.filter((c) => c.checked).map((c) => c.value),
      change_types: [...changes.selectedOptions].map((o) => o.value),
    };
    try { await ctx.api.post('/alert-rules', body); toast('Rule added'); reload(); } catch (ex) { showFormError(err, ex); }
  });
  /** Refreshes the channel choices after channels change. */
  form.setChannels = (list) => mount(channel, ...list.map((c) => h('option', { value: c.id }, `${c.name} (${c.kind})`)));
  return form;
}

function muteForm(ctx, reload) {
  const starts = h('input', { type: 'datetime-local', name: 'starts', id: 'mute-starts', required: true });
  const ends = h('input', { type: 'datetime-local', name: 'ends', id: 'mute-ends', required: true });
  const reason = h('input', { type: 'text', name: 'reason', id: 'mute-reason', required: true, placeholder: 'e.g. maintenance window' });
  const err = formError();
  const form = h('form', { class: 'form form-inline', 'aria-label': 'Add mute window' },
    field('From', starts), field('Until', ends), field('Reason', reason),
    h('button', { class: 'btn btn-primary', type: 'submit', id: 'add-mute' }, 'Mute'), err);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showFormError(err, null);
    const body = { starts_ms: new Date(starts.value).getTime(), ends_ms: new Date(ends.value).getTime(), reason: reason.value.trim() };
    try { await ctx.api.post('/mute-windows', body); toast('Mute window added'); form.reset(); reload(); } catch (ex) { showFormError(err, ex); }
  });
  return form;
}

/** Renders the alerts page. */
export async function render(ctx) {
  if (!ctx.can('auditor')) {
    mount(ctx.main, pageHead('Alerts', 'Alert channels and deliveries'), empty('Auditors and admins only', 'Your role in this tenant cannot view alerting.'));
    return;
  }
  const admin = ctx.can('admin');
  const channels = h('div', { id: 'channels' });
  const rules = h('div');
  const mutes = h('div');
  const deliveries = h('div', { id: 'deliveries' });
  const filter = h('select', { 'aria-label': 'Delivery status' }, ['', 'pending', 'delivered', 'dead'].map((s) => h('option', { value: s }, s || 'all')));
  const rForm = admin ? ruleForm(ctx, () => loadRules()) : null;
  const mForm = admin ? muteForm(ctx, () => loadMutes()) : null;
  mount(ctx.main,
    pageHead('Alerts', 'Where findings, changes and incident deadlines are sent'),
    admin ? card('Add a channel', channelForm(ctx, () => loadChannels())) : null,
    card('Channels', channels),
    h('div', { class: 'grid-2' }, card('Rules', h('div', {}, rForm, rules)), card('Mute windows', h('div', {}, mForm, mutes))),
    card('Deliveries', deliveries, filter));

  const del = async (path, what, reload) => {
    if (!(await confirmDialog(`Delete ${what}`, `Delete this ${what}?`, 'Delete'))) return;
    try { await ctx.api.del(path); toast(`${what} deleted`); reload(); } catch (e) { toast(e.describe(), 'bad'); }
  };

  const loadChannels = () => section(channels, 'alert channels', async () => {
    const list = await ctx.api.get('/alert-channels');
    rForm?.setChannels(list);
    return channelTable(list);
  });
  const channelTable = (list) => table([
    { label: 'Name', render: (c) => h('strong', {}, c.name) },
    { label: 'Kind', render: (c) => pill(c.kind, 'info') },
    { label: 'Target', render: (c) => h('span', { class: 'mono small' }, c.target) },
    { label: 'Created', render: (c) => fmtTime(c.created_ms) },
    ...(admin ? [{
      label: 'Actions', render: (c) => h('div', { class: 'actions' },
        h('button', {
          class: 'btn btn-small', type: 'button',
          onclick: async () => { try { await ctx.api.post(`/alert-channels/${encodeURIComponent(c.id)}/test`); toast('Test alert queued'); loadDeliveries(); } catch (e) { toast(e.describe(), 'bad'); } },
        }, 'Send test'),
        h('button', { class: 'btn btn-small btn-danger', type: 'button', onclick: () => del(`/alert-channels/${encodeURIComponent(c.id)}`, 'channel', loadChannels) }, 'Delete')),
    }] : []),
  ], list, { caption: 'Channels', emptyState: empty('No alert channels', admin ? 'Add a webhook, Slack or email channel above.' : 'An admin can add channels.') });

  const loadRules = () => section(rules, 'alert rules', async () => table([
    { label: 'Channel', render: (r) => h('span', { class: 'mono small' }, r.channel_id) },
    { label: 'Min. severity', render: (r) => severityBadge(r.min_severity) },
    { label: 'Events', render: (r) => (r.events || []).join(', ') || '—' },
    { label: 'Enabled', render: (r) => (r.enabled ? pill('on', 'good') : pill('off', 'neutral')) },
    ...(admin ? [{ label: '', render: (r) => h('button', { class: 'btn btn-small btn-danger', type: 'button', onclick: () => del(`/alert-rules/${encodeURIComponent(r.id)}`, 'rule', loadRules) }, 'Delete') }] : []),
  ], await ctx.api.get('/alert-rules'), { caption: 'Rules', emptyState: empty('No alert rules') }));

  const loadMutes = () => section(mutes, 'mute windows', async () => table([
    { label: 'From', render: (m) => fmtTime(m.starts_ms) },
    { label: 'Until', render: (m) => fmtTime(m.ends_ms) },
    { label: 'Reason', render: (m) => m.reason },
    ...(admin ? [{ label: '', render: (m) => h('button', { class: 'btn btn-small btn-danger', type: 'button', onclick: () => del(`/mute-windows/${encodeURIComponent(m.id)}`, 'mute window', loadMutes) }, 'Delete') }] : []),
  ], await ctx.api.get('/mute-windows'), { caption: 'Mute windows', emptyState: empty('No mute windows') }));

  const loadDeliveries = () => section(deliveries, 'deliveries', async () => table([
    { label: 'Event', render: (d) => h('div', {}, h('strong', {}, d.event_kind), h('div', { class: 'small muted' }, d.summary)) },
    { label: 'Channel', render: (d) => h('span', { class: 'mono small' }, d.channel_id) },
    { label: 'Status', render: (d) => pill(d.status, DELIVERY_TONES[d.status] || 'neutral') },
    { label: 'Attempts', render: (d) => String(d.attempts ?? 0) },
    { label: 'Last error', render: (d) => h('span', { class: 'small' }, d.last_error || '') },
    { label: 'Created', render: (d) => relTime(d.created_ms) },
    ...(admin ? [{
      label: '', render: (d) => (d.status === 'dead' ? h('button', {
        class: 'btn btn-small', type: 'button',
        onclick: async () => { try { await ctx.api.post(`/alert-deliveries/${encodeURIComponent(d.id)}/retry`); toast('Delivery queued again'); loadDeliveries(); } catch (e) { toast(e.describe(), 'bad'); } },
      }, 'Retry') : null),
    }] : []),
  ], await ctx.api.get(`/alert-deliveries${qs({ status: filter.value, limit: 100 })}`), { caption: 'Deliveries', emptyState: empty('No deliveries') }));

  filter.addEventListener('change', loadDeliveries);
  loadChannels();
  loadRules();
  loadMutes();
  loadDeliveries();
}
