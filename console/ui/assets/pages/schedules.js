// Schedules: collector-scheduled jobs with their next due time, and recent scan runs.

import { h, mount, card, pageHead, table, empty, section, pill, relTime, fmtTime, fmtNum, toast } from '../dom.js';
import { qs } from '../api.js';

const RUN_TONES = { succeeded: 'good', running: 'info', queued: 'neutral', failed: 'bad', missed: 'warn' };

/** Renders the schedules page. */
export async function render(ctx) {
  const sched = h('div');
  const runs = h('div');
  const scope = h('div');
  mount(ctx.main, pageHead('Schedules', 'Scheduled scan jobs, runs and authorised scope'), card('Schedules', sched), card('Recent runs', runs), card('Scope and jobs', scope));
  const loadRuns = () => section(runs, 'runs', async () => table([
    { label: 'Run', render: (r) => h('span', { class: 'mono small' }, r.run_id) },
    { label: 'Job', render: (r) => r.job_id },
    { label: 'Agent', render: (r) => h('span', { class: 'mono small' }, r.agent) },
    { label: 'Status', render: (r) => pill(r.status, RUN_TONES[r.status] || 'neutral') },
    { label: 'Scheduled', render: (r) => fmtTime(r.scheduled_ms) },
    { label: 'Finished', render: (r) => fmtTime(r.finished_ms) },
    { label: 'Observations', render: (r) => fmtNum(r.observations) },
    { label: 'Error', render: (r) => r.error || '' },
  ], await ctx.api.get(`/runs${qs({ limit: 50 })}`), { caption: 'Runs', emptyState: empty('No scan runs yet', 'Runs are recorded when a schedule fires or an admin starts one.') }));
  const runNow = (s) => h('button', {
    class: 'btn btn-small', type: 'button', dataset: { runNow: s.job_id },
    title: 'Queue a run on every agent now (the job\'s windows still apply)',
    onclick: async (e) => {
      e.target.disabled = true;
      try {
        const queued = await ctx.api.post(`/schedules/${encodeURIComponent(s.job_id)}/run`);
        toast(`${queued.length} run(s) queued`);
        loadRuns();
      } catch (err) { toast(err.describe(), 'bad'); } finally { e.target.disabled = false; }
    },
  }, 'Run now');
  section(sched, 'schedules', async () => table([
    { label: 'Job', render: (s) => h('strong', {}, s.job_id) },
    { label: 'Schedule', render: (s) => h('span', { class: 'mono' }, s.schedule) },
    { label: 'Time zone', render: (s) => s.timezone || 'UTC' },
    { label: 'Windows', render: (s) => (s.windows?.length ? s.windows.join(', ') : 'any time') },
    { label: 'Next due', render: (s) => h('span', {}, fmtTime(s.next_due_ms), ' (', relTime(s.next_due_ms), ')') },
    { label: 'Pending runs', render: (s) => fmtNum(s.pending_runs) },
    ...(ctx.can('admin') ? [{ label: 'Actions', render: runNow }] : []),
  ], await ctx.api.get('/schedules'), { caption: 'Schedules', emptyState: empty('No scheduled jobs', 'Jobs with a cron schedule in the collector configuration appear here.') }));
  loadRuns();
  section(scope, 'scope', async () => {
    const s = await ctx.api.get('/scope');
    return h('pre', { class: 'json' }, JSON.stringify(s, null, 2));
  });
}
