// Sign in and out, the projects list, creating a project, empty states.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startLogbook, launch, watch, shot, signIn } from './harness.mjs';

describe('sign-in and projects', () => {
  let lb, ctx, page, w, alice, bob;
  before(async (t) => {
    lb = await startLogbook();
    alice = await lb.admin.user('alice');
    bob = await lb.admin.user('bob');
    await alice.project('alice', 'vision');
    await alice.project('alice', 'nlp');
    await alice.invite('alice', 'nlp', 'bob', 'viewer');
    const r = await alice.startRun('alice', 'vision', { name: 'first' });
    await alice.finish('alice', 'vision', r.run_id);
    ctx = await launch(t);
    if (!ctx) return;
    page = await ctx.newPage();
    w = watch(page);
  });
  after(async () => {
    await ctx?.close();
    await lb?.stop();
  });

  it('refuses a bad key without saving it', async (t) => {
    if (!page) return t.skip('no browser');
    await page.goto(lb.url + '/');
    await page.fill('#key', 'lb-not-a-real-key-000000000000000000000000000000');
    await page.click('button[type=submit]');
    await page.waitForSelector('#signin-error:has-text("not accepted")');
    assert.equal(await page.evaluate(() => localStorage.getItem('logbook.apiKey')), null);
    assert.equal(await page.locator('#whoami').count(), 0);
    await page.reload();
    await page.waitForSelector('#key');
    assert.equal(await page.locator('#whoami').count(), 0, 'a reload after a bad key must not be signed in');
    await shot(page, 'signin-bad-key');
    w.check([/status of 401/]);
  });

  it('signs in, lists projects with role and run count, searches', async (t) => {
    if (!page) return t.skip('no browser');
    await signIn(page, lb.url, alice.key);
    assert.equal(await page.textContent('#whoami'), 'alice');
    assert.equal(await page.evaluate(() => localStorage.getItem('logbook.apiKey')), alice.key);
    const row = page.locator('tr[data-project="alice/vision"]');
    await row.waitFor();
    assert.match(await row.innerText(), /admin\s+1\b/i);
    await page.waitForFunction(() => /ago/.test(document.querySelector('tr[data-project="alice/vision"] td:nth-child(4)').textContent));
    await page.fill('#project-search', 'nl');
    await page.waitForFunction(() => document.querySelectorAll('#projects tbody tr').length === 1);
    assert.match(page.url(), /\?q=nl$/);
    await shot(page, 'projects');
    w.check();
  });

  it('creates a project and shows how to log the first run', async (t) => {
    if (!page) return t.skip('no browser');
    await page.goto(lb.url + '/');
    await page.fill('#new-project', 'speech');
    await page.click('#new-project ~ button[type=submit]');
    await page.waitForURL(/\/w\/alice\/speech$/);
    const py = await page.locator('#snippet-python').innerText();
    assert.ok(py.includes(`WANDB_BASE_URL=${lb.url}`), py);
    assert.ok(py.includes('entity="alice", project="speech"'), py);
    const go = await page.locator('#snippet-go').innerText();
    assert.ok(go.includes('Entity: "alice", Project: "speech"'), go);
    await shot(page, 'empty-project');
    // A run started now appears without a reload.
    const started = Date.now();
    await alice.startRun('alice', 'speech', { name: 'hello' });
    await page.waitForSelector('tr[data-run] >> text=hello', { timeout: 5000 });
    const ms = Date.now() - started;
    assert.ok(ms <= 2500, `the new run appeared after ${ms} ms`);
    w.check();
  });

  it('a user with no project sees how to start', async (t) => {
    if (!page) return t.skip('no browser');
    const carol = await lb.admin.user('carol');
    await page.evaluate(() => localStorage.clear());
    await signIn(page, lb.url, carol.key);
    await page.waitForSelector('text=No projects yet');
    await shot(page, 'no-projects');
    w.check();
  });

  it('a Viewer sees the role; sign-out forgets the key', async (t) => {
    if (!page) return t.skip('no browser');
    await page.click('#signout');
    await page.waitForSelector('#key');
    assert.equal(await page.evaluate(() => localStorage.getItem('logbook.apiKey')), null);
    await signIn(page, lb.url, bob.key);
    const row = page.locator('tr[data-project="alice/nlp"]');
    await row.waitFor();
    assert.match(await row.innerText(), /viewer/i);
    await page.click('#signout');
    await page.waitForSelector('text=Signed out');
    await page.reload();
    await page.waitForSelector('#key');
    assert.equal(await page.locator('#whoami').count(), 0);
    w.check();
  });
});
