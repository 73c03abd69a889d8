// The dashboard in headless Chromium, against a real stack (tests/tests/dashboard.rs starts it and runs
// the agent on request): log in, register a model, create a realm, grant, register an agent and add it
// to the realm, connect it, set Realm Routing and see the violet banner and "delivered", revoke in a
// second tab and watch the config change live, go offline and online, the other modes, a realm admin,
// the phone width, CSRF, log out. Screenshots of each page go to $VC_ARTIFACTS.

import { request } from 'playwright-core';
import { run, launch, newPage, rust, shot, step, assertClean, env, checkAccessibility } from './lib.mjs';

const API = env('VC_API_URL');
const TOKEN = env('VC_ADMIN_TOKEN');
const DID = env('VC_AGENT_DID');
const UPSTREAM_SECRET = 'sk-upstream-secret-do-not-show';

// Chromium logs every 4xx answer as a console error: these are the ones the scenario provokes.
const EXPECTED_HTTP = /Failed to load resource: the server responded with a status of (400|401|403|409)/;

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

/** Polls `f` until it returns a truthy value (at most `ms`). */
async function until(f, what, ms = 10_000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await f();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

async function noKeysShown(page, where) {
  const text = await page.locator('body').innerText();
  check(!text.includes(UPSTREAM_SECRET), `${where}: the upstream API key is not shown`);
  // A key prefix is at most 8 characters ("sk-…" plus 5): anything longer would be a key.
  check(!/sk-[A-Za-z0-9_-]{9,}/.test(text), `${where}: no key value is shown`);
}

/**
 * A screenshot without the toasts of earlier steps (they would hide the page's content), and the WCAG
 * 2.1 A/AA checks of axe-core on the page as shown.
 */
async function snap(page, name) {
  await page.evaluate(() => document.getElementById('toasts')?.replaceChildren());
  await shot(page, name);
  await checkAccessibility(page, name);
}

/** A link of the main navigation. */
function nav(page, name) {
  return page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true });
}

async function noSidewaysScroll(page, where) {
  const [scroll, width] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  check(scroll <= width, `${where}: no sideways scrolling at ${width} px (content is ${scroll} px wide)`);
}

