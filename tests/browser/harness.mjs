// Shared set-up of the browser tests: Debian's chromium through playwright-core
// (never a downloaded browser), a fresh profile per run, login helpers,
// screenshots on failure and a check that the page threw no script errors.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const BASE = need('VIGIL_UI_BASE');
export const ADMIN = { email: 'admin@example.net', password: need('VIGIL_UI_ADMIN_PW') };
export const VIEWER = { email: 'viewer@example.net', password: need('VIGIL_UI_VIEWER_PW') };
const SHOTS = process.env.VIGIL_UI_SHOTS || fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-ui-shots-'));

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run tests/browser/run.sh`);
  return v;
}

/** Launches chromium with a fresh profile; close() removes the profile. */
export async function launch() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    acceptDownloads: true,
    viewport: { width: 1280, height: 860 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  return {
    context,
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** A new page that records uncaught script errors. */
export async function newPage(context) {
  const page = await context.newPage();
  page.scriptErrors = [];
  page.on('pageerror', (e) => page.scriptErrors.push(e.message));
  page.setDefaultTimeout(15000);
  return page;
}

/**
 * Runs a test body; on failure saves a full-page screenshot (path printed)
 * before rethrowing. Fails too when the page threw a script error.
 */
export async function withShot(page, name, fn) {
  try {
    await fn();
    if (page.scriptErrors.length) throw new Error(`script errors: ${page.scriptErrors.join('; ')}`);
  } catch (e) {
    const file = path.join(SHOTS, `${name.replace(/[^a-z0-9-]+/gi, '_')}.png`);
    try {
      await page.screenshot({ path: file, fullPage: true });
      console.error(`screenshot of the failure: ${file}`);
    } catch (shotErr) {
      console.error(`no screenshot: ${shotErr.message}`);
    }
    throw e;
  }
}

/** Signs in through the login form and waits for the dashboard. */
export async function login(page, who) {
  await page.goto(`${BASE}/ui/login`);
  await page.getByLabel('Email').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/ui\/dashboard$/);
  await page.locator('#active-findings').waitFor();
}

/** Signs out through the user menu. */
export async function logout(page) {
  await page.getByLabel('User menu').click();
  await page.locator('#logout').click();
  await page.waitForURL(/\/ui\/login/);
}

/** A JSON GET through the page's own session cookie. */
export async function apiGet(page, p) {
  const r = await page.request.get(`${BASE}/api/v1${p}`);
  if (!r.ok()) throw new Error(`GET ${p}: ${r.status()}`);
  return r.json();
}
