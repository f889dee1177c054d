// The Node steel-sdk's types against bro: typed calls that `tsc --noEmit` checks, then run
// (compiled by tsc) against a daemon, each answer checked at run time against what its type
// promises. Usage: node <compiled typed.js> <api base URL> <api key>. Prints one JSON line;
// exits 1 on the first failure. Run by tests/it/compat.rs.
import assert from "node:assert/strict";
import Steel, { toFile } from "steel-sdk";

type Session = Steel.Session;
type SessionReleaseResponse = Steel.SessionReleaseResponse;
type ScreenshotResponse = Steel.ScreenshotResponse;
type PdfResponse = Steel.PdfResponse;

const [base, apiKey] = process.argv.slice(2);
const client = new Steel({ baseURL: base, steelAPIKey: apiKey, maxRetries: 0 });
const PAGE = "data:text/html,<title>typed</title><h1>bro</h1>";
const STATUSES: ReadonlyArray<Session["status"]> = ["live", "released", "failed"];

/// What every `Session` must hold, whatever route answered it.
function checkSession(s: Session): void {
  assert.ok(STATUSES.includes(s.status), `status ${s.status}`);
  assert.equal(typeof s.id, "string");
  assert.ok(!Number.isNaN(Date.parse(s.createdAt)), s.createdAt);
  assert.equal(typeof s.optimizeBandwidth, "object");
  for (const key of ["creditsUsed", "duration", "eventCount", "proxyBytesUsed", "timeout"] as const) {
    assert.equal(typeof s[key], "number", key);
  }
  assert.ok(Number.isInteger(s.dimensions.width) && Number.isInteger(s.dimensions.height));
}

async function main(): Promise<Record<string, unknown>> {
  const facts: Record<string, unknown> = {};
  const created: Session = await client.sessions.create({
    dimensions: { width: 640, height: 480 },
    userAgent: "bro-typed/1",
    timeout: 60000,
    optimizeBandwidth: { blockImages: true },
  });
  checkSession(created);
  assert.equal(created.status, "live");
  assert.equal(created.optimizeBandwidth.blockImages, true);

  const again: Session = await client.sessions.retrieve(created.id);
  checkSession(again);
  const ids: string[] = [];
  for await (const s of client.sessions.list()) {
    checkSession(s);
    ids.push(s.id);
  }
  assert.ok(ids.includes(created.id), JSON.stringify(ids));
  facts.listed = ids.length;

  const up = await client.sessions.files.upload(created.id, {
    file: await toFile(Buffer.from("typed files"), "typed.txt"),
    path: "typed.txt",
  });
  assert.equal(up.path, "typed.txt");
  assert.equal(up.size, 11);
  const files = await client.sessions.files.list(created.id);
  assert.deepEqual(files.data.map((f) => f.path), ["typed.txt"]);
  const body = await (await client.sessions.files.download(created.id, "typed.txt")).text();
  assert.equal(body, "typed files");
  await client.sessions.files.delete(created.id, "typed.txt");
  await client.sessions.files.deleteAll(created.id);

  const shot: ScreenshotResponse = await client.screenshot({ url: PAGE });
  const pdf: PdfResponse = await client.pdf({ url: PAGE });
  for (const [url, type] of [
    [shot.url, "image/jpeg"],
    [pdf.url, "application/pdf"],
  ]) {
    assert.ok(url.startsWith(`${base}/v1/artifacts/`), url);
    const res = await fetch(url, { headers: { "steel-api-key": apiKey } });
    assert.equal(res.status, 200, url);
    assert.equal(res.headers.get("content-type"), type);
  }
  facts.screenshotUrl = shot.url.startsWith(base);

  const released: SessionReleaseResponse = await client.sessions.release(created.id);
  assert.equal(released.success, true);
  assert.equal(typeof released.message, "string");
  const ended: Session = await client.sessions.retrieve(created.id);
  checkSession(ended);
  facts.status = ended.status;
  return facts;
}

main().then(
  (facts) => console.log(JSON.stringify(facts)),
  (err: unknown) => {
    console.error(err instanceof Error ? err.stack : String(err));
    process.exitCode = 1;
  },
);
