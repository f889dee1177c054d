// Records the rrweb events of tests/compat/fixtures/rrweb-events.json, the recording the
// replay test plays: a page that changes (text, colours, a new element), recorded with the
// rrweb bro installs, in Debian's chromium.
//
//   node record_rrweb_fixture.mjs ~/.local/share/bro/rrweb/node_modules/rrweb/dist/rrweb.umd.min.cjs
import { readFileSync, writeFileSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { PAGE, change } from './fixtures/replay_page.mjs';

const recorder = readFileSync(process.argv[2], 'utf8');
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true });
const page = await browser.newPage({ viewport: { width: 800, height: 450 } });
await page.setContent(PAGE);
await page.addScriptTag({ content: recorder });
await page.evaluate(() => {
  window.__events = [];
  window.rrweb.record({ emit: (e) => window.__events.push(e) });
});
await page.waitForTimeout(200);
await page.evaluate(change);
await page.waitForTimeout(300);
const events = await page.evaluate(() => window.__events);
writeFileSync('fixtures/rrweb-events.json', JSON.stringify(events) + '\n');
console.log(`${events.length} events`);
await browser.close();
