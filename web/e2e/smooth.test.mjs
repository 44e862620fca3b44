// The smoothing math of the charts, without a browser.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { smooth } from '../app/smooth.js';

const close = (a, b, eps = 1e-9) => Math.abs(a - b) <= eps;

it('weight 0 leaves the values, non-finite ones as gaps', () => {
  assert.deepEqual(smooth([0, 1, 2], [1, NaN, 3], 0), [1, null, 3]);
});

it('debiased EMA starts at the first value and follows TensorBoard', () => {
  const ys = [10, 0, 0];
  const out = smooth([0, 1, 2], ys, 0.5, 'ema');
  assert.equal(out[0], 10); // (0.5 * 10) / (1 - 0.5)
  assert.ok(close(out[1], (0.25 * 10) / 0.75)); // last = 2.5; / (1 - 0.25)
  assert.ok(close(out[2], (0.125 * 10) / 0.875));
});

it('time-weighted EMA starts at the first value, skips NaN, and weighs by distance along x', () => {
  const out = smooth([0, 1, 2, 3], [4, NaN, 4, 4], 0.9);
  assert.equal(out[0], 4);
  assert.equal(out[1], null);
  assert.ok(close(out[2], 4) && close(out[3], 4), 'a constant stays constant (debiased)');
  // Uneven spacing: a point far along x forgets more of the past than a near one.
  const near = smooth([0, 1, 1000], [0, 10, 10], 0.9)[1];
  const far = smooth([0, 999, 1000], [0, 10, 10], 0.9)[1];
  assert.ok(far > near, `far ${far} near ${near}`);
});

it('the same curve sampled at two densities smooths alike (time weighting)', () => {
  const f = (x) => Math.sin(x / 50);
  const xsA = Array.from({ length: 1001 }, (_, i) => i);
  const xsB = xsA.filter((x) => x % 2 === 0 || x === 1000);
  const a = smooth(xsA, xsA.map(f), 0.6);
  const b = smooth(xsB, xsB.map(f), 0.6);
  assert.ok(Math.abs(a[1000] - b[b.length - 1]) < 0.02, `${a[1000]} vs ${b[b.length - 1]}`);
  // Plain EMA, by contrast, depends on the density.
  const ea = smooth(xsA, xsA.map(f), 0.95, 'ema'), eb = smooth(xsB, xsB.map(f), 0.95, 'ema');
  assert.ok(Math.abs(ea[1000] - eb[eb.length - 1]) > 0.02, `${ea[1000]} vs ${eb[eb.length - 1]}`);
});
