// Project settings (members invite/role/remove by an Admin, read-only for a
// Viewer, the last-Admin rule, audit), own API keys (create shown once,
// revoke), and the run page (header fields of finished and crashed runs,
// config/summary tables, console output with a live tail).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startLogbook, launch, watch, shot, signIn, rowsOf, Client } from './harness.mjs';

const E = 'alice', P = 'seg';

describe('settings, keys and the run page', () => {
  let lb, ctx, page, w, alice, viewer, finished, crashed;
  before(async (t) => {
    // Runs quiet for 3 s crash, so a crashed run can be shown.
    lb = await startLogbook({ args: ['-runs.crash-after', '3s'] });
    alice = await lb.admin.user('alice');
    await lb.admin.user('bob');
    viewer = await lb.admin.user('vera');
    await alice.project(E, P);
    await alice.invite(E, P, 'vera', 'viewer');
    let r = await alice.startRun(E, P, { name: 'done', job_type: 'train', group: 'g1', tags: ['base'], notes: 'a baseline',
      config: { optimizer: { name: 'adam', lr: 0.001 }, layers: [64, 32] } });
    finished = r.run_id;
    await alice.log(E, P, finished, rowsOf(50, { loss: (s) => 1 / (s + 1), 'val/acc': (s) => s / 50 }));
    await alice.output(E, P, finished, 0, ['epoch 0', 'epoch 1', 'loading 10%']);
    await alice.upload(E, P, finished, 'config.yaml', 'lr: 0.001\nlayers: [64, 32]\n');
    await alice.waitRows(E, P, finished, 50);
    await alice.finish(E, P, finished, { exit_code: 0 });
    ctx = await launch(t);
    if (!ctx) return;
    page = await ctx.newPage();
    w = watch(page);
  });
  after(async () => {
    await ctx?.close();
    await lb?.stop();
  });

  it('an Admin invites by username and email, changes a role, removes; the last Admin stays', async (t) => {
    if (!page) return t.skip('no browser');
    await signIn(page, lb.url, alice.key);
    await page.goto(`${lb.url}/w/${E}/${P}/settings`);
    await page.waitForSelector('#members-table tr[data-member="vera"]');
    await page.fill('#invite-who', 'bob');
    await page.selectOption('#invite-role', 'member');
    await page.click('#invite-form button[type=submit]');
    await page.waitForSelector('#members-table tr[data-member="bob"] select.role-select');
    assert.equal(await page.inputValue('tr[data-member="bob"] select'), 'member');
    await page.fill('#invite-who', 'newcomer@example.com');
    await page.selectOption('#invite-role', 'viewer');
    await page.click('#invite-form button[type=submit]');
    await page.waitForSelector('tr[data-member="newcomer@example.com"] >> text=invited');
    await page.selectOption('tr[data-member="bob"] select', 'admin');
    await page.waitForSelector('#settings-ok:has-text("bob is now admin")');
    await page.reload();
    await page.waitForSelector('tr[data-member="bob"] select');
    assert.equal(await page.inputValue('tr[data-member="bob"] select'), 'admin');
    await shot(page, 'settings-members');
    // Remove (two presses: the first arms the button).
    await page.click('button[aria-label="remove bob"]');
    await page.click('button[aria-label="remove bob"]:has-text("Really")');
    await page.waitForFunction(() => !document.querySelector('tr[data-member="bob"]'));
    await page.click('button[aria-label="revoke invite of newcomer@example.com"]');
    await page.click('button[aria-label="revoke invite of newcomer@example.com"]:has-text("Really")');
    await page.waitForFunction(() => !document.querySelector('tr[data-member="newcomer@example.com"]'));
    // Alice is the last Admin: demoting herself is refused with the reason.
    await page.selectOption('tr[data-member="alice"] select', 'member');
    await page.waitForSelector('#settings-error:has-text("Make someone else Admin first")');
    await shot(page, 'settings-last-admin');
    // The audit trail shows what happened.
    await page.reload();
    await page.waitForSelector('#audit-table');
    const audit = await page.textContent('#audit-table');
    for (const ty of ['member_invited', 'role_changed', 'member_removed', 'invite_revoked', 'project_created']) assert.ok(audit.includes(ty), `audit lacks ${ty}`);
    assert.match(audit, /rejected/);
    await shot(page, 'settings-audit');
    w.check([/status of 409/]);
  });

  it('a Viewer reads the members and cannot change them', async (t) => {
    if (!page) return t.skip('no browser');
    await page.click('#signout');
    await signIn(page, lb.url, viewer.key);
    await page.goto(`${lb.url}/w/${E}/${P}/settings`);
    await page.waitForSelector('#read-only');
    assert.match(await page.textContent('#read-only'), /viewer/);
    assert.equal(await page.locator('#invite-form').count(), 0);
    assert.equal(await page.locator('select.role-select').count(), 0);
    assert.equal(await page.locator('button[aria-label^="remove"]').count(), 0);
    assert.equal(await page.locator('#delete-project').count(), 0);
    assert.match(await page.textContent('#members-table'), /alice/);
    await shot(page, 'settings-viewer');
    w.check();
  });

  it('creates a key shown once, lists and revokes it', async (t) => {
    if (!page) return t.skip('no browser');
    await page.goto(`${lb.url}/w/_keys`);
    await page.waitForSelector('#keys-table');
    await page.fill('#key-name', 'laptop');
    await page.click('#key-form button[type=submit]');
    await page.waitForSelector('#new-key-value');
    const key = await page.textContent('#new-key-value');
    assert.match(key, /^lb-[0-9a-f]{48}$/);
    const me = await new Client(lb.url, key).req('GET', '/api/v1/whoami');
    assert.equal(me.username, 'vera');
    await page.waitForSelector('#keys-table td:has-text("laptop")');
    await shot(page, 'keys-created');
    await page.reload();
    await page.waitForSelector('#keys-table td:has-text("laptop")');
    assert.equal(await page.locator('#new-key-value').count(), 0, 'the key is shown only once');
    const row = page.locator('#keys-table tr', { hasText: 'laptop' });
    await row.locator('button').click();
    await row.locator('button:has-text("Really")').click();
    await page.waitForFunction(() => ![...document.querySelectorAll('#keys-table td')].some((td) => td.textContent === 'laptop'));
    const res = await new Client(lb.url, key).req('GET', '/api/v1/whoami', undefined, { ok: false });
    assert.equal(res.status, 401);
    w.check();
  });

  it('shows a finished run: header, config and summary tables, charts, console', async (t) => {
    if (!page) return t.skip('no browser');
    await page.click('#signout');
    await signIn(page, lb.url, alice.key);
    await page.goto(`${lb.url}/w/${E}/${P}/runs/${finished}`);
    await page.waitForSelector('#run-header');
    assert.equal(await page.textContent('#run-state'), 'finished');
    const f = async (k) => page.textContent(`dd[data-field="${k}"]`);
    assert.equal(await f('owner'), 'alice');
    assert.equal(await f('job_type'), 'train');
    assert.equal(await f('group'), 'g1');
    assert.equal(await f('exit_code'), '0');
    assert.ok((await f('ended')).length > 0);
    assert.match(await f('duration'), /^\d+s$/);
    assert.equal(await f('last_step'), '49');
    assert.equal(await page.textContent('#config-table tr[data-key="optimizer.lr"] td'), '0.001');
    assert.equal(await page.textContent('#config-table tr[data-key="layers"] td'), '[64,32]');
    await page.fill('#config-search', 'optim');
    await page.waitForFunction(() => document.querySelectorAll('#config-table tr').length === 2);
    assert.equal(await page.textContent('#summary-table tr[data-key="val/acc"] td'), '0.98');
    await page.waitForSelector('#run-charts .panel[data-metric="loss"][data-points="50"]');
    assert.deepEqual(await page.$$eval('#console .line', (ls) => ls.map((l) => l.lastChild.textContent)), ['epoch 0', 'epoch 1', 'loading 10%']);
    // Its files, downloaded with the key.
    await page.waitForSelector('#files-table tr[data-file="config.yaml"]');
    assert.match(await page.textContent('#files-table tr[data-file="config.yaml"]'), /27 B/);
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#files-table tr[data-file="config.yaml"] button')]);
    assert.equal(dl.suggestedFilename(), 'config.yaml');
    assert.equal(readFileSync(await dl.path(), 'utf8'), 'lr: 0.001\nlayers: [64, 32]\n');
    await shot(page, 'run-finished');
    w.check();
  });

  it('tails console output live and shows a crash', async (t) => {
    if (!page) return t.skip('no browser');
    crashed = (await alice.startRun(E, P, { name: 'quiet' })).run_id;
    await page.goto(`${lb.url}/w/${E}/${P}/runs/${crashed}`);
    await page.waitForSelector('#run-state:has-text("running")');
    await alice.output(E, P, crashed, 0, ['starting']);
    await page.waitForSelector('#console .line >> text=starting', { timeout: 3000 });
    await alice.output(E, P, crashed, 0, ['starting', 'step 1']);
    await page.waitForSelector('#console .line >> text=step 1', { timeout: 3000 });
    // Quiet for 3 s: the crash sweeper marks it crashed, and the page follows.
    await page.waitForSelector('#run-state:has-text("crashed")', { timeout: 15000 });
    assert.ok((await page.textContent('dd[data-field="ended"]')).length > 0);
    assert.match(await page.textContent('#run-header'), /Crashed at/);
    await shot(page, 'run-crashed');
    w.check();
  });
});
