// Drives the dashboard in Debian's headless Chromium through playwright-core
// (no browser download: executablePath). Run by tests/e2e/dashboard.rs,
// which starts the cluster, writes the manifests and passes, in the
// environment: FLOTILLA_URL, FLOTILLA_BIN and FLOTILLA_CONFIG (the CLI),
// VIEW_TOKEN, MANIFESTS (a folder), SCREENSHOTS (a folder) and CHROMIUM.
// Exits non-zero, naming the step, on the first thing that is not as it
// should be.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = process.env;
for (const name of ['FLOTILLA_URL', 'FLOTILLA_BIN', 'VIEW_TOKEN', 'MANIFESTS', 'SCREENSHOTS', 'CHROMIUM']) {
  if (!env[name]) throw new Error(`${name} is not set (tests/e2e/dashboard.rs sets it)`);
}

function cli(...args) {
  return execFileSync(env.FLOTILLA_BIN, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function apply(file) {
  cli('apply', '-f', join(env.MANIFESTS, file));
}

let current = 'starting';
function step(name) {
  current = name;
  console.log(`step: ${name}`);
}

const profile = mkdtempSync(join(tmpdir(), 'flotilla-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: env.CHROMIUM,
  headless: true,
  ignoreHTTPSErrors: true, // the cluster's own CA
  viewport: { width: 1280, height: 900 },
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync',
  ],
});
const page = context.pages()[0] || (await context.newPage());
const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });

async function signIn(token) {
  await page.fill('#token', token);
  await page.click('#sign-in button[type=submit]');
}

