// The real steel-sdk, Playwright and Puppeteer against a bro daemon, as users write them.
// Usage: node clients.mjs <api base URL> <api key>. Prints one JSON line of facts; exits 1
// with a message on the first failure. Run by tests/it/compat.rs.
import http from "node:http";
import assert from "node:assert/strict";
import Steel, { toFile } from "steel-sdk";
import { chromium } from "playwright-core";
import puppeteer from "puppeteer-core";

const [base, apiKey] = process.argv.slice(2);
const client = new Steel({ baseURL: base, steelAPIKey: apiKey, maxRetries: 0 });
const facts = {};

// A local page to visit: the sessions' browsers reach it over loopback only.
const server = http.createServer((req, res) => {
  if (req.url === "/file.txt") {
    res.setHeader("content-type", "text/plain");
    res.setHeader("content-disposition", 'attachment; filename="file.txt"');
    return res.end("downloaded by the browser");
  }
  res.setHeader("content-type", "text/html");
  res.end(`<!doctype html><title>bro compat</title><h1>hello from ${req.url}</h1><a id=dl href="/file.txt" download>get</a>`);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const page_url = `http://127.0.0.1:${server.address().port}/`;

try {
  // 1. steel-sdk create with options.
  const a = await client.sessions.create({
    dimensions: { width: 800, height: 600 },
    userAgent: "bro-compat/1",
    blockAds: true,
    timeout: 120000,
    solveCaptcha: false,
  });
  assert.equal(a.status, "live");
  assert.equal(a.timeout, 120000);
  assert.ok(a.websocketUrl.includes(`sessionId=${a.id}`), a.websocketUrl);

  // 2. Playwright over the websocket URL with the cookbook's `&apiKey=` suffix.
  const pw = await chromium.connectOverCDP(`${a.websocketUrl}&apiKey=${apiKey}`);
  const pwPage = pw.contexts()[0].pages()[0];
  await pwPage.goto(page_url);
  facts.title = await pwPage.title();
  facts.userAgent = await pwPage.evaluate(() => navigator.userAgent);
  facts.width = await pwPage.evaluate(() => window.innerWidth);
  assert.equal(facts.userAgent, "bro-compat/1");
  assert.equal(facts.width, 800);
  await pwPage.evaluate(() => {
    document.cookie = "who=session-a; path=/; max-age=3600";
    localStorage.setItem("kept", "yes");
  });

  // 3. Puppeteer on a second session at the same time; no cookie of the first.
  const b = await client.sessions.create({});
  const pp = await puppeteer.connect({ browserWSEndpoint: `${b.websocketUrl}&apiKey=${apiKey}` });
  const ppPage = await pp.newPage();
  await ppPage.goto(page_url);
  facts.puppeteerTitle = await ppPage.title();
  facts.cookieInB = await ppPage.evaluate(() => document.cookie);
  assert.equal(facts.cookieInB, "");

  // 3b. Files: upload, list, download, zip, delete; a browser download lands there too.
  const up = await client.sessions.files.upload(b.id, { file: await toFile(Buffer.from("hello files"), "hello.txt"), path: "in/hello.txt" });
  assert.equal(up.path, "in/hello.txt");
  assert.equal(up.size, 11);
  const got = await (await client.sessions.files.download(b.id, "in/hello.txt")).text();
  assert.equal(got, "hello files");
  await ppPage.click("#dl");
  let names = [];
  for (let i = 0; i < 100 && !names.includes("file.txt"); i++) {
    await new Promise((r) => setTimeout(r, 100));
    names = (await client.sessions.files.list(b.id)).data.map((f) => f.path);
  }
  assert.ok(names.includes("file.txt") && names.includes("in/hello.txt"), JSON.stringify(names));
  const zip = Buffer.from(await (await client.sessions.files.downloadArchive(b.id)).arrayBuffer());
  assert.equal(zip.subarray(0, 2).toString(), "PK");
  await client.sessions.files.delete(b.id, "in/hello.txt");
  const bad = await client.sessions.files.download(b.id, "../../etc/passwd").catch((e) => e);
  assert.ok(bad.status === 400 || bad.status === 404, String(bad));
  facts.files = names.length;

  // 4. Auto-pagination ends, and sees both sessions.
  const seen = [];
  for await (const s of client.sessions.list()) seen.push(s.id);
  assert.ok(seen.includes(a.id) && seen.includes(b.id), JSON.stringify(seen));
  const limited = await client.sessions.list({ limit: 1 });
  assert.equal(limited.sessions.length, 1);
  facts.listed = seen.length;

  // 5. Context round trip into a new session.
  const ctx = await client.sessions.context(a.id);
  assert.ok(ctx.cookies.some((c) => c.name === "who" && c.value === "session-a"), JSON.stringify(ctx.cookies));
  assert.equal(ctx.localStorage[page_url.slice(0, -1)]?.kept, "yes", JSON.stringify(ctx.localStorage));
  const c = await client.sessions.create({ sessionContext: ctx });
  const pw2 = await chromium.connectOverCDP(`${c.websocketUrl}&apiKey=${apiKey}`);
  const pw2Page = pw2.contexts()[0].pages()[0];
  await pw2Page.goto(page_url);
  facts.restoredCookie = await pw2Page.evaluate(() => document.cookie);
  facts.restoredStorage = await pw2Page.evaluate(() => localStorage.getItem("kept"));
  assert.equal(facts.restoredCookie, "who=session-a");
  assert.equal(facts.restoredStorage, "yes");

  // 6. connectOverCDP with an http:// URL goes through /json/version/.
  const pw3 = await chromium.connectOverCDP(`${base}/?sessionId=${c.id}&apiKey=${apiKey}`);
  facts.httpEndpointPages = pw3.contexts()[0].pages().length;
  await pw3.close();

  // 7. Live details in both key sets.
  const live = await client.sessions.liveDetails(a.id);
  assert.ok(live.wsUrl && live.websocketUrl && live.pages.length >= 1, JSON.stringify(live));

  // 8. Release closes the client's CDP connection; retrieve shows `released`.
  const closed = new Promise((r) => pw.on("disconnected", r));
  const released = await client.sessions.release(a.id);
  assert.equal(released.success, true);
  await Promise.race([closed, new Promise((_, rej) => setTimeout(() => rej(new Error("CDP not closed by release")), 10000))]);
  facts.releasedStatus = (await client.sessions.retrieve(a.id)).status;
  assert.equal(facts.releasedStatus, "released");

  // 9. Errors: an unknown id is a 404 NotFoundError.
  const missing = await client.sessions.retrieve("00000000-0000-4000-8000-000000000000").catch((e) => e);
  assert.equal(missing.status, 404);

  await pp.disconnect();
  await pw2.close();
  await client.sessions.releaseAll();
  console.log(JSON.stringify(facts));
} catch (err) {
  console.error(err?.stack ?? String(err));
  process.exitCode = 1;
} finally {
  server.close();
}
