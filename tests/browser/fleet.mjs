// The agents page at fleet scale, measured in headless Chromium (run by `vc-bench reads --dashboard`,
// which seeds the agents and starts the API): time to the first page, to a filter's answer and to the
// next page, each repeated. Prints one JSON line on stdout: {firstPageMs: [...], filterDidMs: [...], …}.
// A measurement, not a test: nothing here is asserted against a time.
//
//   VC_API_URL, VC_ADMIN_TOKEN   the API and its admin token
//   VC_FLEET_DID                 one seeded agent's DID (the filter looks for it)
//   VC_FLEET_REPEAT              repetitions (default 5)

import { run, launch, newPage, step, env } from './lib.mjs';

const API = env('VC_API_URL');
const TOKEN = env('VC_ADMIN_TOKEN');
const DID = env('VC_FLEET_DID');
const REPEAT = Number(process.env.VC_FLEET_REPEAT || 5);

async function timed(f) {
  const t = performance.now();
  await f();
  return Math.round((performance.now() - t) * 10) / 10;
}

run(async () => {
  const browser = await launch();
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await newPage(context, 'fleet');
  await page.goto(`${API}/`);
  await page.getByLabel('Access token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Models', level: 1 }).waitFor();

  const rows = page.locator('table.agents tbody tr');
  const out = { firstPageMs: [], filterDidMs: [], filterOnlineMs: [], nextPageMs: [], rowsShown: 0 };
  for (let i = 0; i < REPEAT; i += 1) {
    step(`round ${i + 1} of ${REPEAT}`);
    await page.goto('about:blank');
    // A full load of the page: scripts, session, the realm list for the filter, the first page.
    out.firstPageMs.push(
      await timed(async () => {
        await page.goto(`${API}/#/agents`);
        await rows.nth(49).waitFor();
      }),
    );
    out.rowsShown = await rows.count();
    // The search is debounced (200 ms after the last keystroke): included in the figure.
    out.filterDidMs.push(
      await timed(async () => {
        await page.getByLabel('Search').fill(DID.slice(0, 24));
        await page.waitForFunction(
          (did) => {
            const r = document.querySelectorAll('table.agents tbody tr');
            return r.length === 1 && r[0].querySelector('[title]')?.title === did;
          },
          DID,
        );
      }),
    );
    await page.getByLabel('Search').fill('');
    await rows.nth(49).waitFor();
    out.filterOnlineMs.push(
      await timed(async () => {
        await page.getByLabel('Status').selectOption('true');
        await page.getByText('No agents', { exact: true }).waitFor();
      }),
    );
    await page.getByLabel('Status').selectOption('');
    await rows.nth(49).waitFor();
    out.nextPageMs.push(
      await timed(async () => {
        await page.getByRole('button', { name: 'Next' }).click();
        await page.getByText('Page 2 ·').waitFor();
      }),
    );
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
});
