// Helpers for the browser scenarios (tests/browser/*.mjs). A scenario is started by a Rust test
// (tests/tests/dashboard.rs), which hands it the stack through the environment and serves the line
// protocol of `rust()` on the script's stdin/stdout:
//
//   VC_API_URL      the vc-api base URL (http://127.0.0.1:PORT)
//   VC_ADMIN_TOKEN  the admin bearer token
//   VC_AGENT_DID    the DID of the agent the Rust test runs on request (not registered beforehand)
//   VC_EDGE_URL     the edge's WebSocket URL
//   VC_ARTIFACTS    where screenshots go (the Rust test clears it first)
//   VC_CHROMIUM     the Chromium to run (default /usr/bin/chromium, Debian's `chromium`)
//
// Progress and errors go to stderr. Stdout belongs to the protocol: the Rust test echoes to its stderr
// any stdout line that is not a protocol line, so console.log still shows up.
//
//   import { run, launch, newPage, rust, shot, step, assertClean, env } from './lib.mjs';
//   run(async () => {
//     const browser = await launch();
//     const context = await browser.newContext();
//     const page = await newPage(context, 'main');
//     step('open');
//     await page.goto(env('VC_API_URL'));
//     await rust('agent-connect');
//     await shot(page, 'main');
//     assertClean();
//   });

import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const STARTED = Date.now();
// The prefix of progress lines: the scenario's file name without `.mjs` (`dashboard`).
const NAME = path.basename(process.argv[1] || 'scenario').replace(/\.m?js$/, '');
// Hosts a page may load from: this machine only.
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
// Schemes that never leave the browser.
const INNER_SCHEMES = new Set(['data:', 'blob:', 'about:']);

// The browser of `launch()`, its pages (name → page) and what went wrong on them.
let browser = null;
const pages = new Map();
const pageNames = new WeakMap();
const routedContexts = new WeakSet();
let problems = [];

