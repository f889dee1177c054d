// The replay page (GET /v1/sessions/{id}/replay) in Debian's chromium, driven by playwright-core:
//   node replay.mjs drive WEBSOCKET_URL
// drives a (recording) session's page through fixtures/replay_page.mjs, then
//   node replay.mjs API KEY RECORDED_ID UNRECORDED_ID [EVENTS_FIXTURE]
// Opens the recorded session's replay with the key in the URL, waits for rrweb-player to play
// and prints one JSON line of facts: the page's state, the text inside the replayed page, and
// how many colours a screenshot of the player has (a blank replay has one). Then opens the
// replay of a session that did not record and reports the page's message.
//
// With EVENTS_FIXTURE, `GET /v1/sessions/{id}/events` is answered from that file in the
// browser (page.route) instead of by bro.
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { PAGE, change } from './fixtures/replay_page.mjs';

if (process.argv[2] === 'drive') {
  const session = await chromium.connectOverCDP(process.argv[3]);
  const page = session.contexts()[0].pages()[0] ?? await session.contexts()[0].newPage();
  await page.goto('data:text/html;base64,' + Buffer.from(PAGE).toString('base64'));
  await page.waitForTimeout(300);
  await page.evaluate(change);
  await page.waitForTimeout(500);
  await session.close();
  process.exit(0);
}

const [api, key, recorded, unrecorded, fixture] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true });
const facts = {};
try {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`error: ${e.message}`));
  if (fixture) {
    const body = readFileSync(fixture, 'utf8');
    await page.route('**/v1/sessions/*/events*', (route) =>
      route.fulfill({ status: 200, contentType: 'application/json', body }));
  }
  // Who asked for what, and whether the key went with it.
  const requests = [];
  page.on('request', (r) => requests.push({
    path: new URL(r.url()).pathname,
    keyed: new URL(r.url()).searchParams.get('apiKey') === key || r.headers()['steel-api-key'] === key,
  }));

  await page.goto(`${api}/v1/sessions/${recorded}/replay?apiKey=${encodeURIComponent(key)}`);
  await page.waitForSelector('body[data-state="playing"], body[data-state="message"]', { timeout: 20000 });
  facts.state = await page.getAttribute('body', 'data-state');
  facts.message = await page.textContent('#message');
  facts.requests = requests;
  if (facts.state === 'playing') {
    // The replayed page lives in rrweb's iframe; wait until its last change is drawn.
    const frame = page.frameLocator('.replayer-wrapper iframe');
    await frame.locator('text=a paragraph added while recording').waitFor({ timeout: 20000 });
    facts.replayedTitle = await frame.locator('#title').textContent();
    const shot = await page.locator('.replayer-wrapper').screenshot();
    facts.colours = await countColours(context, shot);
  }
  facts.logs = logs;

  const other = await context.newPage();
  await other.goto(`${api}/v1/sessions/${unrecorded}/replay?apiKey=${encodeURIComponent(key)}`);
  await other.waitForSelector('body[data-state="message"]', { timeout: 20000 });
  facts.unrecordedMessage = await other.textContent('#message');
} finally {
  await browser.close();
}
console.log(JSON.stringify(facts));

// The number of distinct colours of a PNG, counted by the browser's own decoder.
async function countColours(context, png) {
  const page = await context.newPage();
  const n = await page.evaluate(async (b64) => {
    const img = new Image();
    img.src = 'data:image/png;base64,' + b64;
    await img.decode();
    const canvas = Object.assign(document.createElement('canvas'), { width: img.width, height: img.height });
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, img.width, img.height).data;
    const seen = new Set();
    for (let i = 0; i < data.length; i += 4) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    return seen.size;
  }, png.toString('base64'));
  await page.close();
  return n;
}
