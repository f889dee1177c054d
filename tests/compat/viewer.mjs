// The live viewer in a real headless Chromium (Debian's, never downloaded), driven by
// playwright-core, against a bro daemon with an API key and one live session.
// Usage: node viewer.mjs <api base URL> <api key> <session id> <session websocketUrl>
// <chromium path>. Prints one JSON line of facts; exits 1 on the first failure. Run by
// tests/it/viewer.rs.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const [base, apiKey, id, wsUrl, chromiumPath] = process.argv.slice(2);
const facts = {};
const headers = { "steel-api-key": apiKey };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, cond, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function liveDetails() {
  const r = await fetch(`${base}/v1/sessions/${id}/live-details`, { headers });
  assert.equal(r.status, 200);
  return r.json();
}

const PAGE = `<!doctype html><title>first tab</title>
<style>body{margin:0;background:#2060c0;font:24px sans-serif}
input,button{position:absolute;font-size:24px}#name{left:40px;top:40px;width:300px;height:40px}
#go{left:40px;top:120px;width:160px;height:50px}#out{position:absolute;left:40px;top:200px}</style>
<input id=name><button id=go onclick="document.getElementById('out').textContent='got:'+document.getElementById('name').value">send</button>
<div id=out></div>`;

// The session, as its user drives it.
const session = await chromium.connectOverCDP(`${wsUrl}&apiKey=${apiKey}`);
const context = session.contexts()[0];
const sessionPage = context.pages()[0];
await sessionPage.setContent(PAGE);

// The viewer, in a browser of its own.
const viewerBrowser = await chromium.launch({ executablePath: chromiumPath, headless: true });
try {
  const viewer = await viewerBrowser.newPage({ viewport: { width: 1000, height: 800 } });
  const playerUrl = `${base}/v1/sessions/${id}/player?apiKey=${apiKey}`;
  await viewer.goto(playerUrl);
  const frames = async (p) => Number((await p.evaluate(() => document.documentElement.dataset.frames)) || 0);
  await until("a first frame", async () => (await frames(viewer)) > 0);
  facts.url = await viewer.inputValue("#url");
  const tabsShown = await until("the tab bar", async () => viewer.locator(".tab").count());
  facts.tabsAtStart = tabsShown;

  // A screenshot of the viewer changes when the session's page does (pixels compared).
  const before = await viewer.screenshot();
  const seen = await frames(viewer);
  await sessionPage.evaluate(() => { document.body.style.background = "#e02020"; });
  await until("a newer frame", async () => (await frames(viewer)) > seen);
  await sleep(300);
  const after = await viewer.screenshot();
  facts.changedPixels = await viewer.evaluate(async ([a, b]) => {
    const load = (src) => new Promise((ok) => { const i = new Image(); i.onload = () => ok(i); i.src = src; });
    const [x, y] = await Promise.all([load(a), load(b)]);
    const px = (img) => {
      const c = document.createElement("canvas");
      c.width = img.width; c.height = img.height;
      const g = c.getContext("2d"); g.drawImage(img, 0, 0);
      return g.getImageData(0, 0, c.width, c.height).data;
    };
    const p = px(x), q = px(y);
    let n = 0;
    for (let i = 0; i < p.length; i += 4) {
      if (Math.abs(p[i] - q[i]) + Math.abs(p[i + 1] - q[i + 1]) + Math.abs(p[i + 2] - q[i + 2]) > 60) n++;
    }
    return n;
  }, [`data:image/png;base64,${before.toString("base64")}`, `data:image/png;base64,${after.toString("base64")}`]);
  assert.ok(facts.changedPixels > 10000, `only ${facts.changedPixels} pixels changed`);

  // Type into the session's input and click its button, through the viewer.
  const { w, h } = await sessionPage.evaluate(() => ({ w: innerWidth, h: innerHeight }));
  const at = async (cssX, cssY) => {
    const r = await viewer.evaluate(() => {
      const b = document.getElementById("screen").getBoundingClientRect();
      return { left: b.left, top: b.top, width: b.width, height: b.height };
    });
    return { x: r.left + (cssX * r.width) / w, y: r.top + (cssY * r.height) / h };
  };
  let p = await at(150, 60);
  await viewer.mouse.click(p.x, p.y);
  await until("the input focused", () => sessionPage.evaluate(() => document.activeElement?.id === "name"));
  await viewer.keyboard.type("hello bro");
  await until("the text typed", async () => (await sessionPage.inputValue("#name")) === "hello bro");
  p = await at(120, 145);
  await viewer.mouse.click(p.x, p.y);
  facts.result = await until("the button's result", async () => sessionPage.textContent("#out"));
  assert.equal(facts.result, "got:hello bro");

  // A second tab in the session shows in the tab bar; switching to it shows it.
  const second = await context.newPage();
  await second.setContent("<!doctype html><title>second tab</title><body style='background:#20a040'><h1>two</h1>");
  await until("two tabs", async () => (await viewer.locator(".tab").count()) === 2);
  const secondTab = viewer.locator(".tab", { hasText: "second tab" });
  await secondTab.click();
  const secondId = await secondTab.getAttribute("data-page-id");
  await until("the second tab's frames", async () =>
    (await viewer.evaluate(() => document.documentElement.dataset.activePage)) === secondId &&
    (await viewer.title()).startsWith("second tab"));
  facts.switchedTo = await viewer.title();

  // A second viewer at once.
  const viewer2 = await viewerBrowser.newPage({ viewport: { width: 800, height: 600 } });
  await viewer2.goto(`${base}/v1/sessions/debug?sessionId=${id}&apiKey=${apiKey}&interactive=false&theme=light`);
  await until("the second viewer's frames", async () => (await frames(viewer2)) > 0);
  facts.viewersWithTwo = await until("two screencasts", async () => {
    const n = (await liveDetails()).viewers;
    return n === 2 ? n : 0;
  });

  // Both closed: every screencast stops.
  await viewer.close();
  await viewer2.close();
  facts.viewersAfterClose = await until("no screencast", async () => {
    const n = (await liveDetails()).viewers;
    return n === 0 ? "zero" : null;
  });
} finally {
  await viewerBrowser.close();
  await session.close();
}
console.log(JSON.stringify(facts));
