// Browser benchmark of the workspace (not a test: it reports figures).
//
//   cd web/e2e && npm ci && node bench.mjs      (LOGBOOK_BIN=... skips the build)
//
// Against a real logbook seeded through the HTTP API, in headless chromium:
// 1. a 1,000-run table page: the API's own response time (fetched from
//    node, and as the browser saw it), then first paint of the table after
//    the response arrived;
// 2. 30 runs x 5,000 steps x 3 metrics overlaid: the 90 downsample
//    requests (from node, and as the browser saw them), then drawing after
//    the last response;
// 3. live-update latency: a log request until the chart shows the rows.
// Each figure is the median of several page loads.

import { startLogbook, launch, rowsOf, signIn, sleep } from './harness.mjs';

const REPEAT = Number(process.env.BENCH_REPEAT || 5);
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const ms = (x) => `${x.toFixed(0)} ms`;

const lb = await startLogbook();
let ctx;
try {
  const alice = await lb.admin.user('alice');
  await alice.project('alice', 'sweep');
  await alice.project('alice', 'overlay');
  // Five writers, so that the per-key write rate limit does not pace the seeding.
  const writers = [alice];
  for (let i = 0; i < 4; i++) {
    const u = await lb.admin.user(`w${i}`);
    await alice.invite('alice', 'sweep', `w${i}`, 'member');
    writers.push(u);
  }
  let t0 = Date.now();
  const sweep = [];
  await Promise.all(writers.map(async (c, wi) => {
    for (let i = wi; i < 1000; i += writers.length) {
      const r = await c.startRun('alice', 'sweep', {
        name: `sweep-${i}`, job_type: i % 4 ? 'train' : 'eval', tags: [`t${i % 7}`], group: `g${i % 10}`,
        config: { lr: 10 ** -(1 + (i % 5)), batch_size: 2 ** (4 + (i % 4)), optimizer: { name: i % 2 ? 'adam' : 'sgd', momentum: 0.9 }, dropout: (i % 10) / 20, seed: i },
      });
      await c.log('alice', 'sweep', r.run_id, [{ step: 0, values: { loss: 1 / (i + 1), acc: i / 1000, 'val/loss': 2 / (i + 1) } }]);
      sweep.push(r.run_id);
    }
  }));
  await alice.waitRows('alice', 'sweep', sweep[sweep.length - 1], 1);
  console.log(`seeded 1,000 runs in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  t0 = Date.now();
  const overlay = [];
  for (let i = 0; i < 30; i++) {
    const r = await alice.startRun('alice', 'overlay', { name: `curve-${i}` });
    overlay.push(r.run_id);
    await alice.log('alice', 'overlay', r.run_id, rowsOf(5000, {
      loss: (s) => 2 / (1 + s / 300) + 0.2 * Math.sin(s / 7 + i), acc: (s) => 1 - 1 / (1 + s / 500), lr: (s) => 0.01 * 0.9995 ** s,
    }));
  }
  for (const id of overlay) await alice.waitRows('alice', 'overlay', id, 5000);
  console.log(`seeded 30 runs x 5,000 steps x 3 metrics in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  ctx = await launch({});
  if (!ctx) throw new Error('no browser');
  const page = await ctx.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.log('console error:', m.text()); });
  await page.setViewportSize({ width: 1400, height: 2400 });
  await signIn(page, lb.url, alice.key);

  // 1. The 1,000-run table.
  const tableUrl = `${lb.url}/w/alice/sweep?limit=1000&cols=state,owner,job_type,group,tags,created_at,duration,config.lr,config.batch_size,config.optimizer.name,summary.loss,summary.acc`;
  const tb = { api: [], paint: [], total: [] };
  let apiUrl = '';
  for (let i = 0; i < REPEAT; i++) {
    await page.goto(tableUrl);
    await page.waitForFunction(() => performance.getEntriesByName('lb:table-painted').length > 0, null, { timeout: 60000 });
    const m = await page.evaluate(() => {
      const r = performance.getEntriesByType('resource').filter((e) => e.name.includes('/runs?') && e.name.includes('limit=1000'))[0];
      const painted = performance.getEntriesByName('lb:table-painted')[0].startTime;
      return { url: r.name, api: r.responseEnd - r.requestStart, paint: painted - r.responseEnd, total: painted - r.startTime, rows: Number(document.querySelector("table.runs").dataset.total), dom: document.querySelectorAll("table.runs tbody tr").length };
    });
    if (m.rows !== 1000) throw new Error(`table has ${m.rows} rows`);
    tb.api.push(m.api); tb.paint.push(m.paint); tb.total.push(m.total);
    apiUrl = m.url;
  }
  // Rows are built as the table box scrolls: all 1,000 after scrolling down.
  const dom0 = await page.$$eval('table.runs tbody tr', (t) => t.length);
  for (let i = 0; i < 20; i++) {
    await page.$eval('#runs', (b) => { b.scrollTop = b.scrollHeight; });
    await page.waitForTimeout(50);
  }
  const dom1 = await page.$$eval('table.runs tbody tr', (t) => t.length);
  if (dom0 !== 100 || dom1 !== 1000) throw new Error(`rows built: ${dom0} at first paint, ${dom1} after scrolling`);
  // The same request from node: the API's own response time and size.
  const nodeApi = [];
  let bytes = 0;
  for (let i = 0; i < REPEAT; i++) {
    const s = performance.now();
    const res = await fetch(apiUrl, { headers: { Authorization: 'Bearer ' + alice.key } });
    bytes = (await res.arrayBuffer()).byteLength;
    nodeApi.push(performance.now() - s);
  }
  const full = await (await fetch(lb.url + '/api/v1/projects/alice/sweep/runs?limit=1000', { headers: { Authorization: 'Bearer ' + alice.key } })).arrayBuffer();

  // 2. 30 runs x 5,000 steps x 3 metrics.
  const chartUrl = `${lb.url}/w/alice/overlay?sel=${overlay.join(',')}`;
  const ch = { api: [], draw: [], total: [], cpu: [], buckets: 0 };
  for (let i = 0; i < REPEAT; i++) {
    await page.goto(chartUrl);
    await page.waitForFunction(() => document.querySelectorAll('.panel[data-runs="30"]:not([data-loading])').length === 3, null, { timeout: 120000 });
    await page.waitForFunction(() => performance.getEntriesByName('lb:charts-drawn').length > 0);
    const m = await page.evaluate(() => {
      const rs = performance.getEntriesByType('resource').filter((e) => e.name.includes('/sampled?'));
      const first = Math.min(...rs.map((r) => r.startTime)), last = Math.max(...rs.map((r) => r.responseEnd));
      const drawn = performance.getEntriesByName('lb:charts-drawn')[0].startTime;
      const cpu = performance.getEntriesByName('lb:panel-draw').reduce((a, e) => a + e.duration, 0);
      return { n: rs.length, api: last - first, draw: drawn - last, total: drawn - first, cpu, buckets: new URL(rs[0].name).searchParams.get('buckets') };
    });
    if (m.n !== 90) throw new Error(`${m.n} downsample requests, want 90`);
    ch.api.push(m.api); ch.draw.push(m.draw); ch.cpu.push(m.cpu); ch.total.push(m.total); ch.buckets = m.buckets;
  }
  // The same 90 requests from node, 6 at a time (as the browser does).
  const nodeCh = [];
  for (let i = 0; i < REPEAT; i++) {
    const jobs = [];
    for (const id of overlay) for (const m of ['loss', 'acc', 'lr']) jobs.push(`/api/v1/projects/alice/overlay/runs/${id}/sampled?metric=${m}&buckets=${ch.buckets}`);
    const s = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: 6 }, async () => {
      while (next < jobs.length) {
        const j = jobs[next++];
        await (await fetch(lb.url + j, { headers: { Authorization: 'Bearer ' + alice.key } })).arrayBuffer();
      }
    }));
    nodeCh.push(performance.now() - s);
  }

  // 3. Live-update latency of a logging run.
  const live = await alice.startRun('alice', 'overlay', { name: 'live' });
  await alice.log('alice', 'overlay', live.run_id, rowsOf(10, { loss: (s) => 1 / (s + 1) }));
  await alice.waitRows('alice', 'overlay', live.run_id, 10);
  await page.goto(`${lb.url}/w/alice/overlay?sel=${live.run_id}`);
  await page.waitForSelector('.panel[data-metric=loss][data-points="10"]');
  const lat = [];
  for (let k = 1; k <= 10; k++) {
    const s = Date.now();
    await alice.log('alice', 'overlay', live.run_id, rowsOf(10, { loss: (x) => 1 / (x + 1) }, 10 * k));
    await page.waitForSelector(`.panel[data-metric=loss][data-points="${10 * (k + 1)}"]`, { timeout: 10000 });
    lat.push(Date.now() - s);
    await sleep(Math.random() * 1000);
  }

  const load = (await import('node:os')).loadavg()[0].toFixed(1);
  console.log(`
Load average during the run: ${load} (${(await import('node:os')).cpus().length} cores)

| Figure (median of ${REPEAT}) | Measured | API's own response, same run | Target |
|---|---|---|---|
| 1,000-run table: first paint after the response | ${ms(median(tb.paint))} (request to paint ${ms(median(tb.total))}) | ${ms(median(tb.api))} in the browser, ${ms(median(nodeApi))} from node; ${(bytes / 1024).toFixed(0)} KB with the table's 12 columns (all fields: ${(full.byteLength / 1024).toFixed(0)} KB) | <= 300 ms |
| 30 runs x 5,000 steps x 3 metrics: drawn after the last response | ${ms(median(ch.draw))} (the three panels' draw calls: ${ms(median(ch.cpu))}; first request to drawn ${ms(median(ch.total))}) | 90 downsamples of ${ch.buckets} buckets: ${ms(median(ch.api))} in the browser, ${ms(median(nodeCh))} from node (6 at a time) | <= 500 ms |
| Live update: log request to the chart showing the rows | p50 ${ms(median(lat))}, max ${ms(Math.max(...lat))} (10 samples) | one Server-Sent Events stream per page | <= 2 s |
`);
} finally {
  await ctx?.close();
  await lb.stop();
}