run(async () => {
  const admin = await request.newContext({ baseURL: API, extraHTTPHeaders: { authorization: `Bearer ${TOKEN}` } });
  const apiJson = async (method, path, data) => {
    const r = await admin.fetch(path, { method, data });
    const body = r.status() === 204 ? null : await r.json();
    check(r.ok(), `${method} ${path} answered ${r.status()}: ${JSON.stringify(body)}`);
    return body;
  };

  const browser = await launch();
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await newPage(context, 'main');

  step('login: a wrong token is refused with a message');
  await page.goto(`${API}/`);
  await page.getByLabel('Access token').fill('not-a-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'That token is not valid.' }).waitFor();
  await snap(page, '01-login');
  await page.getByLabel('Access token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Models', level: 1 }).waitFor();
  const cookie = (await context.cookies()).find((c) => c.name === 'vc_session');
  check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', `an HttpOnly SameSite=Strict session cookie (${JSON.stringify(cookie)})`);
  await page.locator('.live-state[data-state="live"]').waitFor();

  step('models: the empty state, then Register model');
  await page.getByText('No models yet').waitFor();
  await snap(page, '02-models-empty');
  await page.getByRole('button', { name: 'Register model' }).click();
  const dialog = page.getByRole('dialog', { name: 'Register model' });
  check((await dialog.getByLabel('Provider').inputValue()) === 'openai-compatible', 'OpenAI-compatible / vLLM is the default provider');
  check((await dialog.getByLabel('API key').getAttribute('type')) === 'password', 'the API key is a password field');
  for (const label of ['Name', 'Description', 'Provider', 'Model ID', 'Base URL', 'API key', 'Input price (USD per token)', 'Output price (USD per token)']) {
    check((await dialog.getByLabel(label, { exact: true }).count()) === 1, `the field ${label} is labelled`);
  }
  await dialog.getByLabel('Name').fill('Llama 3 (local)');
  await dialog.getByLabel('Description').fill('vLLM on the lab box');
  await dialog.getByLabel('Model ID').fill('llama3-8b');
  await dialog.getByLabel('Base URL').fill('http://127.0.0.1:9/v1');
  await dialog.getByLabel('API key').fill(UPSTREAM_SECRET);
  await dialog.getByLabel('Input price (USD per token)').fill('0.0000002');
  await dialog.getByText('$0.20 per 1M tokens').waitFor();
  await snap(page, '03-register-model');
  await dialog.getByRole('button', { name: 'Register model' }).click();
  await dialog.waitFor({ state: 'detached' });
  const row = page.getByRole('row').filter({ hasText: 'Llama 3 (local)' });
  await row.waitFor();
  check((await row.innerText()).includes('vLLM on the lab box'), 'the description is shown under the name');

  step('models: a clashing name shows the 409 next to the field and creates nothing');
  await page.getByRole('button', { name: 'Register model' }).click();
  await dialog.getByLabel('Name').fill('Llama 3 (local)');
  await dialog.getByLabel('Model ID').fill('other');
  await dialog.getByLabel('Base URL').fill('http://127.0.0.1:9/v1');
  await dialog.getByRole('button', { name: 'Register model' }).click();
  const nameError = dialog.locator('.field').filter({ has: page.getByLabel('Name') }).locator('.field-error');
  await nameError.filter({ hasText: '409' }).waitFor();
  check((await dialog.getByLabel('Name').getAttribute('aria-invalid')) === 'true', 'the name field is marked invalid');
  await snap(page, '04-register-conflict');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached' });
  check((await apiJson('GET', '/api/models')).models.length === 1, 'the clash created no model');
  await snap(page, '05-models');

  // A second model and a throwaway one, through the REST API (the fallback of a revoke; a delete).
  const alpha = (await apiJson('POST', '/api/models', { name: 'Alpha', provider: 'openai', modelId: 'alpha', apiKey: 'sk-alpha-upstream-secret' })).model;
  const scratch = (await apiJson('POST', '/api/models', { name: 'Scratch', provider: 'openai', modelId: 'scratch' })).model;

  step('realms: create a realm');
  await nav(page, 'Realms').click();
  await page.getByText('No realms yet').waitFor();
  await page.getByRole('button', { name: 'Create realm' }).click();
  const realmDialog = page.getByRole('dialog', { name: 'Create realm' });
  await realmDialog.getByLabel('Name').fill('Engineering');
  await realmDialog.getByLabel('Description').fill('The platform team');
  await realmDialog.getByRole('button', { name: 'Create realm' }).click();
  await page.getByRole('heading', { name: 'Engineering', level: 1 }).waitFor();
  await page.locator('section', { has: page.getByRole('heading', { name: 'Router key' }) }).getByText('Not configured').waitFor();
  const realm = (await apiJson('GET', '/api/realms')).realms.find((r) => r.name === 'Engineering');

  step('model detail: overview without the key, edit, then Realm Access: grant with a budget');
  await nav(page, 'Models').click();
  await page.getByRole('link', { name: 'Llama 3 (local)' }).click();
  await page.getByRole('heading', { name: 'Llama 3 (local)', level: 1 }).waitFor();
  const overview = page.getByRole('tabpanel');
  await overview.getByText('set', { exact: true }).waitFor();
  await overview.getByText('$0.20 per 1M tokens').waitFor();
  await overview.getByText("LiteLLM's default").waitFor();
  await noKeysShown(page, 'model overview');
  await page.getByRole('button', { name: 'Edit' }).click();
  const edit = page.getByRole('dialog', { name: /^Edit/ });
  await edit.getByLabel('Description').fill('vLLM on the lab box, 8B');
  check((await edit.getByLabel('Input price (USD per token)').inputValue()) === '0.0000002', 'the edit form shows the price per token');
  await edit.getByLabel('Output price (USD per token)').fill('0.000001');
  await edit.getByRole('button', { name: 'Save' }).click();
  await edit.waitFor({ state: 'detached' });
  await overview.getByText('vLLM on the lab box, 8B').waitFor();
  await overview.getByText('$1.00 per 1M tokens').waitFor();
  await snap(page, '06-model-overview');
  await page.getByRole('tab', { name: 'Realm Access' }).click();
  const access = page.locator('.access-row').filter({ hasText: 'Engineering' });
  await access.getByLabel('Monthly budget (USD)').fill('50');
  await access.getByRole('switch').check();
  await access.getByText('Granted · $50.00 / month').waitFor();
  await snap(page, '07-model-realm-access');
  const llama = (await apiJson('GET', '/api/models')).models.find((m) => m.name === 'Llama 3 (local)');
  await apiJson('POST', `/api/models/${alpha.id}/realms`, { realmId: realm.id });

  step('model detail: delete asks first');
  await page.goto(`${API}/#/models/${scratch.id}`);
  await page.getByRole('heading', { name: 'Scratch', level: 1 }).waitFor();
  await page.getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('dialog', { name: 'Delete Scratch?' }).getByRole('button', { name: 'Cancel' }).click();
  check((await apiJson('GET', `/api/models/${scratch.id}`)).model.name === 'Scratch', 'cancel deletes nothing');
  await page.getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('dialog', { name: 'Delete Scratch?' }).getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('heading', { name: 'Models', level: 1 }).waitFor();
  await until(async () => (await page.getByRole('link', { name: 'Scratch' }).count()) === 0, 'the deleted model to leave the list');

  step('agents: register the agent, add it to the realm as its primary');
  await nav(page, 'Agents').click();
  await page.getByRole('button', { name: 'Register agent' }).click();
  const agentDialog = page.getByRole('dialog', { name: 'Register agent' });
  await agentDialog.getByLabel('DID').fill(DID);
  await agentDialog.getByLabel('Name').fill('Agent Smith');
  await agentDialog.getByRole('button', { name: 'Register agent' }).click();
  await page.getByRole('heading', { name: 'Agent Smith', level: 1 }).waitFor();
  await page.goto(`${API}/#/realms/${realm.id}`);
  await page.getByRole('heading', { name: 'Engineering', level: 1 }).waitFor();
  await page.getByRole('button', { name: 'Add agent' }).click();
  const add = page.getByRole('dialog', { name: /^Add an agent/ });
  await add.getByLabel('Agent DID').fill(DID);
  await add.getByLabel('Primary realm of this agent').check();
  await add.getByRole('button', { name: 'Add agent' }).click();
  await add.waitFor({ state: 'detached' });
  const keyCard = page.locator('section', { has: page.getByRole('heading', { name: 'Router key' }) });
  await keyCard.getByText('Active', { exact: true }).waitFor();
  await keyCard.getByText('$50.00 / month').waitFor();
  await keyCard.getByText(alpha.litellmModelName).waitFor();
  await keyCard.getByText(llama.litellmModelName).waitFor();
  await page.getByRole('row').filter({ hasText: 'Agent Smith' }).waitFor();
  await noKeysShown(page, 'realm page');

  step('agent connects: the list shows it online without a reload');
  await nav(page, 'Agents').click();
  const agentRow = page.getByRole('row').filter({ hasText: 'Agent Smith' });
  await agentRow.getByText('offline', { exact: true }).waitFor();
  await rust('agent-connect');
  // Joining a realm with a key configured it through the realm, first active model by name.
  await rust('agent-config', alpha.litellmModelName);
  await agentRow.getByText('online', { exact: true }).waitFor();
  await agentRow.getByText('acked', { exact: true }).waitFor();
  await snap(page, '09-agents');
  await page.getByLabel('Search').fill('zzz');
  await page.getByText('No agents').waitFor();
  await page.getByLabel('Search').fill('Agent S');
  await agentRow.waitFor();
  await page.getByLabel('Status').selectOption('false');
  await page.getByText('No agents').waitFor();
  await page.getByLabel('Status').selectOption('true');
  await agentRow.waitFor();
  await nav(page, 'Realms').click();
  await page.getByRole('link', { name: /Engineering/ }).click();
  await page.getByRole('row').filter({ hasText: 'Agent Smith' }).getByText('online', { exact: true }).waitFor();
  await snap(page, '08-realm');

  step('router key: rotated from the realm page, the agent keeps its config');
  const realmKey = page.locator('section', { has: page.getByRole('heading', { name: 'Router key' }) });
  await realmKey.getByText('never rotated').waitFor();
  await realmKey.getByRole('button', { name: 'Rotate key' }).click();
  const rotate = page.getByRole('dialog', { name: /^Rotate the key/ });
  await rotate.getByLabel('Grace period (seconds)').fill('0');
  await rotate.getByRole('button', { name: 'Rotate key' }).click();
  await rotate.waitFor({ state: 'detached' });
  await realmKey.getByText(/rotated 1×/).waitFor();
  await realmKey.getByText('stable', { exact: true }).waitFor();
  await noKeysShown(page, 'realm page after a rotation');
  await rust('agent-config', alpha.litellmModelName);

  step('limits and spend: edit the limits, read the spend against the budget');
  await page.getByRole('button', { name: 'Edit', exact: true }).click();
  const limitsDialog = page.getByRole('dialog', { name: /^Edit / });
  await limitsDialog.getByLabel('Requests per minute').fill('60');
  await limitsDialog.getByRole('button', { name: 'Save' }).click();
  await limitsDialog.waitFor({ state: 'detached' });
  await realmKey.getByText('60 requests/min').waitFor();
  const spendCard = page.locator('section', { has: page.getByRole('heading', { name: 'Spend this month' }) });
  await spendCard.getByText('$0.00', { exact: true }).waitFor();
  await rust('team-spend', `${realm.id} 45`);
  await spendCard.getByRole('button', { name: 'Refresh' }).click();
  await spendCard.getByText('$45.00', { exact: true }).waitFor();
  await spendCard.getByText('80 %', { exact: true }).waitFor();
  check((await spendCard.getByRole('meter').getAttribute('aria-valuenow')) === '90', 'the meter shows 90 % of the budget');
  await snap(page, '08b-realm-spend');

  step('agent config: Realm Routing to Llama, the violet banner, delivered');
  await page.goto(`${API}/#/agents/${encodeURIComponent(DID)}`);
  await page.getByRole('heading', { name: 'Agent Smith', level: 1 }).waitFor();
  // Keyboard: the tabs follow the arrow keys.
  await page.getByRole('tab', { name: 'Overview' }).focus();
  await page.keyboard.press('ArrowRight');
  await until(async () => (await page.getByRole('tab', { name: 'Config' }).getAttribute('aria-selected')) === 'true', 'ArrowRight to select the Config tab');
  const focused = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  check(focused !== 'none', `the focused tab shows its focus (outline ${focused})`);
  const banner = page.locator('.banner-realm');
  await banner.filter({ hasText: 'Alpha via Engineering' }).waitFor();
  check((await page.getByRole('radio', { name: /^Realm Routing/ }).isChecked()) === true, 'Realm Routing is the current mode');
  const realmRadio = page.getByRole('radio', { name: /Engineering/ });
  check(await realmRadio.isChecked(), 'the agent\'s realm is chosen');
  await page.locator('.radio').filter({ has: realmRadio }).getByText('Primary').waitFor();
  const llamaRadio = page.getByRole('radio', { name: /Llama 3 \(local\)/ });
  await page.locator('.radio').filter({ has: llamaRadio }).getByText('OpenAI-compatible / vLLM').waitFor();
  await page.locator('.radio').filter({ has: llamaRadio }).getByText(llama.litellmModelName).waitFor();
  await llamaRadio.check();
  await page.getByRole('button', { name: 'Save Realm Routing' }).click();
  await banner.filter({ hasText: 'Llama 3 (local) via Engineering' }).waitFor();
  await rust('agent-config', llama.litellmModelName);
  await page.locator('.delivery').getByText('delivered', { exact: true }).waitFor();
  // The banner is redrawn on every ack or presence report: its style is read from the one on screen.
  await until(
    async () => (await banner.evaluate((el) => el.isConnected && getComputedStyle(el).backgroundColor)) === 'rgb(243, 232, 255)',
    'the Realm Routing banner to be violet',
  );
  await noKeysShown(page, 'agent config');
  await snap(page, '10-agent-config-realm');

  step('a revoke in a second tab changes the agent\'s config here, live');
  const second = await newPage(context, 'second');
  await second.goto(`${API}/#/models/${llama.id}?tab=access`);
  const secondAccess = second.locator('.access-row').filter({ hasText: 'Engineering' });
  await secondAccess.getByRole('switch').uncheck();
  await secondAccess.getByText('Not granted').waitFor();
  await snap(second, '11-second-tab-revoked');
  await banner.filter({ hasText: 'Alpha via Engineering' }).waitFor();
  await rust('agent-config', alpha.litellmModelName);
  await page.locator('.delivery').getByText('delivered', { exact: true }).waitFor();
  await snap(page, '12-agent-config-after-revoke');
  await llamaRadio.waitFor({ state: 'detached' });
  // A grant appears live too: the model is offered again, and the agent, whose choice was Llama, is
  // routed back to it.
  await secondAccess.getByRole('switch').check();
  await secondAccess.getByText(/^Granted ·/).waitFor();
  await llamaRadio.waitFor();
  await banner.filter({ hasText: 'Llama 3 (local) via Engineering' }).waitFor();
  await rust('agent-config', llama.litellmModelName);
  await page.locator('.delivery').getByText('delivered', { exact: true }).waitFor();
  await second.close();

  step('offline: saved, agent offline; back online: delivered');
  await rust('agent-disconnect');
  await page.locator('.lede').getByText('offline', { exact: true }).waitFor();
  await page.getByRole('radio', { name: /^From Registry/ }).check();
  await page.getByRole('combobox', { name: 'Model' }).selectOption(llama.id);
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await page.locator('.banner-registry').waitFor();
  await page.locator('.delivery').getByText('saved, agent offline').waitFor();
  await snap(page, '13-agent-config-offline');
  const registryCfg = await apiJson('GET', `/api/agents/${encodeURIComponent(DID)}/llm-config`);
  check(registryCfg.mode === 'registry', `the registry config is stored (${JSON.stringify(registryCfg)})`);
  await rust('agent-connect');
  await rust('agent-config', registryCfg.config.model);
  await page.locator('.delivery').getByText('delivered', { exact: true }).waitFor();

  step('manual and Clear');
  await page.getByRole('radio', { name: /^Configure manually/ }).check();
  const manual = page.getByRole('form', { name: 'Configure manually' });
  await manual.getByLabel('Provider').selectOption('openai');
  await manual.getByRole('button', { name: 'Save manual config' }).click();
  await manual.locator('.field-error').filter({ hasText: 'model' }).waitFor();
  await manual.getByLabel('Model', { exact: true }).fill('gpt-4o-mini');
  await manual.getByLabel('API key').fill('sk-manual-secret-value');
  await manual.getByRole('button', { name: 'Save manual config' }).click();
  await page.locator('.banner-manual').filter({ hasText: 'gpt-4o-mini' }).waitFor();
  await rust('agent-config', 'gpt-4o-mini');
  await noKeysShown(page, 'manual config');
  await page.getByRole('button', { name: 'Clear' }).click();
  await page.getByRole('dialog', { name: 'Clear the config?' }).getByRole('button', { name: 'Clear' }).click();
  await page.locator('.banner-none').waitFor();
  await rust('agent-config', 'null');

  step('phone width (390 px): no sideways scrolling on any page');
  await page.setViewportSize({ width: 390, height: 844 });
  for (const [name, hash, heading] of [
    ['models', '#/models', 'Models'],
    ['model', `#/models/${llama.id}?tab=access`, 'Llama 3 (local)'],
    ['realms', '#/realms', 'Realms'],
    ['realm', `#/realms/${realm.id}`, 'Engineering'],
    ['agents', '#/agents', 'Agents'],
    ['agent-config', `#/agents/${encodeURIComponent(DID)}?tab=config`, 'Agent Smith'],
  ]) {
    await page.goto(`${API}/${hash}`);
    await page.getByRole('heading', { name: heading, level: 1 }).waitFor();
    await page.locator('.loading').waitFor({ state: 'detached' });
    await noSidewaysScroll(page, name);
    await snap(page, `phone-${name}`);
  }
  await page.getByRole('button', { name: 'Menu' }).click();
  await nav(page, 'Models').click();
  await page.getByRole('heading', { name: 'Models', level: 1 }).waitFor();
  await page.setViewportSize({ width: 1280, height: 860 });

  step('CSRF: a cookie without the CSRF token writes nothing; a cross-site form post neither');
  const noCsrf = await page.evaluate(async () => {
    const r = await fetch('/api/realms', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"no-csrf"}' });
    return r.status;
  });
  check(noCsrf === 403, `a cookie write without X-CSRF-Token is refused (${noCsrf})`);
  const evil = await newPage(context, 'evil');
  await evil.route('http://localhost:9/evil', (route) =>
    route.fulfill({
      contentType: 'text/html',
      body: `<form method="post" action="${API}/api/realms" enctype="text/plain"><input name='{"name":"evil","x":"' value='"}'></form><script>document.forms[0].submit()</script>`,
    }),
  );
  await evil.goto('http://localhost:9/evil');
  await evil.waitForLoadState('load');
  await evil.close();
  const names = (await apiJson('GET', '/api/realms')).realms.map((r) => r.name);
  check(!names.includes('evil') && !names.includes('no-csrf'), `no realm was written by a forged request (${names})`);

  step('operations: LiteLLM status, the audit log, a realm-admin token (its secret shown once)');
  await nav(page, 'LiteLLM').click();
  await page.getByRole('heading', { name: 'LiteLLM', level: 1 }).waitFor();
  await page.getByText('not checked yet', { exact: true }).waitFor();
  await page.getByRole('button', { name: 'Reconcile now' }).click();
  await page.getByText('healthy', { exact: true }).waitFor();
  await snap(page, '16-litellm');
  await nav(page, 'Audit log').click();
  await page.getByRole('heading', { name: 'Audit log', level: 1 }).waitFor();
  await page.getByRole('row').filter({ hasText: 'realm.grant' }).first().waitFor();
  await snap(page, '17-audit');
  await nav(page, 'Access tokens').click();
  await page.getByText('No tokens').waitFor();
  await page.getByRole('button', { name: 'Create token' }).click();
  const tokenDialog = page.getByRole('dialog', { name: 'Create token' });
  await tokenDialog.getByLabel('Name').fill('eng-lead');
  await tokenDialog.getByLabel('Engineering').check();
  await tokenDialog.getByRole('button', { name: 'Create token' }).click();
  const secretDialog = page.getByRole('dialog', { name: 'Token "eng-lead" created' });
  const secret = await secretDialog.getByLabel('Secret').inputValue();
  check(secret.length >= 32, 'the secret is shown once, whole');
  await snap(page, '18-token-secret');
  await secretDialog.getByRole('button', { name: 'Done' }).click();
  await page.getByRole('row').filter({ hasText: 'eng-lead' }).getByText('Engineering').waitFor();
  check(!(await page.locator('body').innerText()).includes(secret), 'the secret is not shown after its dialog');
  const adminToken = { secret };

  step('a realm admin sees its realm and its agents, not the registry');
  const context2 = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const lead = await newPage(context2, 'realm-admin');
  await lead.goto(`${API}/`);
  // With the keyboard only: the login focuses its field, Enter submits.
  await lead.getByLabel('Access token').waitFor();
  check(await lead.getByLabel('Access token').evaluate((el) => el === document.activeElement), 'the token field has the focus');
  await lead.keyboard.type(adminToken.secret);
  await lead.keyboard.press('Enter');
  await lead.getByRole('heading', { name: 'Realms', level: 1 }).waitFor();
  check((await nav(lead, 'Models').count()) === 0, 'no Models page for a realm admin');
  await nav(lead, 'Agents').click();
  await lead.getByRole('row').filter({ hasText: 'Agent Smith' }).waitFor();
  await snap(lead, '14-realm-admin-agents');
  await context2.close();

  step('logout ends the session server-side');
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByText('You are signed out.').waitFor();
  await snap(page, '15-logged-out');
  const stale = await request.newContext({ baseURL: API, extraHTTPHeaders: { cookie: `vc_session=${cookie.value}` } });
  const after = await stale.get('/api/models');
  check(after.status() === 401, `the old cookie gets 401 after logout (${after.status()})`);
  await stale.dispose();
  await admin.dispose();

  assertClean([EXPECTED_HTTP]);
});
