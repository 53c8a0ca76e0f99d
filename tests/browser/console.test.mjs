// Browser flows of the web console against a real collector with real scan
// data (set up by run.sh). Runs sequentially in one Chromium.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, ADMIN, VIEWER, launch, newPage, withShot, login, logout, apiGet } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** A fresh page in a fresh cookie jar (contexts of a persistent browser share one, so clear it). */
async function freshPage() {
  await browser.context.clearCookies();
  const page = await newPage(browser.context);
  await page.goto(`${BASE}/ui/login`);
  await page.evaluate(() => localStorage.clear());
  return page;
}

test('bad password shows an error, good password lands on the dashboard', async () => {
  const page = await freshPage();
  await withShot(page, 'login', async () => {
    await page.goto(`${BASE}/`);
    await page.waitForURL(/\/ui\/login/);
    await page.getByLabel('Email').fill(ADMIN.email);
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await assert.doesNotReject(page.locator('#login-error').getByText('Wrong email or password').waitFor());
    assert.match(page.url(), /\/ui\/login/);
    await page.getByLabel('Password').fill(ADMIN.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/ui\/dashboard$/);
    await page.locator('h1', { hasText: 'Dashboard' }).waitFor();
  });
  await page.close();
});

test('dashboard shows the real numbers of the tenant', async () => {
  const page = await freshPage();
  await withShot(page, 'dashboard', async () => {
    await login(page, ADMIN);
    const active = await apiGet(page, '/tenants/acme/findings?q=kind%3Afinding%20-state%3Aresolved&limit=1&facets=true');
    const agents = await apiGet(page, '/tenants/acme/agents');
    assert.ok(active.total > 0, 'the scan produced findings');
    assert.equal(await page.locator('#active-findings').textContent(), String(active.total));
    assert.equal(await page.locator('#agents-online').textContent(), String(agents.filter((a) => a.online).length));
    assert.equal(await page.locator('.stat-of').textContent(), ` / ${agents.length}`);
    for (const [sev, n] of active.facets.severity) {
      assert.equal(await page.locator(`.sev-count[data-severity="${sev}"]`).textContent(), String(n), sev);
    }
    // Posture rows link to a framework search and show a score.
    const nis2 = page.locator('.posture-row[data-framework="nis2"]');
    await nis2.waitFor();
    assert.match(await nis2.locator('.score').textContent(), /^(\d+%|—)$/);
    await page.locator('table.data', { hasText: 'ASSET_APPEARED' }).waitFor();
  });
  await page.close();
});

