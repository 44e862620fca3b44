// The grouped charts' aggregate (mean and band across runs), without a
// browser.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { aggregate, bandOf } from '../app/group.js';

// buckets cuts steps [lo, hi] of f the way the server does (n buckets of
// width ceil((hi-lo+1)/n)), one point per step.
function buckets(lo, hi, n, f) {
  const width = Math.floor((hi - lo + n) / n);
  const out = [];
  for (let s = lo; s <= hi; s++) {
    const start = lo + Math.floor((s - lo) / width) * width;
    let b = out[out.length - 1];
    if (!b || b.start !== start) out.push((b = { start, end: Math.min(start + width - 1, hi), count: 0, min: Infinity, max: -Infinity }));
    const v = f(s);
    b.count++; b.step = s; b.time = 1000 + s; b.last = v;
    b.min = Math.min(b.min, v); b.max = Math.max(b.max, v);
  }
  return out;
}

it('two runs of 1 and 3 give mean 2, min/max [1, 3], std and stderr around it', () => {
  const agg = aggregate([{ buckets: buckets(0, 999, 300, () => 1), t0: 1000 }, { buckets: buckets(0, 999, 300, () => 3), t0: 1000 }], 300, 'step');
  assert.equal(agg.length, 250); // width 4: the runs' buckets, one to one
  for (const a of agg) {
    assert.equal(a.n, 2);
    assert.equal(a.mean, 2);
    assert.deepEqual(bandOf(a, 'minmax'), [1, 3]);
    assert.deepEqual(bandOf(a, 'std'), [2 - Math.SQRT2, 2 + Math.SQRT2]);
    assert.ok(Math.abs(bandOf(a, 'stderr')[1] - 3) < 1e-12);
  }
  assert.deepEqual(agg.slice(0, 2).map((a) => a.x), [3, 7]);
});

it('runs of different lengths align on one grid of steps', () => {
  // The short run's server buckets are narrower (width 2, not 4).
  const long = buckets(0, 999, 300, () => 10), short = buckets(0, 499, 300, () => 20);
  const agg = aggregate([{ buckets: long, t0: 0 }, { buckets: short, t0: 0 }], 300, 'step');
  const xs = agg.map((a) => a.x);
  assert.deepEqual(xs, [...xs].sort((a, b) => a - b));
  for (const a of agg) {
    if (a.x <= 499) assert.deepEqual([a.n, a.mean], [2, 15], `step ${a.x}`);
    else assert.deepEqual([a.n, a.mean], [1, 10], `step ${a.x}`);
  }
});

it('leaves non-finite values out and averages relative time', () => {
  const a = [{ start: 0, end: 0, step: 0, time: 105, last: 'NaN' }, { start: 1, end: 1, step: 1, time: 106, last: 4 }];
  const b = [{ start: 0, end: 0, step: 0, time: 210, last: 2 }, { start: 1, end: 1, step: 1, time: 212, last: 'Infinity' }];
  const agg = aggregate([{ buckets: a, t0: 100 }, { buckets: b, t0: 200 }], 10, 'rel');
  assert.deepEqual(agg.map((x) => [x.x, x.n, x.mean]), [[10, 1, 2], [6, 1, 4]]);
  const one = aggregate([{ buckets: b, t0: 200 }], 10, 'step')[0];
  assert.deepEqual(one, { x: 0, n: 1, mean: 2, min: 2, max: 2, std: 0, stderr: 0 });
});
