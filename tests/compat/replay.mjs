// The replay page (GET /v1/sessions/{id}/replay) in Debian's chromium, driven by playwright-core:
//   node replay.mjs drive WEBSOCKET_URL PAGE_URL
// drives a (recording) session's page: loads PAGE_URL (served by tests/it/replay.rs), then
// changes it as the replay must show; then
//   node replay.mjs API KEY RECORDED_ID UNRECORDED_ID
// opens the recorded session's viewer (/player, which answers 302 to /replay once the session
// ended) with the key in the URL, waits for rrweb-player to play what the daemon recorded and
// prints one JSON line of facts: the page's state, the text inside the replayed page, how many
// colours a screenshot of the player has (a blank replay has one), whether the recorded page's
// scripts ran in the replay. Then opens the replay of a session that did not record and
// reports the page's message.
import { chromium } from 'playwright-core';

if (process.argv[2] === 'drive') {
  const session = await chromium.connectOverCDP(process.argv[3]);
  const page = session.contexts()[0].pages()[0] ?? await session.contexts()[0].newPage();
  await page.goto(process.argv[4]);
  await page.waitForTimeout(300);
  await page.evaluate(() => {
    document.getElementById('title').textContent = 'bro replay fixture: changed';
    const p = document.createElement('p');
    p.textContent = 'a paragraph added while recording';
    document.body.appendChild(p);
    document.querySelector('.box').style.background = '#859900';
  });
  await page.waitForTimeout(800);
  // A second tab: recorded apart (its own node ids), played on its own.
  const second = await session.contexts()[0].newPage();
  await second.goto(process.argv[4] + '?second');
  await second.evaluate(() => {
    document.getElementById('title').textContent = 'bro replay fixture: second tab';
  });
  await second.waitForTimeout(800);
  await session.close();
  process.exit(0);
}

const [api, key, recorded, unrecorded] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true });
const facts = {};
try {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`error: ${e.message}`));
  // Who asked for what, and how the key went with it.
  const requests = [];
  page.on('request', (r) => requests.push({
    path: new URL(r.url()).pathname,
    host: new URL(r.url()).host,
    keyInUrl: new URL(r.url()).searchParams.get('apiKey') === key,
    keyInHeader: r.headers()['steel-api-key'] === key,
  }));

  const viewer = `${api}/v1/sessions/${recorded}/player?apiKey=${encodeURIComponent(key)}`;
  const answer = await page.goto(viewer);
  facts.landedOn = new URL(page.url()).pathname;
  facts.redirectedFrom = answer.request().redirectedFrom()?.url() ? new URL(answer.request().redirectedFrom().url()).pathname : null;
  await page.waitForSelector('body[data-state="playing"], body[data-state="message"]', { timeout: 20000 });
  facts.state = await page.getAttribute('body', 'data-state');
  facts.message = await page.textContent('#message');
  if (facts.state === 'playing') {
    // The replayed page lives in rrweb's iframe; wait until its last change is drawn.
    const frame = page.frameLocator('.replayer-wrapper iframe');
    await frame.locator('text=a paragraph added while recording').waitFor({ timeout: 20000 });
    facts.replayedTitle = await frame.locator('#title').textContent();
    facts.sandbox = await page.getAttribute('.replayer-wrapper iframe', 'sandbox');
    // Give recorded scripts and handlers (if any could run) time to act.
    await page.waitForTimeout(1000);
    facts.pageTitle = await page.title();
    facts.hostile = await page.evaluate(() => window.__broPwned ?? null);
    const shot = await page.locator('.replayer-wrapper').screenshot();
    facts.colours = await countColours(context, shot);
    // The second tab plays on its own from the picker.
    facts.tabs = await page.locator('#tabs button').count();
    if (facts.tabs > 1) {
      await page.locator('#tabs button').nth(1).click();
      await frame.locator('text=bro replay fixture: second tab').waitFor({ timeout: 20000 });
      facts.secondTitle = await frame.locator('#title').textContent();
      facts.secondTab = await page.getAttribute('body', 'data-tab');
    }
  }
  facts.requests = requests;
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