try {
  step('the page loads with no console error');
  await page.goto(`${env.FLOTILLA_URL}/ui/`);
  await page.waitForSelector('#sign-in:not([hidden])', { timeout: 10000 });
  await page.waitForLoadState('networkidle');
  if (problems.length) throw new Error(problems.join('\n'));

  step('a wrong token is refused');
  await signIn('not-a-token');
  await page.waitForSelector('#sign-in-error:has-text("Signing in failed (401)")', { timeout: 10000 });
  if (await page.locator('#nodes').count() !== 0) throw new Error('the fleet is shown without a token');
  if (!(await page.isVisible('#sign-in'))) throw new Error('the sign-in form is gone after a refusal');
  // The browser reports the refused request itself as a console error:
  // that one, and nothing else.
  const unexpected = problems.filter((p) => !p.includes('401'));
  if (unexpected.length) throw new Error(unexpected.join('\n'));
  problems.length = 0;

  step('sign in with a view token');
  await signIn(env.VIEW_TOKEN);
  await page.waitForSelector('#nodes tr[data-node]', { timeout: 10000 });
  await page.waitForSelector('#connection:has-text("live")', { timeout: 10000 });
  // Five watches and a followed log at once: more than HTTP/1.1's six
  // connections per site would carry, so the API speaks HTTP/2 to browsers.
  const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  if (protocol !== 'h2') throw new Error(`the page came over ${protocol}, not HTTP/2`);

  step('what users and guests write is shown as text, never run as markup');
  // dashboard.rs recorded an Event whose message is HTML with a script.
  await page.waitForSelector('#events tr[data-event="Injected"]', { timeout: 10000 });
  const shown = await page.textContent('#events tr[data-event="Injected"] td.message');
  if (!shown.includes('<img src=x onerror=')) throw new Error(`the message shows as ${shown}`);
  if (await page.locator('#events img, #events b').count() !== 0) throw new Error('the message became markup');
  if (await page.evaluate(() => window.injected !== undefined)) throw new Error('the injected script ran');

  step('a workload applied from the CLI appears within 2 s');
  const started = Date.now();
  apply('ticker.yaml');
  await page.waitForSelector('tr[data-workload="default/ticker"]', { timeout: 2000 });
  console.log(`  appeared ${Date.now() - started} ms after the apply started`);

  step('a crash-looping workload shows its restarts and their reason');
  apply('crasher.yaml');
  const crasher = page.locator('tr[data-workload="default/crasher"]');
  await page.waitForFunction(() => {
    const row = document.querySelector('tr[data-workload="default/crasher"]');
    return row && Number(row.querySelector('.restarts').textContent) >= 2
      && row.querySelector('.termination').textContent.includes('Error (exit 3)');
  }, null, { timeout: 60000 });
  // In the failure colour, saying why: not a blue "Progressing".
  await page.waitForSelector('tr[data-workload="default/crasher"] td.rollout.bad[data-rollout="CrashLoopBackOff"]', { timeout: 30000 });
  const why = await crasher.locator('td.rollout').getAttribute('title');
  if (!why.includes('Error (exit 3)')) throw new Error(`the rollout cell says ${why}`);
  console.log(`  ${(await crasher.innerText()).replace(/\s+/g, ' ')}`);

  step('a log line written by a guest appears live');
  await page.goto(`${env.FLOTILLA_URL}/ui/#/workloads/default/ticker`);
  await page.waitForSelector('#instances tr[data-instance] button', { timeout: 30000 });
  await page.waitForSelector('#instances td.phase:has-text("Running")', { timeout: 30000 });
  await page.click('#instances tr[data-instance] button');
  await page.waitForSelector('#log:has-text("tick")', { timeout: 15000 });
  const ticks = (text) => Math.max(0, ...[...text.matchAll(/tick (\d+)/g)].map((m) => Number(m[1])));
  const seen = ticks(await page.textContent('#log'));
  await page.waitForFunction(
    (before) => Math.max(0, ...[...document.querySelector('#log').textContent.matchAll(/tick (\d+)/g)]
      .map((m) => Number(m[1]))) >= before + 2,
    seen, { timeout: 15000 });
  console.log(`  tick ${seen} when following began, then tick ${ticks(await page.textContent('#log'))}`);

  step('a rollout shows its progress');
  apply('roller-v1.yaml');
  await page.goto(`${env.FLOTILLA_URL}/ui/#/workloads/default/roller`);
  await page.waitForSelector('#rollout [data-rollout="Complete"]', { timeout: 60000 });
  apply('roller-v2.yaml');
  await page.waitForSelector('#rollout [data-rollout="Progressing"]', { timeout: 15000 });
  const during = await page.innerText('#rollout');
  await page.waitForSelector('#rollout [data-rollout="Complete"]', { timeout: 60000 });
  await page.waitForFunction(() => document.querySelectorAll('#revisions tbody tr').length === 2, null, { timeout: 10000 });
  console.log(`  during: ${during.split('\n')[0]}`);

  step('an http workload graphs its requests, and the pages are photographed');
  await page.goto(`${env.FLOTILLA_URL}/ui/#/workloads/default/hello`);
  // Its log followed meanwhile: the graphs keep coming all the same.
  await page.click('#instances tr[data-instance] button');
  await page.waitForFunction(() => {
    const graph = document.querySelector('[data-graph="Requests per second (5xx)"]');
    return graph && Number(graph.dataset.points) >= 3
      && !graph.querySelector('.now').textContent.startsWith('0.0');
  }, null, { timeout: 60000 });
  await page.screenshot({ path: join(env.SCREENSHOTS, 'workload.png'), fullPage: true });
  await page.goto(`${env.FLOTILLA_URL}/ui/#/`);
  await page.waitForSelector('tr[data-workload="default/hello"]', { timeout: 10000 });
  await page.screenshot({ path: join(env.SCREENSHOTS, 'fleet.png'), fullPage: true });

  step('nothing went wrong in the page');
  // A watch cut by a navigation is not a problem; anything else is.
  const real = problems.filter((p) => !p.includes('aborted'));
  if (real.length) throw new Error(real.join('\n'));
  console.log('dashboard: all steps passed');
} catch (e) {
  console.error(`dashboard: step "${current}" failed: ${e.message}`);
  try {
    await page.screenshot({ path: join(env.SCREENSHOTS, 'failure.png'), fullPage: true });
  } catch {}
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
