// Agents: status, last seen, delivery counters; revoke and enrolment tokens for admins.

import { h, mount, card, pageHead, table, empty, section, pill, relTime, fmtTime, fmtNum, toast, confirmDialog, formError, showFormError, field } from '../dom.js';

function status(a) {
  if (a.revoked_ms) return pill('revoked', 'bad');
  return a.online ? pill('online', 'good') : pill('offline', 'neutral');
}

function tokenPanel(ctx) {
  const out = h('div', { id: 'token-result' });
  const ttl = h('select', { name: 'ttl' },
    h('option', { value: 3600 }, '1 hour'),
    h('option', { value: 86400, selected: true }, '24 hours'),
    h('option', { value: 604800 }, '7 days'));
  const err = formError();
  const form = h('form', { class: 'form form-inline', 'aria-label': 'Create enrolment token' },
    field('Valid for', ttl), h('button', { class: 'btn btn-primary', type: 'submit', id: 'create-token' }, 'Create enrolment token'), err);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showFormError(err, null);
    try {
      const t = await ctx.api.post('/tokens', { ttl_secs: Number(ttl.value) });
      const cmd = `agent enroll --collector <collector-host>:<port> --token ${t.token} --ca-fingerprint ${t.ca_fingerprint}`;
      mount(out, h('div', { class: 'secret-box', role: 'status' },
        h('strong', {}, 'Single-use token (shown once, expires ', fmtTime(t.expires_ms), ')'),
        h('pre', { class: 'mono', id: 'token-command' }, cmd),
        h('button', {
          class: 'btn btn-small', type: 'button',
          onclick: async () => { try { await navigator.clipboard.writeText(cmd); toast('Copied'); } catch { toast('Copy failed: select the text instead', 'bad'); } },
        }, 'Copy command')));
    } catch (ex) { showFormError(err, ex); }
  });
  return h('div', {}, form, out);
}

/** Renders the agents page. */
export async function render(ctx) {
  const list = h('div');
  mount(ctx.main,
    pageHead('Agents', 'Enrolled agents of this tenant'),
    ctx.can('admin') ? card('Enrol an agent', tokenPanel(ctx)) : null,
    card('Agents', list));
  const load = () => section(list, 'agents', async () => {
    const agents = await ctx.api.get('/agents');
    return table([
      { label: 'Agent', render: (a) => h('div', {}, h('strong', {}, a.hostname || a.agent), h('div', { class: 'mono small muted' }, a.agent)) },
      { label: 'Status', render: status },
      { label: 'Last seen', render: (a) => relTime(a.last_seen_ms) },
      { label: 'Enrolled', render: (a) => fmtTime(a.enrolled_ms) },
      { label: 'Certificate expires', render: (a) => fmtTime(a.cert_not_after_ms) },
      { label: 'Batches / records', render: (a) => `${fmtNum(a.delivery?.batches ?? 0)} / ${fmtNum(a.delivery?.records ?? 0)}` },
      ...(ctx.can('admin') ? [{
        label: 'Actions', render: (a) => (a.revoked_ms ? h('span', { class: 'muted small' }, `revoked ${fmtTime(a.revoked_ms)}`) : h('button', {
          class: 'btn btn-small btn-danger', type: 'button', dataset: { revoke: a.agent },
          onclick: async () => {
            if (!(await confirmDialog('Revoke agent', `Revoke ${a.hostname || a.agent}? It is disconnected now and refused from then on.`, 'Revoke'))) return;
            try {
              await ctx.api.post(`/agents/${encodeURIComponent(a.agent)}/revoke`);
              toast('Agent revoked');
              load();
            } catch (e) { toast(e.describe(), 'bad'); }
          },
        }, 'Revoke')),
      }] : []),
    ], agents, { caption: 'Agents', emptyState: empty('No agents enrolled', ctx.can('admin') ? 'Create an enrolment token above and run agent enroll.' : 'An admin can enrol agents.') });
  });
  load();
}