test('search → facets → paging → finding detail → asset', async () => {
  const page = await freshPage();
  await withShot(page, 'search', async () => {
    await login(page, ADMIN);
    await page.getByRole('link', { name: 'Findings' }).click();
    await page.waitForURL(/\/ui\/search/);
    const query = page.getByLabel('Search query');
    await query.fill('kind:finding check:http');
    await query.press('Enter');
    await page.waitForURL(/q=kind%3Afinding(\+|%20)check%3Ahttp/);
    const expected = await apiGet(page, '/tenants/acme/findings?q=kind%3Afinding%20check%3Ahttp&limit=1&facets=true');
    assert.ok(expected.total > 1, `need several http findings, got ${expected.total}`);
    await page.locator('#result-range', { hasText: `of ${expected.total}` }).waitFor();

    // A severity facet refines the query and every row has that severity.
    const [sev, count] = expected.facets.severity[0];
    await page.locator('.facet[data-facet="severity"] .facet-value', { hasText: sev }).click();
    await page.waitForURL(new RegExp(`severity%3A${sev}`));
    await page.locator('#result-range', { hasText: `of ${count}` }).waitFor();
    assert.match(await query.inputValue(), new RegExp(`severity:${sev}$`));
    const badges = await page.locator('.results tbody .badge').allTextContents();
    assert.equal(badges.length, count);
    assert.ok(badges.every((b) => b.toLowerCase() === sev), badges.join(','));

    // Paging: 10 per page over the unrefined query; the second page continues the first.
    await page.goto(`${BASE}/ui/search?q=${encodeURIComponent('kind:finding sort:port')}&size=10`);
    const all = await apiGet(page, '/tenants/acme/findings?q=kind%3Afinding&limit=1');
    await page.locator('#result-range', { hasText: `1–${Math.min(10, all.total)} of ${all.total}` }).waitFor();
    const first = await page.locator('.results a.finding-link').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
    if (all.total > 10) {
      await page.locator('#next-page').click();
      await page.waitForURL(/page=2/);
      await page.locator('#result-range', { hasText: `11–` }).waitFor();
      const second = await page.locator('.results a.finding-link').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
      assert.equal(second.length, Math.min(10, all.total - 10));
      assert.ok(second.every((h) => !first.includes(h)), 'pages overlap');
      await page.locator('#prev-page').click();
      await page.locator('#result-range', { hasText: '1–10' }).waitFor();
    }

    // Finding detail: evidence and framework mappings, then its asset.
    await page.locator('.results a.finding-link').first().click();
    await page.waitForURL(/\/ui\/findings\/[0-9a-f]+$/);
    const id = page.url().split('/').pop();
    const finding = await apiGet(page, `/tenants/acme/findings/${id}`);
    await page.locator('#finding-title', { hasText: finding.title }).waitFor();
    assert.equal(await page.locator('#evidence').textContent(), finding.evidence);
    const mappings = page.locator('section[aria-label="Framework mappings"] tbody tr');
    assert.equal(await mappings.count(), finding.mappings.length);
    assert.ok(finding.mappings.length > 0);
    await page.locator('section[aria-label="Framework mappings"]', { hasText: finding.mappings[0].control }).waitFor();
    await page.locator('section[aria-label="Remediation"]', { hasText: finding.remediation }).waitFor();
    await page.locator('#asset-link').click();
    await page.waitForURL(new RegExp(`/ui/asset/${encodeURIComponent(finding.asset).replace(/\./g, '\\.')}$`));
    await page.locator('#asset-name', { hasText: finding.asset }).waitFor();
    await page.locator('section[aria-label="Snapshot"] tbody tr').first().waitFor();
    await page.locator('section[aria-label="Change history"]', { hasText: 'ASSET_APPEARED' }).waitFor();
    await page.locator('section[aria-label="Open findings"]', { hasText: finding.title }).waitFor();
  });
  await page.close();
});

test('admin suppresses a finding and removes the suppression', async () => {
  const page = await freshPage();
  await withShot(page, 'suppress', async () => {
    await login(page, ADMIN);
    const hits = await apiGet(page, '/tenants/acme/findings?q=kind%3Afinding%20suppressed%3Afalse&limit=1');
    const id = hits.hits[0].doc.id;
    await page.goto(`${BASE}/ui/findings/${id}`);
    const form = page.locator('#suppress-form');
    await form.getByLabel('Reason').fill('browser test: lab host');
    await form.getByRole('button', { name: 'Save suppression' }).click();
    await page.locator('#suppression', { hasText: 'browser test: lab host' }).waitFor();
    assert.equal((await apiGet(page, `/tenants/acme/findings/${id}`)).suppression.reason, 'browser test: lab host');
    await page.locator('#unsuppress').click();
    await page.getByRole('dialog').getByRole('button', { name: 'Remove' }).click();
    await page.locator('#suppression', { hasText: 'Not suppressed' }).waitFor();
    assert.equal((await apiGet(page, `/tenants/acme/findings/${id}`)).suppression, null);
  });
  await page.close();
});

test('admin creates an enrolment token on the agents page', async () => {
  const page = await freshPage();
  await withShot(page, 'agents-admin', async () => {
    await login(page, ADMIN);
    await page.getByRole('link', { name: 'Agents' }).click();
    await page.locator('td', { hasText: 'browser-test-agent' }).waitFor();
    await page.locator('[data-revoke]').first().waitFor();
    await page.locator('#create-token').click();
    const cmd = await page.locator('#token-command').textContent();
    assert.match(cmd, /--token vgt_[0-9a-f]{64} --ca-fingerprint [0-9a-f]{64}$/);
  });
  await page.close();
});

