// Grouped charts: one line per group of runs, the mean across the group's
// runs, with a band (min/max across runs, or mean +- standard deviation or
// standard error, as W&B offers).
//
// The aggregate is computed here, in the browser, from the per-run
// downsampled buckets the panel already fetched (GET .../sampled): the
// server adds no endpoint, and hiding a run, choosing the band or toggling
// the runs redraws without a request. The server sizes each run's buckets
// to that run's own step range, so runs of different lengths have
// different bucket edges; they are aligned here on one grid of steps over
// the union of the runs' ranges, cut the way the server cuts (n buckets of
// width ceil((hi-lo+1)/n)), so runs with the same range keep their buckets
// one to one. A run contributes to a grid bucket the value of its last
// point in it (a server bucket falls in the grid bucket of its last step).
// Non-finite values (NaN, +-Infinity) are left out of the aggregate.

import { num } from './util.js';

export const BANDS = { minmax: 'Min/max', std: 'Std dev', stderr: 'Std err' };

// gridOf returns the step grid over the union of the runs' buckets: lo and
// the bucket width, or null when no run has a bucket.
export function gridOf(runsBuckets, n) {
  let lo = Infinity, hi = -Infinity;
  for (const b of runsBuckets) {
    if (!b.length) continue;
    lo = Math.min(lo, b[0].start);
    hi = Math.max(hi, b[b.length - 1].end);
  }
  if (!(hi >= lo)) return null;
  n = Math.max(1, n);
  return { lo, width: Math.floor((hi - lo + n) / n) };
}

// bandOf is the band around a bucket's mean for the chosen kind.
export function bandOf(s, kind) {
  if (kind === 'std') return [s.mean - s.std, s.mean + s.std];
  if (kind === 'stderr') return [s.mean - s.stderr, s.mean + s.stderr];
  return [s.min, s.max];
}

// aggregate folds a group's runs ([{buckets, t0}], t0 the run's start in
// Unix seconds) into one series: for each grid bucket where some run has a
// finite value, x (step: the last step among the runs' points; time: the
// mean wall time; rel: the mean time since each run's start) and the stats
// of the runs' values (n, mean, min, max, std: the sample standard
// deviation, 0 for one run, stderr: std / sqrt(n)). One pass over the buckets into per-grid-bucket
// accumulators (Welford's mean and squared deviations): 100 runs of 2,000
// buckets, redrawn at every move of the smoothing slider.
export function aggregate(runs, n, xaxis) {
  const grid = gridOf(runs.map((r) => r.buckets), n);
  if (!grid) return [];
  const acc = accumulators(runs, grid);
  const add = (bin, k, t0) => {
    const v = num(k.last);
    if (!Number.isFinite(v)) return;
    const c = ++acc.n[bin];
    const d = v - acc.mean[bin];
    acc.mean[bin] += d / c;
    acc.m2[bin] += d * (v - acc.mean[bin]);
    if (c === 1 || v < acc.min[bin]) acc.min[bin] = v;
    if (c === 1 || v > acc.max[bin]) acc.max[bin] = v;
    if (c === 1 || k.step > acc.step[bin]) acc.step[bin] = k.step;
    acc.t[bin] += xaxis === 'rel' ? k.time - t0 : k.time;
  };
  for (const { buckets: b, t0 } of runs) {
    // A run's buckets are in step order: its last one in a grid bucket is
    // the one before the grid bucket changes.
    for (let i = 0; i < b.length; i++) {
      const bin = Math.floor((b[i].step - grid.lo) / grid.width);
      if (i + 1 < b.length && Math.floor((b[i + 1].step - grid.lo) / grid.width) === bin) continue;
      add(bin, b[i], t0);
    }
  }
  const out = [];
  for (let bin = 0; bin < acc.n.length; bin++) {
    const c = acc.n[bin];
    if (!c) continue;
    const std = c > 1 ? Math.sqrt(acc.m2[bin] / (c - 1)) : 0;
    out.push({ x: xaxis === 'step' ? acc.step[bin] : acc.t[bin] / c, n: c, mean: acc.mean[bin], min: acc.min[bin], max: acc.max[bin], std, stderr: std / Math.sqrt(c) });
  }
  return out;
}

function accumulators(runs, grid) {
  let last = 0;
  for (const { buckets: b } of runs) if (b.length) last = Math.max(last, Math.floor((b[b.length - 1].step - grid.lo) / grid.width));
  const size = last + 1;
  return { n: new Uint32Array(size), mean: new Float64Array(size), m2: new Float64Array(size), min: new Float64Array(size),
    max: new Float64Array(size), step: new Float64Array(size), t: new Float64Array(size) };
}
