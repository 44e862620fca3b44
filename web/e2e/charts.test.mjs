// Charts: 30 runs overlaid with legend and hover, default first 10,
// smoothing, log scale, x-axis choice, min/max bands, NaN/Infinity markers,
// drag-zoom asking the server again, live updates within 2 s.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startLogbook, launch, watch, shot, signIn, rowsOf } from './harness.mjs';

const E = 'alice', P = 'curves', STEPS = 2000;

describe('charts', () => {
  let lb, ctx, page, w, alice, diverged;
  const ids = [];
  before(async (t) => {
    lb = await startLogbook();
    alice = await lb.admin.user('alice');
    await alice.project(E, P);
    for (let i = 0; i < 30; i++) {
      const r = await alice.startRun(E, P, { name: `run-${String(i).padStart(2, '0')}`, config: { seed: i } });
      ids.push(r.run_id);
      // Noisy curves (so smoothing shows), one diverging to NaN at the end
      // with an Infinity on the way.
      await alice.log(E, P, r.run_id, rowsOf(STEPS, {
        loss: (s) => (i === 0 && s >= 1900 ? 'NaN' : i === 0 && s === 1500 ? 'Infinity' : 2 / (1 + s / 100) + 0.3 * Math.sin(s * 1.7 + i) + 0.4 + i / 100),
        'train/acc': (s) => Math.min(1, s / STEPS + 0.1 * Math.cos(s + i)),
        'train/lr': (s) => 0.001 * Math.pow(0.999, s),
      }));
      await alice.finish(E, P, r.run_id);
    }
    diverged = ids[0];
    for (const id of ids) await alice.waitRows(E, P, id, STEPS);
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

  const panel = (m) => `.panel[data-metric="${m}"]`;
  const legendVals = (m) => page.$$eval(`${panel(m)} .legend-row`, (rs) => Object.fromEntries(rs.map((r) => [r.querySelector('.legend-name').textContent, r.querySelector('.legend-val').textContent])));

  it('charts the first 10 runs by default, 30 when selected, with legend and hover', async (t) => {
    if (!page) return t.skip('no browser');
    await page.goto(`${lb.url}/w/${E}/${P}?sort=name`);
    for (const m of ['loss', 'train/acc', 'train/lr']) await page.waitForSelector(`${panel(m)}[data-runs="10"]:not([data-loading])`);
    assert.match(await page.textContent('#chart-info'), /first 10 visible runs/);
    await page.check('#select-page');
    for (const m of ['loss', 'train/acc', 'train/lr']) await page.waitForSelector(`${panel(m)}[data-runs="30"]:not([data-loading])`);
    assert.equal((new URL(page.url())).searchParams.get('sel').split(',').length, 30);
    assert.equal(await page.locator(`${panel('loss')} .legend-row`).count(), 30);
    // Sections by prefix: "train" holds two panels.
    assert.equal(await page.locator('details.section[data-section="train"] .panel').count(), 2);
    // Hover: every run's value at the pointer's step.
    await page.locator(`${panel('train/acc')} .u-over`).scrollIntoViewIfNeeded();
    const box = await page.locator(`${panel('train/acc')} .u-over`).boundingBox();
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height / 2);
    await page.waitForFunction((sel) => document.querySelector(sel + ' .legend').dataset.x !== '', panel('train/acc'));
    const x = Number(await page.getAttribute(`${panel('train/acc')} .legend`, 'data-x'));
    assert.ok(x > STEPS * 0.4 && x < STEPS * 0.6, `hover at step ${x}`);
    assert.match(await page.textContent(`${panel('train/acc')} .legend-x`), /^step /);
    const vals = await legendVals('train/acc');
    assert.equal(Object.keys(vals).length, 30);
    assert.ok(Object.values(vals).every((v) => v !== '' && Number.isFinite(Number(v))), JSON.stringify(vals));
    // The min/max band: a downsampled series has buckets of several points.
    const banded = await page.evaluate((sel) => document.querySelector(sel).__panel.current.some((s) => s.counts.some((c) => c > 1)), panel('loss'));
    assert.ok(banded, 'the loss panel draws min/max bands');
    await shot(page, 'charts-30-runs');
    await page.mouse.move(0, 0);
    w.check();
  });

  it('marks NaN and Infinity of a diverged run', async (t) => {
    if (!page) return t.skip('no browser');
    const markers = Number(await page.getAttribute(panel('loss'), 'data-markers'));
    assert.ok(markers > 0, 'no NaN/Infinity markers on the loss panel');
    assert.match(await page.textContent(`${panel('loss')} .badge`), /NaN\/∞ in 1 run/);
    const kinds = await page.evaluate((sel) => [...new Set(document.querySelector(sel).__panel.markers.map((m) => `${m.run.name}:${m.kind}`))], panel('loss'));
    assert.deepEqual(kinds.sort(), ['run-00:+inf', 'run-00:nan']);
    assert.equal(await page.getAttribute(panel('train/acc'), 'data-markers'), '0');
    w.check();
  });

  it('smooths with time-weighted EMA and EMA, in the URL', async (t) => {
    if (!page) return t.skip('no browser');
    await page.locator(`${panel('loss')} .u-over`).scrollIntoViewIfNeeded();
    const box = await page.locator(`${panel('loss')} .u-over`).boundingBox();
    const hover = async () => {
      await page.mouse.move(box.x + box.width * 0.3, box.y + 10);
      await page.waitForFunction((sel) => document.querySelector(sel + ' .legend').dataset.x !== '', panel('loss'));
      return legendVals('loss');
    };
    const raw = await hover();
    await page.locator('#smoothing').fill('0.9');
    assert.match(page.url(), /smooth=0\.9/);
    const tw = await hover();
    assert.notDeepEqual(tw, raw, 'smoothing did not change the values');
    // Smoothed noise stays closer to the trend: the spread across runs of
    // the same curve shape shrinks.
    const spread = (v) => { const xs = Object.values(v).map(Number).filter(Number.isFinite); return Math.max(...xs) - Math.min(...xs); };
    assert.ok(spread(tw) < spread(raw), `spread ${spread(tw)} not below ${spread(raw)}`);
    await page.selectOption('#smoothing-mode', 'ema');
    assert.match(page.url(), /smode=ema/);
    const ema = await hover();
    assert.notDeepEqual(ema, tw);
    await shot(page, 'charts-smoothed');
    await page.locator('#smoothing').fill('0');
    await page.selectOption('#smoothing-mode', 'twema');
    await page.mouse.move(0, 0);
    w.check();
  });

  it('log scale and x-axis choice', async (t) => {
    if (!page) return t.skip('no browser');
    await page.check('#log-scale');
    assert.match(page.url(), /log=1/);
    assert.equal(await page.evaluate((sel) => document.querySelector(sel).__panel.plot.scales.y.distr, panel('train/lr')), 3);
    await shot(page, 'charts-log');
    await page.uncheck('#log-scale');
    await page.selectOption('#x-axis', 'rel');
    assert.match(page.url(), /x=rel/);
    await page.locator(`${panel('loss')} .u-over`).scrollIntoViewIfNeeded();
    const box = await page.locator(`${panel('loss')} .u-over`).boundingBox();
    await page.mouse.move(box.x + box.width * 0.9, box.y + 10);
    await page.waitForFunction((sel) => document.querySelector(sel + ' .legend').dataset.x !== '', panel('loss'));
    assert.match(await page.textContent(`${panel('loss')} .legend-x`), /^\d+s$|^\d+m \d+s$/);
    await page.selectOption('#x-axis', 'time');
    await page.mouse.move(box.x + box.width * 0.9, box.y + 12);
    await page.waitForFunction((sel) => /^\d{4}-\d\d-\d\d /.test(document.querySelector(sel + ' .legend-x')?.textContent || ''), panel('loss'));
    await page.selectOption('#x-axis', 'step');
    await page.mouse.move(0, 0);
    w.check();
  });

  it('drag-zoom asks the server for the range at full fidelity; double-click resets', async (t) => {
    if (!page) return t.skip('no browser');
    const asked = [];
    const onReq = (r) => { if (r.url().includes('/sampled?')) asked.push(new URL(r.url()).searchParams); };
    page.on('request', onReq);
    const over = page.locator(`${panel('train/acc')} .u-over`);
    await over.scrollIntoViewIfNeeded();
    const box = await over.boundingBox();
    await page.mouse.move(box.x + box.width * 0.40, box.y + 30);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.45, box.y + 30, { steps: 5 });
    await page.mouse.up();
    await page.waitForFunction(() => /zoom=/.test(location.search));
    for (const m of ['loss', 'train/acc', 'train/lr']) await page.waitForSelector(`${panel(m)}[data-range]:not([data-range=""]):not([data-loading])`);
    const [lo, hi] = (await page.getAttribute(panel('train/acc'), 'data-range')).split(',').map(Number);
    assert.ok(lo > STEPS * 0.35 && hi < STEPS * 0.5 && hi > lo, `range ${lo},${hi}`);
    const zoomed = asked.filter((p) => p.get('min_step') === String(lo) && p.get('max_step') === String(hi));
    assert.ok(zoomed.length >= 90, `${zoomed.length} range requests (30 runs x 3 metrics)`);
    // Fewer steps than buckets: every point comes back, one per bucket.
    const pts = await page.evaluate((sel) => document.querySelector(sel).__panel.current.map((s) => [s.xs.length, Math.max(...s.counts)]), panel('train/acc'));
    assert.ok(pts.every(([n, c]) => n === hi - lo + 1 && c === 1), JSON.stringify(pts.slice(0, 3)));
    assert.equal(await page.isVisible('#reset-zoom'), true);
    await shot(page, 'charts-zoomed');
    // The zoom is in the URL: a reload shows the same range.
    await page.goto(page.url());
    await page.waitForSelector(`${panel('train/acc')}[data-range="${lo},${hi}"]:not([data-loading])`);
    await page.dblclick(`${panel('train/acc')} .u-over`);
    await page.waitForSelector(`${panel('train/acc')}[data-range=""]:not([data-loading])`);
    assert.doesNotMatch(page.url(), /zoom=/);
    page.off('request', onReq);
    w.check();
  });

  it('updates the table and charts of a logging run within 2 s', async (t) => {
    if (!page) return t.skip('no browser');
    const reqs = [];
    const onReq = (q) => reqs.push(q.url());
    page.on('request', onReq);
    const r = await alice.startRun(E, P, { name: 'live-run' });
    await alice.log(E, P, r.run_id, rowsOf(10, { loss: (s) => 1 / (s + 1) }));
    await page.goto(`${lb.url}/w/${E}/${P}?sel=${r.run_id}`);
    await page.waitForSelector(`${panel('loss')}[data-points="10"]:not([data-loading])`);
    const lat = [];
    for (let k = 1; k <= 3; k++) {
      const t0 = Date.now();
      await alice.log(E, P, r.run_id, rowsOf(10, { loss: (s) => 1 / (s + 1) }, 10 * k));
      await page.waitForSelector(`${panel('loss')}[data-points="${10 * (k + 1)}"]`, { timeout: 5000 });
      lat.push(Date.now() - t0);
    }
    assert.ok(Math.max(...lat) <= 2000, `chart updates took ${lat.join(', ')} ms`);
    const t0 = Date.now();
    await alice.finish(E, P, r.run_id, { exit_code: 3 });
    await page.waitForSelector(`tr[data-run="${r.run_id}"] .state-failed`, { timeout: 5000 });
    const ms = Date.now() - t0;
    assert.ok(ms <= 2000, `the state change showed after ${ms} ms`);
    console.log(`# live update latency (log -> chart), ms: ${lat.join(', ')}; finish -> table: ${ms}`);
    // One event stream for the page, no polling of the runs search.
    page.off('request', onReq);
    const streams = reqs.filter((u) => u.includes('/events?') && !u.includes('once=1'));
    assert.equal(streams.length, 1, streams.join('\n'));
    assert.equal(reqs.filter((u) => u.includes('sort=-updated_at')).length, 0);
    w.check();
  });
});
