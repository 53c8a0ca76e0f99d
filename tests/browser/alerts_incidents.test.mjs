// Alerting and NIS2 incident flows through the console: channel, rule, mute
// window and test delivery on the alerts page; an incident with its reporting
// deadlines, a stage marked sent and a stage exported as PDF.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { BASE, ADMIN, VIEWER, launch, newPage, withShot, login, apiGet } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function freshPage() {
  await browser.context.clearCookies();
  const page = await newPage(browser.context);
  await page.goto(`${BASE}/ui/login`);
  await page.evaluate(() => localStorage.clear());
  return page;
}

test('admin adds a webhook channel, a rule and a mute window, and sends a test alert', async () => {
  const page = await freshPage();
  await withShot(page, 'alerts', async () => {
    await login(page, ADMIN);
    await page.getByRole('link', { name: 'Alerts' }).click();
    await page.locator('h1', { hasText: 'Alerts' }).waitFor();

    // Port 9 on loopback is closed: attempts fail and stay visible as retries.
    const channelForm = page.getByRole('form', { name: 'Add alert channel' });
    await channelForm.getByLabel('Name').fill('SOC webhook');
    await channelForm.getByLabel('Kind').selectOption('webhook');
    await channelForm.getByLabel('URL or recipients').fill('http://127.0.0.1:9/hook');
    await channelForm.getByRole('button', { name: 'Add channel' }).click();
    const secret = page.locator('.secret-box code');
    await secret.waitFor();
    assert.match(await secret.textContent(), /^\S{16,}$/, 'the signing secret is shown once');
    await page.locator('#channels td', { hasText: 'SOC webhook' }).waitFor();
    const channels = await apiGet(page, '/tenants/acme/alert-channels');
    const channel = channels.find((c) => c.name === 'SOC webhook');
    assert.ok(channel, 'the channel is stored');
    assert.equal(channel.secret, undefined, 'secrets are never listed');

    // A rule for that channel (the form offers the new channel).
    await page.locator('#rule-channel').selectOption(channel.id);
    await page.locator('#rule-severity').selectOption('medium');
    await page.locator('#add-rule').click();
    await page.locator('td', { hasText: 'finding_new, incident_deadline' }).waitFor();
    const rules = await apiGet(page, '/tenants/acme/alert-rules');
    assert.ok(rules.some((r) => r.channel_id === channel.id && r.min_severity === 'medium'), JSON.stringify(rules));

    // A mute window in the future (so it mutes nothing now).
    await page.locator('#mute-starts').fill('2030-01-07T22:00');
    await page.locator('#mute-ends').fill('2030-01-08T02:00');
    await page.locator('#mute-reason').fill('quarterly patching');
    await page.locator('#add-mute').click();
    await page.locator('td', { hasText: 'quarterly patching' }).waitFor();

    // A test alert appears in the delivery log with its failed attempt.
    await page.locator('#channels tr', { hasText: 'SOC webhook' }).getByRole('button', { name: 'Send test' }).click();
    let delivery;
    for (let i = 0; i < 80 && !delivery; i++) {
      const list = await apiGet(page, '/tenants/acme/alert-deliveries?limit=100');
      delivery = list.find((d) => d.channel_id === channel.id && d.attempts > 0);
      if (!delivery) await page.waitForTimeout(250);
    }
    assert.ok(delivery, 'the test delivery was attempted');
    assert.ok(delivery.last_error, 'the refused connection is recorded');
    await page.locator('#deliveries-filter, [aria-label="Delivery status"]').selectOption('');
    await page.locator('#deliveries td', { hasText: delivery.channel_id }).first().waitFor();
  });
  await page.close();
});

test('a viewer cannot see alerting', async () => {
  const page = await freshPage();
  await withShot(page, 'alerts-viewer', async () => {
    await login(page, VIEWER);
    await page.goto(`${BASE}/ui/alerts`);
    await page.getByText('Auditors and admins only').waitFor();
    assert.equal(await page.getByRole('form', { name: 'Add alert channel' }).count(), 0);
  });
  await page.close();
});

test('an incident shows its NIS2 deadlines, a stage is marked sent and exported as PDF', async () => {
  const page = await freshPage();
  await withShot(page, 'incidents', async () => {
    await login(page, ADMIN);
    await page.getByRole('link', { name: 'Incidents' }).click();
    await page.locator('h1', { hasText: 'Incidents' }).waitFor();
    const form = page.getByRole('form', { name: 'Report incident' });
    await form.getByLabel('Title').fill('Credential stuffing against the portal');
    await form.getByLabel('Description').fill('Thousands of logins from one ASN');
    await form.locator('input[name="significant"]').check();
    await form.getByRole('button', { name: 'Open incident' }).click();
    const row = page.locator('#incidents-list tr', { hasText: 'Credential stuffing against the portal' });
    await row.waitFor();
    const incidents = await apiGet(page, '/tenants/acme/incidents');
    const inc = incidents.find((i) => i.title === 'Credential stuffing against the portal');
    assert.ok(inc && inc.significant, JSON.stringify(incidents));
    const hour = 3600 * 1000;
    assert.equal(inc.deadlines.early_warning_ms - inc.detected_ms, 24 * hour);
    assert.equal(inc.deadlines.notification_ms - inc.detected_ms, 72 * hour);
    assert.equal(await row.locator('.pill', { hasText: 'due' }).count(), 3);

    await row.getByRole('button', { name: 'Mark early warning sent' }).click();
    await row.locator('.pill', { hasText: 'sent' }).waitFor();
    const after = (await apiGet(page, '/tenants/acme/incidents')).find((i) => i.id === inc.id);
    assert.ok(after.stages.early_warning_sent_ms, JSON.stringify(after));

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      row.getByRole('link', { name: 'Export early warning' }).click(),
    ]);
    const head = fs.readFileSync(await download.path()).subarray(0, 5).toString('latin1');
    assert.equal(head, '%PDF-');
  });
  await page.close();
});
