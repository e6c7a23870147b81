// dashboard.mjs — the loupe dashboard in a real browser: the system Chromium
// (Debian's /usr/bin/chromium) driven by playwright-core, with a fresh
// profile and no network beyond the loopback server under test. Opens the
// index, goes to an SAE, sorts the feature table, searches by token, opens a
// feature and checks its highlighted tokens and SVG histogram, and takes a
// screenshot. usage: node dashboard.mjs URL SCREENSHOT.png
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const [url, shot] = process.argv.slice(2);
if (!url || !shot) { console.error('usage: node dashboard.mjs URL SCREENSHOT.png'); process.exit(2); }
const profile = mkdtempSync(join(tmpdir(), 'loupe-chromium-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1200, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const origin = new URL(url).origin;
const outside = [], errors = [];
let checks = 0;
const ok = (cond, msg) => { assert.ok(cond, msg); checks++; };
try {
  const page = ctx.pages()[0] || await ctx.newPage();
  page.on('request', r => { if (!r.url().startsWith(origin) && !r.url().startsWith('data:')) outside.push(r.url()); });
  page.on('pageerror', e => errors.push(String(e)));
  page.on('console', m => { if (m.type() === 'error') errors.push(m.text()); });

  // index
  await page.goto(url, { waitUntil: 'load' });
  ok((await page.title()).includes('loupe'), 'index title');
  ok(await page.locator('table.saes tbody tr').count() >= 1, 'SAE table has rows');
  ok(await page.locator('table.tags').count() === 1, 'segment tags per layer table');
  await page.locator('table.saes tbody tr a').first().click();
  await page.waitForSelector('table.features');

  // sort by density: descending, then ascending
  const rows = page.locator('table.features tbody tr');
  const total = await rows.count();
  ok(total > 10, `feature table has ${total} rows`);
  const col = await page.locator('table.features thead th').evaluateAll(
    ths => ths.findIndex(t => t.textContent.trim() === 'density'));
  ok(col >= 0, 'density column');
  const densities = () => page.locator('table.features tbody tr').evaluateAll(
    (trs, i) => trs.map(tr => parseFloat(tr.cells[i].dataset.v)), col);
  const th = page.locator('table.features thead th').nth(col);
  await th.click();
  ok((await th.getAttribute('data-dir')) === 'desc', 'first click sorts descending');
  let d = await densities();
  ok(d.every((v, i) => i === 0 || d[i - 1] >= v), 'densities descending');
  await th.click();
  d = await densities();
  ok(d.every((v, i) => i === 0 || d[i - 1] <= v), 'densities ascending');
  await th.click(); // back to descending: the densest feature first

  // search by token: the first feature's explanation names a token
  const firstTok = await page.locator('table.features tbody tr').first().evaluate(
    tr => (tr.dataset.search || '').split('\n')[0]);
  if (firstTok && firstTok.trim()) {
    await page.fill('#search', firstTok);
    const shown = await page.locator('table.features tbody tr:not([hidden])').count();
    ok(shown >= 1 && shown <= total, `search '${firstTok}' shows ${shown} of ${total}`);
    const hit = await page.locator('table.features tbody tr:not([hidden])').evaluateAll(
      (trs, q) => trs.every(tr => tr.dataset.search.includes(q)), firstTok.toLowerCase());
    ok(hit, 'every shown row matches the search');
    await page.fill('#search', '');
    ok(await page.locator('table.features tbody tr:not([hidden])').count() === total, 'clearing shows all');
  }

  // open the top feature
  await page.locator('table.features tbody tr').first().locator('a').first().click();
  await page.waitForSelector('.top .ctx');
  ok(/feature \d+/.test(await page.locator('h1').textContent()), 'feature heading');
  const centres = await page.locator('.top .ctx .tok.centre').count();
  ok(centres >= 1, `${centres} highlighted example tokens`);
  const lit = await page.locator('.top .ctx .tok.on').evaluateAll(
    ts => ts.filter(t => getComputedStyle(t).backgroundColor !== 'rgba(0, 0, 0, 0)').length);
  ok(lit >= centres, `${lit} tokens have an activation background`);
  const bars = await page.locator('svg.hist rect.bar').count();
  ok(bars > 0, `histogram has ${bars} bars`);
  const box = await page.locator('svg.hist').boundingBox();
  ok(box && box.width > 100 && box.height > 50, 'histogram is visible');
  ok((await page.locator('.expl').textContent()).length > 20, 'explanation shown');
  ok(await page.locator('table.lens td.tokcell').count() >= 2, 'logit-lens tokens shown');
  await page.screenshot({ path: shot, fullPage: false });

  ok(outside.length === 0, `no request left the server: ${outside.join(' ')}`);
  ok(errors.length === 0, `no page errors: ${errors.join(' | ')}`);
  console.log(`dashboard.mjs: ${checks} checks ok; screenshot ${shot}`);
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