/** The value of environment variable `name`; throws when it is unset or empty. */
export function env(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set (tests/tests/dashboard.rs sets it; run the scenario through cargo test)`);
  }
  return v;
}

/** Logs a progress line to stderr: `dashboard: <what> (+<ms since start> ms)`. */
export function step(what) {
  process.stderr.write(`${NAME}: ${what} (+${Date.now() - STARTED} ms)\n`);
}

/**
 * Starts headless Chromium (Debian's, or $VC_CHROMIUM) through playwright-core; no browser is
 * downloaded. The flags keep it from calling out (updates, sync, QUIC probes): the test machines
 * have no way out, and the tests must not depend on one.
 */
export async function launch() {
  browser = await chromium.launch({
    executablePath: process.env.VC_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--no-default-browser-check',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-domain-reliability',
      '--disable-breakpad',
      '--disable-dev-shm-usage',
      '--metrics-recording-only',
    ],
  });
  return browser;
}

function isLocal(url) {
  let u;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  return INNER_SCHEMES.has(u.protocol) || LOCAL_HOSTS.has(u.hostname);
}

function record(problem) {
  problems.push(problem);
  process.stderr.write(`${NAME}: problem: ${problem}\n`);
}

function pageNameOf(request) {
  try {
    return pageNames.get(request.frame().page()) || 'page';
  } catch {
    // A service worker's request has no frame.
    return 'worker';
  }
}

/**
 * A new page of `context`, watched: console errors, uncaught exceptions and any request for
 * something outside this machine (aborted) are recorded for `assertClean()`. `name` names the page
 * in those records and in failure screenshots (`failure-<name>.png`).
 */
export async function newPage(context, name) {
  if (pages.has(name)) {
    throw new Error(`a page named ${name} exists already`);
  }
  if (!routedContexts.has(context)) {
    routedContexts.add(context);
    // Nothing is loaded from outside the machine: such requests are aborted and recorded.
    await context.route('**/*', (route) => {
      const request = route.request();
      if (isLocal(request.url())) {
        return route.fallback();
      }
      record(`${pageNameOf(request)}: outside request blocked (nothing loads from outside the machine): ${request.method()} ${request.url()}`);
      return route.abort('blockedbyclient');
    });
  }
  const page = await context.newPage();
  pages.set(name, page);
  pageNames.set(page, name);
  page.on('close', () => pages.delete(name));
  page.on('console', (msg) => {
    if (msg.type() !== 'error') {
      return;
    }
    const at = msg.location();
    if (at && at.url && !isLocal(at.url)) {
      // Chromium's "Failed to load resource" for a request aborted above: recorded already.
      return;
    }
    const where = at && at.url ? ` (${at.url}:${at.lineNumber})` : '';
    record(`${name}: console error: ${msg.text()}${where}`);
  });
  page.on('pageerror', (err) => record(`${name}: uncaught exception: ${err.stack || err.message || err}`));
  // WebSockets are not routed; one to another machine is still a violation.
  page.on('websocket', (ws) => {
    if (!isLocal(ws.url())) {
      record(`${name}: outside WebSocket (nothing loads from outside the machine): ${ws.url()}`);
    }
  });
  return page;
}

/**
 * Throws, listing them, if console errors, uncaught exceptions or outside requests were recorded
 * since the last call. `allow` lists expected ones (RegExp, or a substring): those are dropped.
 * `run()` calls it once more after the scenario's body returns.
 */
export function assertClean(allow = []) {
  const expected = (p) => allow.some((a) => (a instanceof RegExp ? a.test(p) : p.includes(a)));
  const left = problems.filter((p) => !expected(p));
  problems = [];
  if (left.length > 0) {
    throw new Error(`the pages were not clean:\n  ${left.join('\n  ')}`);
  }
}

/** Saves a full-page PNG screenshot to $VC_ARTIFACTS/<name>.png and returns its path. */
export async function shot(page, name, { timeout = 30_000 } = {}) {
  const dir = env('VC_ARTIFACTS');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true, timeout });
  return file;
}

// --- the line protocol with the Rust test -------------------------------------------------------------
// One readline on stdin for the whole process; replies are taken in order, and commands are sent one at
// a time (a call waits for the previous one's reply).

let lines = null;
const waiting = [];
const buffered = [];
let stdinClosed = false;
let queue = Promise.resolve();

function nextLine() {
  if (!lines) {
    lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
    lines.on('line', (line) => {
      const w = waiting.shift();
      if (w) {
        w.resolve(line);
      } else {
        buffered.push(line);
      }
    });
    lines.on('close', () => {
      stdinClosed = true;
      for (const w of waiting.splice(0)) {
        w.reject(new Error('the Rust test closed stdin'));
      }
    });
  }
  if (buffered.length > 0) {
    return Promise.resolve(buffered.shift());
  }
  if (stdinClosed) {
    return Promise.reject(new Error('the Rust test closed stdin'));
  }
  return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
}

async function exchange(cmd, args) {
  const line = ['@vc', cmd, ...args.map(String)].join(' ');
  if (line.includes('\n')) {
    throw new Error(`@vc ${cmd}: arguments must not contain newlines`);
  }
  process.stdout.write(`${line}\n`);
  const reply = await nextLine();
  const m = /^(ok|fail)(?: (.*))?$/.exec(reply);
  if (!m) {
    throw new Error(`@vc ${cmd}: unexpected reply ${JSON.stringify(reply)}`);
  }
  if (m[1] === 'fail') {
    throw new Error(`@vc ${[cmd, ...args].join(' ')} failed: ${m[2] || '(no reason given)'}`);
  }
  return m[2] || '';
}

/**
 * Asks the Rust test to do something: writes `@vc <cmd> <args…>` on stdout and waits for its reply.
 * Resolves with the text after `ok` (may be empty); rejects with the reason after `fail`.
 *
 *   agent-connect          start the agent ($VC_AGENT_DID); resolves once it got its first llm_config
 *   agent-config <model>   wait until the agent holds and has acked a config of <model> (`null`: no
 *                          config); resolves with that config's version
 *   agent-disconnect       stop the agent; resolves once the API shows it offline
 */
export function rust(cmd, ...args) {
  const result = queue.then(() => exchange(cmd, args));
  queue = result.catch(() => {});
  return result;
}

/**
 * The scenario's main: runs `body`, then `assertClean()`. On error: a screenshot of each open page
 * (`failure-<name>.png`, best effort), the error's stack on stderr, exit 1. Closes the browser; exit 0
 * on success.
 */
export async function run(body) {
  let code = 0;
  try {
    await body();
    assertClean();
    step('passed');
  } catch (e) {
    code = 1;
    for (const [name, page] of pages) {
      try {
        const file = await shot(page, `failure-${name}`, { timeout: 10_000 });
        process.stderr.write(`${NAME}: screenshot of page ${name}: ${file}\n`);
      } catch (s) {
        process.stderr.write(`${NAME}: no screenshot of page ${name}: ${s.message || s}\n`);
      }
    }
    process.stderr.write(`${NAME}: FAILED after ${Date.now() - STARTED} ms: ${(e && e.stack) || e}\n`);
  }
  if (browser) {
    try {
      await browser.close();
    } catch {
      // Exiting kills it anyway.
    }
  }
  process.exit(code);
}

// --- accessibility ------------------------------------------------------------------------------------

let axeSource = null;

/**
 * Runs axe-core (WCAG 2.1 A and AA rules) on the page as it is now; throws listing every violation with
 * the elements concerned. axe is evaluated through the DevTools protocol, so the page's own
 * Content-Security-Policy (scripts from its origin only) stays as it is.
 */
export async function checkAccessibility(page, where) {
  if (!axeSource) {
    const require = createRequire(import.meta.url);
    axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  }
  if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) {
    await page.evaluate(axeSource);
  }
  const violations = await page.evaluate(async () => {
    const r = await window.axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
    });
    return {
      passed: r.passes.length,
      violations: r.violations.map((v) => ({
        id: v.id,
        impact: v.impact,
        help: v.help,
        nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')),
      })),
    };
  }).then((r) => {
    // A page on which no rule applied was not checked at all (an empty or unloaded page).
    if (r.passed === 0) {
      throw new Error(`${where}: axe-core found no rule to check`);
    }
    return r.violations;
  });
  if (violations.length > 0) {
    const lines = violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.join(', ')}`);
    throw new Error(`${where}: accessibility violations:\n  ${lines.join('\n  ')}`);
  }
}
