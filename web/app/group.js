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

// binned maps grid bucket -> the run's last bucket in it, in step order.
function binned(b, grid) {
  const out = new Map();
  for (const k of b) out.set(Math.floor((k.step - grid.lo) / grid.width), k);
  return out;
}

// stats of the finite values: mean, min, max, sample standard deviation
// (0 for one value) and standard error.
export function stats(vals) {
  const n = vals.length;
  let sum = 0, min = Infinity, max = -Infinity;
  for (const v of vals) { sum += v; if (v < min) min = v; if (v > max) max = v; }
  const mean = sum / n;
  let ss = 0;
  for (const v of vals) ss += (v - mean) * (v - mean);
  const std = n > 1 ? Math.sqrt(ss / (n - 1)) : 0;
  return { n, mean, min, max, std, stderr: std / Math.sqrt(n) };
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
// mean wall time; rel: the mean time since each run's start) and stats().
export function aggregate(runs, n, xaxis) {
  const grid = gridOf(runs.map((r) => r.buckets), n);
  if (!grid) return [];
  const per = runs.map((r) => ({ t0: r.t0, bins: binned(r.buckets, grid) }));
  const keys = [...new Set(per.flatMap((p) => [...p.bins.keys()]))].sort((a, b) => a - b);
  const out = [];
  for (const key of keys) {
    const vals = [];
    let step = -Infinity, tsum = 0;
    for (const p of per) {
      const k = p.bins.get(key);
      if (!k) continue;
      const v = num(k.last);
      if (!Number.isFinite(v)) continue;
      vals.push(v);
      step = Math.max(step, k.step);
      tsum += xaxis === 'rel' ? k.time - p.t0 : k.time;
    }
    if (!vals.length) continue;
    out.push({ x: xaxis === 'step' ? step : tsum / vals.length, ...stats(vals) });
  }
  return out;
}
