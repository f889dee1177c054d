// Drives sessions for tests/it/recording.rs with playwright-core (no browser download).
//
//   node recording.mjs churn <websocketUrl> <pageUrl>           changes a page, opens a popup
//   node recording.mjs images <websocketUrl> <pageUrl>          prints which images loaded
//   node recording.mjs wait <websocketUrl> <pageUrl> <seconds>   leaves a page running (moving the mouse)
//   node recording.mjs flood <websocketUrl> <pageUrl> <seconds>  a page that floods its recorder
//
// Prints one JSON line.
import { chromium } from 'playwright-core';

const [mode, ws, pageUrl, seconds] = process.argv.slice(2);
const browser = await chromium.connectOverCDP(ws);
const context = browser.contexts()[0];
const page = context.pages()[0] ?? (await context.newPage());
let out = {};

if (mode === 'churn') {
  await page.goto(pageUrl);
  await page.fill('#name', 'typed by the test');
  for (let i = 0; i < 20; i++) {
    await page.evaluate((i) => {
      const li = document.createElement('li');
      li.textContent = `item ${i}`;
      document.querySelector('#list').appendChild(li);
    }, i);
  }
  await page.click('#go');
  // A popup is recorded too, and is not held up.
  const [popup] = await Promise.all([
    page.waitForEvent('popup'),
    page.evaluate((u) => window.open(u + '?popup'), pageUrl),
  ]);
  await popup.waitForLoadState('load');
  out.popupTitle = await popup.title();
  // The page cannot reach the recorder or its binding (an isolated world).
  out.bindingVisible = await page.evaluate(() => typeof window.__broRecord !== 'undefined' || typeof window.rrweb !== 'undefined');
  out.title = await page.title();
  await page.waitForTimeout(500);
} else if (mode === 'images') {
  await page.goto(pageUrl);
  await page.waitForLoadState('load');
  out = await page.evaluate(() =>
    Object.fromEntries([...document.images].map((img) => [img.id, img.naturalWidth])),
  );
  // A new tab is filtered too.
  const tab = await context.newPage();
  await tab.goto(pageUrl);
  out.tabSame = await tab.evaluate(() => document.getElementById('same').naturalWidth);
} else if (mode === 'wait') {
  // Loads the page and leaves it running: for measuring a recording's size.
  await page.goto(pageUrl);
  await page.mouse.move(10, 10);
  const until = Date.now() + Number(seconds) * 1000;
  for (let i = 0; Date.now() < until; i++) {
    await page.mouse.move(100 + (i % 200), 100 + (i % 50));
    await page.waitForTimeout(100);
  }
} else if (mode === 'flood') {
  await page.goto(pageUrl);
  const until = Date.now() + Number(seconds) * 1000;
  let rounds = 0;
  while (Date.now() < until) {
    rounds += await page.evaluate(() => {
      // Big DOM changes (each one an rrweb event of about 200 KB), and calls to every
      // global that could be a binding, with garbage.
      const big = 'x'.repeat(200_000);
      for (let i = 0; i < 5; i++) {
        const div = document.createElement('div');
        div.textContent = big + i + Math.random();
        document.body.appendChild(div);
        if (document.body.children.length > 20) document.body.firstElementChild.remove();
      }
      for (const name of Object.getOwnPropertyNames(window)) {
        if (name.startsWith('__bro') || name.startsWith('cdc')) {
          try { window[name]('{"type":2,"data":' + 'y'.repeat(1 << 20)); } catch (_) {}
        }
      }
      return 1;
    });
  }
  out.rounds = rounds;
  // Whether a tab runs bro's recorder (its isolated world), as any CDP client sees it.
  const worlds = async (tab) => {
    const cdp = await context.newCDPSession(tab);
    const names = [];
    cdp.on('Runtime.executionContextCreated', (e) => names.push(e.context.name));
    await cdp.send('Runtime.enable');
    await tab.waitForTimeout(300);
    await cdp.detach();
    return names.includes('bro-recorder');
  };
  out.recorderBefore = await worlds(page);
  // Past the cap, a new tab gets no recorder.
  const tab = await context.newPage();
  await tab.goto(pageUrl);
  out.recorderAfter = await worlds(tab);
}

await browser.close();
console.log(JSON.stringify(out));
