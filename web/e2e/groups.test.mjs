// Grouped charts: with the table grouped, each panel draws one line per
// group (the mean across its runs, aligned by step) with a band, the legend
// names the group and its run count, hidden runs leave the mean, the band
// kind and the runs beneath are choices in the URL, and ungrouping draws
// runs again. The numbers are read from the panel's series.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startLogbook, launch, watch, shot, signIn, rowsOf } from './harness.mjs';

const E = 'alice', P = 'grouped', STEPS = 1000;

describe('grouped charts', () => {
  let lb, ctx, page, w, alice;
  const id = {};
  before(async (t) => {
    lb = await startLogbook();
    alice = await lb.admin.user('alice');
    await alice.project(E, P);
    // Group a: loss 1 and 3 at every step (mean 2, band [1, 3]). Group b:
    // 10 for 1,000 steps and 20 for the first 500 (mean 15, then 10).
    const runs = [['a1', 'a', 1, STEPS, 1e-5], ['a2', 'a', 3, STEPS, 1e-5], ['b1', 'b', 10, STEPS, 1e6], ['b2', 'b', 20, STEPS / 2, 1e6]];
    for (const [name, jt, v, n, lr] of runs) {
      const r = await alice.startRun(E, P, { name, job_type: jt, config: { lr } });
      id[name] = r.run_id;
      await alice.log(E, P, r.run_id, rowsOf(n, { loss: () => v }));
      await alice.finish(E, P, r.run_id);
    }
    for (const [name, , , n] of runs) await alice.waitRows(E, P, id[name], n);
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

  const loss = '.panel[data-metric="loss"]';
  const groupsOf = () => page.evaluate((sel) => document.querySelector(sel).__panel.current.map((s) => ({
    name: s.label, runs: s.runs, color: s.color, xs: s.xs, mean: s.raw, ys: s.ys, lo: s.lo, hi: s.hi,
  })), loss);
  const ready = (attrs) => page.waitForSelector(`${loss}${attrs}:not([data-loading])`);
  const every = (xs, f) => xs.every((x, i) => f(x, i));
  const rgb = (hex) => `rgb(${[1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)).join(', ')})`;
  const rowColor = (g) => page.$eval(`tbody.group[data-group="${g}"] .group-row .swatch`, (el) => getComputedStyle(el).backgroundColor);

  it('draws one mean line and min/max band per group, in the colours of the group rows', async (t) => {
    if (!page) return t.skip('no browser');
    await page.goto(`${lb.url}/w/${E}/${P}?group=job_type`);
    await ready('[data-groups="2"][data-runs="4"]');
    assert.match(await page.textContent('#chart-info'), /2 groups/);
    const [a, b] = await groupsOf();
    assert.deepEqual([a.name, a.runs, b.name, b.runs], ['a', 2, 'b', 2]);
    assert.ok(a.xs.length > 100, `${a.xs.length} points`);
    assert.ok(every(a.mean, (m) => m === 2) && every(a.lo, (v) => v === 1) && every(a.hi, (v) => v === 3), JSON.stringify(a).slice(0, 300));
    // b: both runs up to step 499, b1 alone after.
    assert.ok(every(b.xs, (x, i) => b.mean[i] === (x <= 499 ? 15 : 10)), 'group b mean');
    assert.ok(every(b.xs, (x, i) => x <= 499 ? b.lo[i] === 10 && b.hi[i] === 20 : b.lo[i] === 10 && b.hi[i] === 10), 'group b band');
    assert.equal(b.xs[b.xs.length - 1], STEPS - 1);
    // One uPlot line per group (mean, band low, band high), and one band each.
    assert.deepEqual(await page.evaluate((sel) => { const u = document.querySelector(sel).__panel.plot; return [u.series.length, u.bands.length]; }, loss), [7, 2]);
    // The group rows show the colour the charts use.
    for (const g of [a, b]) assert.equal(await rowColor(g.name), rgb(g.color));
    assert.notEqual(a.color, b.color);
    // Legend: the group's name and run count.
    assert.equal(await page.textContent(`${loss} .legend-row[data-group="a"] .legend-name`), 'a');
    assert.equal(await page.textContent(`${loss} .legend-row[data-group="a"] .legend-count`), '2 runs');
    await shot(page, 'charts-grouped');
    w.check();
  });

  it('hover shows each group\'s mean and band at the step', async (t) => {
    if (!page) return t.skip('no browser');
    await page.locator(`${loss} .u-over`).scrollIntoViewIfNeeded();
    const box = await page.locator(`${loss} .u-over`).boundingBox();
    await page.mouse.move(box.x + box.width * 0.25, box.y + box.height / 2);
    await page.waitForFunction((sel) => document.querySelector(sel + ' .legend').dataset.x !== '', loss);
    const x = Number(await page.getAttribute(`${loss} .legend`, 'data-x'));
    assert.ok(x > 100 && x < 400, `hover at step ${x}`);
    const row = (g, c) => page.textContent(`${loss} .legend-row[data-group="${g}"] .legend-${c}`);
    assert.deepEqual([await row('a', 'val'), await row('a', 'band')], ['2', '[1, 3]']);
    assert.deepEqual([await row('b', 'val'), await row('b', 'band')], ['15', '[10, 20]']);
    await page.mouse.move(0, 0);
    w.check();
  });

  it('chooses standard deviation or error for the band, and shows the runs beneath', async (t) => {
    if (!page) return t.skip('no browser');
    await page.selectOption('#group-band', 'std');
    assert.match(page.url(), /band=std/);
    let [a] = await groupsOf();
    assert.ok(every(a.lo, (v) => Math.abs(v - (2 - Math.SQRT2)) < 1e-12) && every(a.hi, (v) => Math.abs(v - (2 + Math.SQRT2)) < 1e-12), 'std band');
    await page.selectOption('#group-band', 'stderr');
    [a] = await groupsOf();
    assert.ok(every(a.lo, (v) => Math.abs(v - 1) < 1e-12) && every(a.hi, (v) => Math.abs(v - 3) < 1e-12), 'stderr band');
    await page.selectOption('#group-band', 'minmax');
    assert.doesNotMatch(page.url(), /band=/);
    await page.check('#group-runs');
    assert.match(page.url(), /gruns=1/);
    // Four thin run lines first, then the two groups' three series each.
    const widths = await page.evaluate((sel) => document.querySelector(sel).__panel.plot.series.slice(1).map((s) => s.width), loss);
    assert.deepEqual(widths, [0.75, 0.75, 0.75, 0.75, 2, 0.5, 0.5, 2, 0.5, 0.5]);
    await shot(page, 'charts-grouped-runs');
    await page.uncheck('#group-runs');
    w.check();
  });

  it('smooths the mean line, not the band', async (t) => {
    if (!page) return t.skip('no browser');
    await page.locator('#smoothing').fill('0.9');
    const [, b] = await groupsOf();
    // Just after b2 ends the raw mean drops to 10; the smoothed line is still above.
    const i = b.xs.findIndex((x) => x > 499);
    assert.equal(b.mean[i], 10);
    assert.ok(b.ys[i] > 10.5 && b.ys[i] < 15, `smoothed ${b.ys[i]}`);
    assert.equal(b.hi[i], 10);
    await page.locator('#smoothing').fill('0');
    // On a time axis a group's x is its runs' mean (relative) time; rows
    // logged in one request share a time, and as for a run the last is kept.
    await page.selectOption('#x-axis', 'rel');
    const [a] = await groupsOf();
    assert.ok(a.xs.length > 0 && every(a.xs, (x, i) => i === 0 || x > a.xs[i - 1]), JSON.stringify(a.xs));
    assert.ok(every(a.mean, (m) => m === 2));
    await page.selectOption('#x-axis', 'step');
    w.check();
  });

  it('leaves a run hidden with the eye toggle out of its group', async (t) => {
    if (!page) return t.skip('no browser');
    await page.click('tbody.group[data-group="a"] .group-toggle');
    await page.waitForSelector(`tbody.group[data-group="a"] tr[data-run="${id.a2}"]`);
    await page.click(`tr[data-run="${id.a2}"] button.eye`);
    await ready('[data-groups="2"][data-runs="3"]');
    const [a, b] = await groupsOf();
    assert.equal(a.runs, 1);
    assert.ok(every(a.mean, (m) => m === 1) && every(a.hi, (v) => v === 1), 'group a without a2');
    assert.equal(b.runs, 2);
    assert.equal(await page.textContent(`${loss} .legend-row[data-group="a"] .legend-count`), '1 run');
    await page.click(`tr[data-run="${id.a2}"] button.eye`);
    await ready('[data-groups="2"][data-runs="4"]');
    assert.ok(every((await groupsOf())[0].mean, (m) => m === 2));
    w.check();
  });

  it('groups the selected runs by a config key', async (t) => {
    if (!page) return t.skip('no browser');
    // Config numbers are grouped under the server's text for them (Go's %g).
    await page.goto(`${lb.url}/w/${E}/${P}?group=config.lr&sel=${id.a2},${id.b2},${id.b1}`);
    await ready('[data-groups="2"][data-runs="3"]');
    assert.match(await page.textContent('#chart-info'), /3 selected runs/);
    // In the table's order: the larger group first.
    const [b, a] = await groupsOf();
    assert.deepEqual([b.name, b.runs, a.name, a.runs], ['1e+06', 2, '1e-05', 1]);
    assert.ok(every(a.mean, (m) => m === 3));
    assert.equal(await rowColor('1e+06'), rgb(b.color));
    w.check();
  });

  it('ungrouping draws one line per run again', async (t) => {
    if (!page) return t.skip('no browser');
    await page.goto(`${lb.url}/w/${E}/${P}?group=job_type`);
    await ready('[data-groups="2"]');
    await page.selectOption('#group-by', '');
    await page.waitForSelector(`${loss}[data-runs="4"]:not([data-groups]):not([data-loading])`);
    const names = await page.evaluate((sel) => document.querySelector(sel).__panel.current.map((s) => s.run.name).sort(), loss);
    assert.deepEqual(names, ['a1', 'a2', 'b1', 'b2']);
    assert.equal(await page.locator(`${loss} .legend-row[data-run]`).count(), 4);
    assert.ok(await page.locator('#group-band').isHidden());
    w.check();
  });

  it('follows a run that joins a group and logs, live', async (t) => {
    if (!page) return t.skip('no browser');
    await page.goto(`${lb.url}/w/${E}/${P}?group=job_type`);
    await ready('[data-groups="2"][data-runs="4"]');
    const a3 = (await alice.startRun(E, P, { name: 'a3', job_type: 'a' })).run_id;
    await alice.log(E, P, a3, rowsOf(STEPS, { loss: () => 5 }));
    // Group a: (1 + 3 + 5) / 3 at every step.
    await page.waitForFunction((sel) => {
      const a = document.querySelector(sel)?.__panel?.current?.[0];
      return a?.runs === 3 && a.raw.length > 100 && a.raw.every((m) => m === 3);
    }, loss, { timeout: 10000 });
    // Steps past the others' end: a3's value alone.
    await alice.log(E, P, a3, rowsOf(10, { loss: () => 5 }, STEPS));
    await page.waitForFunction(([sel, last]) => {
      const a = document.querySelector(sel).__panel.current[0];
      return a.xs[a.xs.length - 1] === last && a.raw[a.raw.length - 1] === 5 && a.hi[a.hi.length - 1] === 5;
    }, [loss, STEPS + 9], { timeout: 10000 });
    w.check();
  });
});