test('a viewer sees no admin actions', async () => {
  const page = await freshPage();
  await withShot(page, 'viewer', async () => {
    await login(page, VIEWER);
    assert.equal(await page.locator('.role-chip').textContent(), 'viewer');
    const hits = await apiGet(page, '/tenants/acme/findings?q=kind%3Afinding&limit=1');
    const f = hits.hits[0].doc;
    await page.goto(`${BASE}/ui/findings/${f.id}`);
    await page.locator('#evidence').waitFor();
    await page.locator('#suppression').waitFor();
    assert.equal(await page.locator('#suppress-form').count(), 0);
    await page.goto(`${BASE}/ui/asset/${encodeURIComponent(f.asset)}`);
    await page.locator('#asset-name').waitFor();
    assert.equal(await page.locator('#accept-baseline').count(), 0);
    await page.goto(`${BASE}/ui/agents`);
    await page.locator('td', { hasText: 'browser-test-agent' }).waitFor();
    assert.equal(await page.locator('[data-revoke]').count(), 0);
    assert.equal(await page.locator('#create-token').count(), 0);
    await page.goto(`${BASE}/ui/reports`);
    await page.locator('h1', { hasText: 'Reports' }).waitFor();
    assert.equal(await page.locator('#create-report').count(), 0);
    // The server enforces it too.
    const r = await page.request.post(`${BASE}/api/v1/tenants/acme/tokens`, { data: {} });
    assert.equal(r.status(), 403);
  });
  await page.close();
});

test('tenant switcher changes the data; an empty tenant shows empty states', async () => {
  const page = await freshPage();
  await withShot(page, 'tenant-switch', async () => {
    await login(page, ADMIN);
    assert.notEqual(await page.locator('#active-findings').textContent(), '0');
    await page.getByLabel('Tenant').selectOption('globex');
    await page.locator('#active-findings', { hasText: /^0$/ }).waitFor();
    await page.locator('.state-empty', { hasText: 'No active findings' }).waitFor();
    assert.equal(await page.locator('.stat-of').textContent(), ' / 0');
    await page.getByRole('link', { name: 'Findings' }).click();
    await page.locator('.state-empty', { hasText: 'No matches' }).waitFor();
    await page.getByRole('link', { name: 'Agents' }).click();
    await page.locator('.state-empty', { hasText: 'No agents enrolled' }).waitFor();
    // The choice is remembered across reloads.
    await page.reload();
    assert.equal(await page.getByLabel('Tenant').inputValue(), 'globex');
    await page.getByLabel('Tenant').selectOption('acme');
    await page.locator('td', { hasText: 'browser-test-agent' }).waitFor();
  });
  await page.close();
});

test('incidents and alerts pages load without an error state', async () => {
  const page = await freshPage();
  await withShot(page, 'missing-apis', async () => {
    await login(page, ADMIN);
    for (const [p, path] of [['incidents', '/incidents'], ['alerts', '/alert-channels']]) {
      const status = (await page.request.get(`${BASE}/api/v1/tenants/acme${path}`)).status();
      await page.goto(`${BASE}/ui/${p}`);
      await page.locator('h1').waitFor();
      if (status === 404) {
        await page.locator('.state-error', { hasText: 'Not found (404)' }).first().waitFor();
      } else {
        assert.equal(status, 200, `${path}`);
        assert.equal(await page.locator('.state-error').count(), 0);
      }
    }
  });
  await page.close();
});

test('logout ends the session', async () => {
  const page = await freshPage();
  await withShot(page, 'logout', async () => {
    await login(page, ADMIN);
    await logout(page);
    assert.equal((await page.request.get(`${BASE}/api/v1/me`)).status(), 401);
    await page.goto(`${BASE}/ui/search`);
    await page.waitForURL(/\/ui\/login\?next=%2Fui%2Fsearch/);
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
  });
  await page.close();
});

// Last: it trips the per-address login limit for the rest of the window.
test('repeated bad passwords show the rate-limit message', async () => {
  const page = await freshPage();
  await withShot(page, 'rate-limit', async () => {
    await page.goto(`${BASE}/ui/login`);
    await page.getByLabel('Email').fill(VIEWER.email);
    const err = page.locator('#login-error');
    for (let i = 0; i < 8; i++) {
      await page.getByLabel('Password').fill(`wrong-${i}`);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('button', { name: 'Sign in' }).waitFor();
      await err.waitFor();
      if ((await err.textContent()).includes('Too many')) break;
    }
    assert.match(await err.textContent(), /Too many failed sign-in attempts\. Try again in \d+ min\./);
  });
  await page.close();
});
