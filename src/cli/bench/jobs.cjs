// bro bench's job driver (run by `node -e`, config in BRO_BENCH_JOBS): runs `jobs` jobs,
// `concurrency` at a time, each "fresh browser, open the page, read its title, take a
// screenshot, close", either through bro (create a session, connectOverCDP, release) or
// with Playwright's own launch of the same Chromium. Prints one JSON object: the wall time
// and each job's steps in milliseconds. Never downloads a browser.
'use strict';
const cfg = JSON.parse(process.env.BRO_BENCH_JOBS);
const { chromium } = require(cfg.playwright);

const now = () => Number(process.hrtime.bigint()) / 1e6;
const TIMEOUT = 60000;

// An error's message, bounded.
const message = (e, max = 300) => String(e && e.message ? e.message : e).slice(0, max);

// Runs `job`, then `cleanup` whatever the job did; a cleanup's failure never hides the job's
// own: the job's error is thrown with the cleanup's added, a cleanup's alone when the job
// went well.
async function withCleanup(job, cleanup) {
  let failed = null;
  try {
    await job();
  } catch (e) {
    failed = e;
  }
  try {
    await cleanup();
  } catch (e) {
    if (failed) throw new Error(`${message(failed)} (and then ${message(e)})`);
    throw e;
  }
  if (failed) throw failed;
}

async function broJob(steps) {
  let t = now();
  const created = await fetch(`${cfg.api}/v1/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(cfg.body),
    signal: AbortSignal.timeout(TIMEOUT),
  });
  if (!created.ok) throw new Error(`create: HTTP ${created.status} ${await created.text()}`);
  const session = await created.json();
  steps.start = now() - t;
  await withCleanup(
    async () => {
      t = now();
      const browser = await chromium.connectOverCDP(session.websocketUrl, { timeout: TIMEOUT });
      let page;
      if (cfg.bro_page === 'new') {
        // The call Playwright's side makes: a page in a new context, 1280×720.
        page = await browser.newPage();
      } else {
        // The session's own first page (steel's examples): Playwright emulates no viewport
        // in a connected browser's default context.
        const context = browser.contexts()[0];
        page = context.pages()[0] ?? (await context.newPage());
      }
      steps.page = now() - t;
      await work(page, steps);
      t = now();
      await browser.close();
    },
    async () => {
      let released;
      try {
        released = await fetch(`${cfg.api}/v1/sessions/${session.id}/release`, {
          method: 'POST',
          signal: AbortSignal.timeout(TIMEOUT),
        });
      } catch (e) {
        throw new Error(`release: ${message(e)}`);
      }
      steps.close = now() - t;
      if (!released.ok) throw new Error(`release: HTTP ${released.status}`);
    },
  );
}

async function playwrightJob(steps) {
  let t = now();
  const browser = await chromium.launch({
    executablePath: cfg.chromium,
    args: cfg.chromium_args,
    timeout: TIMEOUT,
  });
  steps.start = now() - t;
  await withCleanup(
    async () => {
      t = now();
      const page = await browser.newPage();
      steps.page = now() - t;
      await work(page, steps);
    },
    async () => {
      t = now();
      try {
        await browser.close();
      } catch (e) {
        throw new Error(`close: ${message(e)}`);
      }
      steps.close = now() - t;
    },
  );
}

async function work(page, steps) {
  const t = now();
  await page.goto(cfg.page, { timeout: TIMEOUT });
  const title = await page.title();
  if (title !== cfg.title) throw new Error(`title ${JSON.stringify(title)}`);
  await page.screenshot({ timeout: TIMEOUT });
  steps.work = now() - t;
}

async function main() {
  const job = cfg.mode === 'bro' ? broJob : playwrightJob;
  const done = [];
  const errors = [];
  let next = 0;
  const t0 = now();
  const worker = async () => {
    while (next < cfg.jobs) {
      next += 1;
      const steps = {};
      const t = now();
      try {
        await job(steps);
        steps.total = now() - t;
        done.push(steps);
      } catch (e) {
        errors.push(message(e, 700));
      }
    }
  };
  await Promise.all(Array.from({ length: cfg.concurrency }, worker));
  const wall = now() - t0;
  process.stdout.write(JSON.stringify({ wall_ms: wall, done, errors: errors.slice(0, 5), failures: errors.length }) + '\n');
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
    process.exit(1);
  },
);
