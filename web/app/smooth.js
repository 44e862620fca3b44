// Smoothing of a chart line, as W&B offers it.
//
// twema: time-weighted EMA with debiasing (W&B's default): each point's
// weight decays with the distance along x, scaled to the series' x range,
// so unevenly spaced points (a downsampled or zoomed series) smooth the same
// way as evenly spaced ones. The running sum of weights debiases the start.
// ema: plain exponential moving average with TensorBoard's debiasing
// (divide by 1 - w^n).
//
// Non-finite and missing values are skipped: they keep their place (null in
// the output) and do not disturb the average.

export function smooth(xs, ys, weight, mode = 'twema') {
  const out = new Array(ys.length).fill(null);
  if (!(weight > 0)) {
    for (let i = 0; i < ys.length; i++) out[i] = Number.isFinite(ys[i]) ? ys[i] : null;
    return out;
  }
  weight = Math.min(weight, 0.999);
  if (mode === 'ema') {
    let last = 0, n = 0;
    for (let i = 0; i < ys.length; i++) {
      const y = ys[i];
      if (!Number.isFinite(y)) continue;
      last = last * weight + (1 - weight) * y;
      n++;
      out[i] = last / (1 - Math.pow(weight, n));
    }
    return out;
  }
  let first = -1, lastIdx = -1;
  for (let i = 0; i < ys.length; i++) if (Number.isFinite(ys[i])) { if (first < 0) first = i; lastIdx = i; }
  if (first < 0) return out;
  const range = xs[lastIdx] - xs[first] || 1;
  const VIEWPORT = 1000; // the x range counts as 1,000 evenly spaced points
  let acc = 0, wsum = 0, prevX = xs[first];
  for (let i = first; i <= lastIdx; i++) {
    const y = ys[i];
    if (!Number.isFinite(y)) continue;
    const w = Math.pow(weight, ((xs[i] - prevX) / range) * VIEWPORT);
    acc = acc * w + y;
    wsum = wsum * w + 1;
    out[i] = acc / wsum;
    prevX = xs[i];
  }
  return out;
}
