// Report download flow: create a PDF report on the reports page, wait until
// it is done, download it and check it is a PDF. run.sh runs this file only
// when the collector's OpenAPI document lists the reports API.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { BASE, ADMIN, launch, newPage, withShot, login } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('reports page creates a PDF report, follows its progress and downloads it', async () => {
  await browser.context.clearCookies();
  const page = await newPage(browser.context);
  await withShot(page, 'reports', async () => {
    await login(page, ADMIN);
    await page.getByRole('link', { name: 'Reports' }).click();
    await page.locator('h1', { hasText: 'Reports' }).waitFor();
    const before = await (await page.request.get(`${BASE}/api/v1/tenants/acme/reports`)).json();
    await page.locator('#report-framework').selectOption('nis2');
    await page.locator('#report-format').selectOption('pdf');
    await page.locator('#create-report').click();

    // The page polls until the new report is done; find it through the API.
    let report;
    for (let i = 0; i < 120 && !report; i++) {
      const list = await (await page.request.get(`${BASE}/api/v1/tenants/acme/reports`)).json();
      report = list.find((r) => !before.some((b) => b.id === r.id) && r.format === 'pdf');
      if (!report) await page.waitForTimeout(250);
    }
    assert.ok(report, 'the new report is listed');
    await page.locator(`.report-status[data-id="${report.id}"][data-status="done"]`).waitFor({ timeout: 60000 });
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.locator(`[data-download="${report.id}"]`).click(),
    ]);
    const file = await download.path();
    const head = fs.readFileSync(file).subarray(0, 5).toString('latin1');
    assert.equal(head, '%PDF-');
    assert.match(download.suggestedFilename(), /\.pdf$/);
  });
  await page.close();
});
