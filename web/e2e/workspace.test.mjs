// The runs table: server-side paging and sort, the column picker, filters
// (and an invalid one), grouping, selection, eye toggles, compare with
// diff-only, the as-of view; every view round-trips through the URL.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startLogbook, launch, watch, shot, signIn, sleep } from './harness.mjs';

const E = 'alice', P = 'sweep';
const names = (page) => page.$$eval('table.runs tbody tr[data-run] th.name', (ths) => ths.map((t) => t.textContent));

describe('runs table', () => {
  let lb, ctx, page, w, alice;
  const ids = [];
  let asof; // between the first 40 runs and the last 20
  before(async (t) => {
    lb = await startLogbook();
    alice = await lb.admin.user('alice');
    await alice.project(E, P);
    for (let i = 0; i < 60; i++) {
      if (i === 40) {
        await sleep(1100);
        asof = new Date().toISOString();
        await sleep(1100);
      }
      const r = await alice.startRun(E, P, {
        name: `r-${String(i).padStart(2, '0')}`, job_type: i % 3 === 0 ? 'eval' : 'train', tags: i % 2 ? ['odd'] : ['even'],
        config: { lr: (i + 1) / 1000, batch_size: 32, optimizer: { name: i % 2 ? 'adam' : 'sgd' } },
      });
      ids.push(r.run_id);
      await alice.log(E, P, r.run_id, [{ step: 0, values: { loss: 1 - i / 100, acc: i / 100 } }]);
    }
    await alice.waitRows(E, P, ids[59], 1);
    ctx = await launch(t);
    if (!ctx) return;
    page = await ctx.newPage();
    w = watch(page);
    await signIn(page, lb.url, alice.key);
  });
  after(async () => {
    await ctx?.close();
    await lb?.stop();
  });

  it('pages on the server and sorts by a column, in the URL', async (t) => {
    if (!page) return t.skip('no browser');
    await page.goto(`${lb.url}/w/${E}/${P}?limit=20`);
    await page.waitForSelector('#run-count:has-text("1–20 of 60 runs")');
    assert.equal((await names(page))[0], 'r-59'); // newest first
    await page.click('#next-page');
    await page.waitForSelector('#run-count:has-text("21–40 of 60 runs")');
    assert.equal((await names(page))[0], 'r-39');
    assert.match(page.url(), /cursor=/);
    await page.click('#prev-page');
    await page.waitForSelector('#run-count:has-text("1–20 of 60 runs")');
    await page.click('button.sort[data-sort=name]');
    await page.waitForFunction(() => document.querySelector('table.runs tbody th.name')?.textContent === 'r-00');
    assert.match(page.url(), /sort=name/);
    await page.click('button.sort[data-sort=name]');
    await page.waitForFunction(() => document.querySelector('table.runs tbody th.name')?.textContent === 'r-59');
    assert.match(page.url(), /sort=-name/);
    // The URL alone reproduces the view.
    await page.goto(page.url());
    await page.waitForSelector('#run-count:has-text("1–20 of 60 runs")');
    assert.deepEqual((await names(page)).slice(0, 3), ['r-59', 'r-58', 'r-57']);
    w.check();
  });

  it('adds config and summary columns from the picker, sorts by a summary', async (t) => {
    if (!page) return t.skip('no browser');
    await page.goto(`${lb.url}/w/${E}/${P}?limit=20`);
    await page.waitForSelector('table.runs');
    await page.click('#columns-button');
    await page.fill('#column-search', 'lr');
    await page.check('#column-picker input[data-col="config.lr"]');
    await page.fill('#column-search', 'loss');
    await page.check('#column-picker input[data-col="summary.loss"]');
    await page.click('#columns-button');
    assert.match(decodeURIComponent(page.url()), /cols=.*config\.lr.*summary\.loss/);
    await page.waitForFunction(() => document.querySelector('tr[data-run] td[data-col="config.lr"]')?.textContent === '0.06');
    await page.click('button.sort[data-sort="summary.loss"]');
    await page.waitForFunction(() => document.querySelector('table.runs tbody th.name')?.textContent === 'r-59'); // lowest loss first
    assert.match(decodeURIComponent(page.url()), /sort=summary\.loss/);
    // Config columns sort on the server too, and so does the state.
    await page.click('button.sort[data-sort="config.lr"]');
    await page.waitForFunction(() => document.querySelector('table.runs tbody th.name')?.textContent === 'r-00');
    await page.click('button.sort[data-sort="config.lr"]');
    await page.waitForFunction(() => document.querySelector('table.runs tbody th.name')?.textContent === 'r-59');
    assert.match(decodeURIComponent(page.url()), /sort=-config\.lr/);
    // Only the chosen columns travel: no metrics, no other config keys.
    const [resp] = await Promise.all([
      page.waitForResponse((r) => r.url().includes('/runs?') && r.url().includes('sort=state')),
      page.click('button.sort[data-sort="state"]'),
    ]);
    assert.match(decodeURIComponent(resp.url()), /fields=config\.lr,summary\.loss/);
    const got = await resp.json();
    assert.equal(got.length, 20);
    assert.deepEqual(Object.keys(got[0].config), ['lr']);
    assert.deepEqual(Object.keys(got[0].summary), ['loss']);
    assert.equal(got[0].metrics, undefined);
    // Columns are remembered for the project when the URL does not name them.
    await page.goto(`${lb.url}/w/${E}/${P}`);
    await page.waitForSelector('th:has-text("config.lr")');
    await shot(page, 'runs-columns');
    w.check();
  });

  it('filters with the builder; an invalid filter is an error, not 0 runs', async (t) => {
    if (!page) return t.skip('no browser');
    await page.goto(`${lb.url}/w/${E}/${P}`);
    await page.waitForSelector('table.runs');
    await page.fill('#filter-field', 'config.lr');
    await page.selectOption('#filter-op', '>');
    await page.fill('#filter-value', '0.05');
    await page.click('.filter-builder button[type=submit]');
    await page.waitForSelector('#run-count:has-text("of 10 runs")');
    await page.fill('#filter-field', 'tag');
    await page.selectOption('#filter-op', '=');
    await page.fill('#filter-value', 'odd');
    await page.click('.filter-builder button[type=submit]');
    await page.waitForSelector('#run-count:has-text("of 5 runs")');
    const url = page.url();
    assert.match(decodeURIComponent(url), /f=config\.lr>0\.05.*f=tag=odd/);
    await page.goto(url);
    await page.waitForSelector('#run-count:has-text("of 5 runs")');
    assert.equal(await page.locator('#filter-chips .chip').count(), 2);
    // A comparison the server cannot parse.
    await page.fill('#filter-field', 'config.lr');
    await page.selectOption('#filter-op', '>=');
    await page.fill('#filter-value', 'abc');
    await page.click('.filter-builder button[type=submit]');
    await page.waitForSelector('#runs-error:has-text("Invalid filter")');
    assert.equal(await page.locator('#run-count').count(), 0, 'no run count under an invalid filter');
    assert.equal(await page.locator('#no-match').count(), 0);
    await shot(page, 'runs-invalid-filter');
    await page.click('#filter-chips .chip >> nth=2 >> button');
    await page.waitForSelector('#run-count:has-text("of 5 runs")');
    w.check([/status of 400/]);
  });

  it('searches runs by name on the server', async (t) => {
    if (!page) return t.skip('no browser');
    await page.goto(`${lb.url}/w/${E}/${P}`);
    await page.waitForSelector('table.runs');
    await page.fill('#run-search', 'r-1');
    await page.waitForSelector('#run-count:has-text("of 10 runs")');
    assert.match(page.url(), /q=r-1/);
    assert.ok((await names(page)).every((n) => n.startsWith('r-1')));
    await page.goto(page.url());
    await page.waitForSelector('#run-count:has-text("of 10 runs")');
    assert.equal(await page.inputValue('#run-search'), 'r-1');
    w.check();
  });

  it('groups by job type with counts', async (t) => {
    if (!page) return t.skip('no browser');
    await page.goto(`${lb.url}/w/${E}/${P}`);
    await page.waitForSelector('table.runs');
    await page.selectOption('#group-by', 'job_type');
    await page.waitForSelector('tbody.group[data-group="eval"]');
    assert.match(page.url(), /group=job_type/);
    assert.match(await page.textContent('tbody.group[data-group="eval"] .group-row'), /eval\s+20 runs/);
    assert.match(await page.textContent('tbody.group[data-group="train"] .group-row'), /train\s+40 runs/);
    await page.click('tbody.group[data-group="eval"] .group-toggle');
    await page.waitForFunction(() => document.querySelectorAll('tbody.group[data-group="eval"] tr[data-run]').length === 20);
    await shot(page, 'runs-grouped');
    await page.goto(page.url());
    await page.waitForSelector('tbody.group[data-group="train"]');
    // By a config value, with the aggregates of a summary column; by tag.
    await page.goto(`${lb.url}/w/${E}/${P}?group=config.optimizer.name&cols=state,summary.loss`);
    await page.waitForSelector('tbody.group[data-group="adam"]');
    assert.match(await page.textContent('tbody.group[data-group="adam"] .group-row'), /adam\s+30 runs/);
    assert.equal(await page.textContent('tbody.group[data-group="adam"] [data-agg="summary.loss"]'), 'loss: mean 0.7 (min 0.41, max 0.99, 30 runs)');
    assert.equal(await page.inputValue('#group-by'), 'config.optimizer.name');
    await page.click('tbody.group[data-group="adam"] .group-toggle');
    await page.waitForFunction(() => document.querySelectorAll('tbody.group[data-group="adam"] tr[data-run]').length === 30);
    await shot(page, 'runs-grouped-config');
    await page.selectOption('#group-by', 'tag');
    await page.waitForSelector('tbody.group[data-group="odd"]');
    assert.match(await page.textContent('tbody.group[data-group="odd"] .group-row'), /odd\s+30 runs/);
    w.check();
  });

  it('selects runs, hides one from the charts, compares with differences only', async (t) => {
    if (!page) return t.skip('no browser');
    await page.goto(`${lb.url}/w/${E}/${P}?sort=name`);
    await page.waitForSelector('table.runs');
    for (const i of [0, 1, 2]) await page.check(`tr[data-run="${ids[i]}"] input.sel`);
    assert.match(decodeURIComponent(page.url()), new RegExp(`sel=${ids[0]},${ids[1]},${ids[2]}`));
    await page.waitForSelector('#chart-info:has-text("3 selected runs")');
    await page.waitForSelector('.panel[data-metric=loss][data-runs="3"]');
    await page.click(`tr[data-run="${ids[1]}"] button.eye`);
    await page.waitForSelector('.panel[data-metric=loss][data-runs="2"]');
    assert.match(page.url(), new RegExp(`hide=${ids[1]}`));
    await page.click(`tr[data-run="${ids[1]}"] button.eye`);
    await page.waitForSelector('.panel[data-metric=loss][data-runs="3"]');
    await page.click('#compare-link');
    await page.waitForSelector('#compare-config tr[data-key="lr"]');
    assert.equal(await page.locator('#compare-config tr[data-key="batch_size"]').count(), 1);
    await page.check('#diff-only');
    await page.waitForFunction(() => !document.querySelector('#compare-config tr[data-key="batch_size"]'));
    assert.equal(await page.locator('#compare-config tr[data-key="lr"]').count(), 1);
    assert.equal(await page.locator('#compare-config tr[data-key="optimizer.name"]').count(), 1);
    assert.match(page.url(), /diff=1/);
    assert.deepEqual(await page.$$eval('#compare-config thead th a', (as) => as.map((a) => a.textContent)), ['r-00', 'r-01', 'r-02']);
    await shot(page, 'compare-diff');
    w.check();
  });

  it('shows the project as it was', async (t) => {
    if (!page) return t.skip('no browser');
    await page.goto(`${lb.url}/w/${E}/${P}?asof=${encodeURIComponent(asof)}`);
    await page.waitForSelector('#asof-runs');
    assert.equal(await page.locator('#asof-runs tbody tr').count(), 40);
    assert.match(await page.textContent('#asof-members'), /alice/);
    await shot(page, 'asof');
    await page.click('#asof-back');
    await page.waitForSelector('#run-count:has-text("of 60 runs")');
    assert.doesNotMatch(page.url(), /asof=/);
    // The picker sets it too (local time, to the second).
    const d = new Date(Date.parse(asof));
    const local = new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
    await page.fill('#asof', local);
    await page.click('.asof button[type=submit]');
    await page.waitForSelector('#asof-runs');
    assert.match(page.url(), /asof=/);
    w.check();
  });

  it('is usable from the keyboard', async (t) => {
    if (!page) return t.skip('no browser');
    await page.goto(`${lb.url}/w/${E}/${P}?cols=state`);
    await page.waitForSelector('table.runs');
    // Tab from the search box reaches the filter builder.
    await page.focus('#run-search');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'filter-field');
    // Sort headers, selection boxes and eye toggles are native controls.
    await page.focus('button.sort[data-sort=name]');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelector('table.runs tbody th.name')?.textContent === 'r-00');
    await page.focus(`tr[data-run="${ids[0]}"] input.sel`);
    await page.keyboard.press('Space');
    await page.waitForFunction((id) => new URLSearchParams(location.search).get('sel') === id, ids[0]);
    await page.focus(`tr[data-run="${ids[1]}"] button.eye`);
    await page.keyboard.press('Enter');
    await page.waitForFunction((id) => new URLSearchParams(location.search).get('hide') === id, ids[1]);
    // On a fresh page the skip link is the first stop.
    await page.goto(`${lb.url}/w/${E}/${P}`);
    await page.waitForSelector('table.runs');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
    w.check();
  });

  it('works at 800 px wide, with a pinned column staying in view', async (t) => {
    if (!page) return t.skip('no browser');
    await page.setViewportSize({ width: 800, height: 900 });
    await page.goto(`${lb.url}/w/${E}/${P}?cols=state,owner,job_type,group,tags,created_at,duration,config.lr,summary.acc`);
    await page.waitForSelector('table.runs');
    await page.click('#columns-button');
    await page.click('#column-picker button[data-pin="config.lr"]');
    await page.click('#columns-button');
    assert.match(decodeURIComponent(page.url()), /pin=config\.lr/);
    const heads = await page.$$eval('table.runs thead th', (ths) => ths.map((th) => th.textContent.replace(/[ ▲▼]+$/, '')));
    assert.deepEqual(heads.slice(1, 3), ['Name', 'config.lr']);
    const cellX = () => page.$eval('table.runs tbody tr td[data-col="config.lr"]', (td) => td.getBoundingClientRect().left);
    const stateX = () => page.$eval('table.runs tbody tr td[data-col="state"]', (td) => td.getBoundingClientRect().left);
    await page.waitForTimeout(100);
    const [x0, s0] = [await cellX(), await stateX()];
    await page.$eval('#runs', (b) => { b.scrollLeft = 300; });
    await page.waitForTimeout(100);
    const [x1, s1] = [await cellX(), await stateX()];
    assert.ok(Math.abs(x1 - x0) < 2, `the pinned column moved from ${x0} to ${x1}`);
    assert.ok(s0 - s1 > 100, `an unpinned column did not scroll (${s0} -> ${s1})`);
    await shot(page, 'runs-pinned-800px');
    // Remembered for the project.
    await page.goto(`${lb.url}/w/${E}/${P}`);
    await page.waitForSelector('table.runs thead th.pinned');
    await page.goto(`${lb.url}/w/${E}/${P}`);
    await page.waitForSelector('.panel[data-metric=loss] canvas');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than the window`);
    await shot(page, 'workspace-800px');
    await page.setViewportSize({ width: 1280, height: 900 });
    w.check();
  });
});
