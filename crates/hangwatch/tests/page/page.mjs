// Drives hangwatch's status page in headless Chromium for the integration test
// `status_page_in_chromium_follows_a_stall_and_the_recovery` (crates/hangwatch/tests/integration/page.rs).
//
//   node page.mjs URL OUT_DIR SERVICE GO_FILE
//
// Loads the page, waits for SERVICE to be shown ready, writes GO_FILE (which makes the service
// stall), waits for SERVICE to be shown stalled with its incident's verdict, then shown
// ready again; saves a screenshot of each moment in OUT_DIR; fails on any console error. Prints
// one JSON line of figures (load time, page weight, how long after the stall the page showed it).
import { writeFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const [url, outDir, service, goFile] = process.argv.slice(2);
if (!url || !outDir || !service || !goFile) {
  console.error('usage: node page.mjs URL OUT_DIR SERVICE GO_FILE');
  process.exit(2);
}

// The flags that make Debian's Chromium start headless in a closed sandbox: no GPU, no
// first-run, and no background connections to the internet (refused here, and slow to fail).
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: 20000,
});
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push('console error: ' + message.text());
  });
  page.on('pageerror', (error) => problems.push('page error: ' + error.message));
  page.on('requestfailed', (request) => {
    // The event stream is cut when the page closes; anything else is a failure.
    if (!request.url().endsWith('/api/stream')) problems.push('request failed: ' + request.url());
  });
  const requested = [];
  page.on('request', (request) => requested.push(request.url()));

  const began = Date.now();
  await page.goto(url, { waitUntil: 'load', timeout: 15000 });
  const row = `tr[data-service="${service}"]`;
  await page.waitForSelector(`${row}[data-state="ready"]`, { timeout: 15000 });
  const loaded = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const resources = performance.getEntriesByType('resource');
    const bytes = (e) => e.encodedBodySize || e.transferSize || 0;
    return {
      load_ms: nav.loadEventEnd - nav.startTime,
      html_bytes: bytes(nav),
      asset_bytes: resources.filter((r) => r.name.includes('/assets/')).reduce((n, r) => n + bytes(r), 0),
    };
  });
  const firstRender = Date.now() - began;
  writeFileSync(goFile, '');

  // Stalled, with the incident's verdict.
  await page.waitForSelector(`${row}[data-stalled="true"]`, { timeout: 20000 });
  await page.waitForSelector(`#last-incident[data-service="${service}"] .verdict li`, { timeout: 20000 });
  const shownAt = Date.now();
  const stall = await page.evaluate(async (name) => {
    const all = await (await fetch('/api/events')).json();
    const stalls = all.events.filter((e) => e.event === 'stalled' && e.service === name);
    return stalls.length ? stalls[stalls.length - 1].at : null;
  }, service);
  if (!stall) throw new Error('no stalled event in /api/events');
  const stallShownMs = shownAt - Date.parse(stall);
  const verdict = await page.$$eval('#last-incident .verdict li', (items) => items.map((i) => i.textContent));
  await page.screenshot({ path: `${outDir}/status-page-stalled.png`, fullPage: true });

  // The whole report, rendered for reading.
  const href = await page.getAttribute('#last-incident .report-link', 'href');
  const report = await browser.newPage();
  report.on('console', (m) => { if (m.type() === 'error') problems.push('report console error: ' + m.text()); });
  await report.goto(new URL(href, url).toString(), { waitUntil: 'load', timeout: 10000 });
  const reportText = await report.textContent('pre.report-text');
  await report.screenshot({ path: `${outDir}/incident-report.png`, fullPage: false });
  await report.close();

  // Recovered.
  await page.waitForSelector(`${row}[data-state="ready"][data-stalled="false"]`, { timeout: 20000 });
  await page.screenshot({ path: `${outDir}/status-page-recovered.png`, fullPage: true });

  const foreign = requested.filter((u) => !u.startsWith(new URL(url).origin));
  if (foreign.length) problems.push('requests elsewhere: ' + foreign.join(', '));
  console.log(JSON.stringify({
    ok: problems.length === 0,
    problems,
    ...loaded,
    first_render_ms: firstRender,
    stall_shown_ms: stallShownMs,
    verdict,
    report_chars: (reportText || '').length,
  }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, problems: [...problems, String(error)] }));
} finally {
  await browser.close();
}
