// Time of the grouped charts' aggregate (not a test): node web/e2e/group-bench.mjs
// 100 runs of 2,000 buckets each, one group, as a panel redraws it.
import { aggregate } from '../app/group.js';
const runs = [];
for (let r = 0; r < 100; r++) {
  const b = [];
  for (let i = 0; i < 2000; i++) b.push({ start: i * 5, end: i * 5 + 4, step: i * 5 + 4, time: 1e9 + i, last: Math.random(), min: 0, max: 1, count: 5 });
  runs.push({ buckets: b, t0: 1e9 });
}
for (let k = 0; k < 3; k++) aggregate(runs, 2000, 'step');
const ts = [];
for (let k = 0; k < 10; k++) { const t0 = performance.now(); aggregate(runs, 2000, 'step'); ts.push(performance.now() - t0); }
ts.sort((a, b) => a - b);
console.log('aggregate 100 runs x 2000 buckets: median ms', ts[5].toFixed(1), 'min', ts[0].toFixed(1));
