// Metric chart panels: every charted run overlaid on one uPlot chart per
// metric, from the server's downsampled buckets (GET .../sampled): the line
// is each bucket's last value, the band its min and max. Smoothing, log
// scale and the x-axis are drawn from the fetched buckets; a drag-zoom asks
// the server again for that step range, with as many buckets as the panel
// has pixels (so a narrow range comes back point by point). When the runs
// table is grouped, each group is one line, the mean across its runs, with
// a band (group.js computes it from the same per-run buckets).

import uPlot from '/ui/vendor/uPlot.esm.js';
import { api, enc, projectPath } from './api.js';
import { h, put, num, fmtNum, fmtDuration, fmtTime, pool } from './util.js';
import { smooth } from './smooth.js';
import { aggregate, bandOf } from './group.js';

const HEIGHT = 220;

// view: {xaxis: 'step'|'time'|'rel', smooth: 0..0.99, smode: 'twema'|'ema',
// log: bool, zoom: [lo, hi] | null, band: 'minmax'|'std'|'stderr',
// gruns: bool (a group's runs as thin lines beneath its mean)}
// groups: null, or [{key, name, color, ids}] to draw groups of the runs.
export class Panel {
  constructor({ entity, project, metric, runs, groups, view, onZoom }) {
    this.entity = entity;
    this.project = project;
    this.metric = metric;
    this.runs = runs; // [{id, name, color, created_at}]
    this.groups = groups || null;
    this.view = view;
    this.onZoom = onZoom;
    this.data = new Map(); // run id -> buckets
    this.plot = null;
    this.markers = [];
    this.badge = h('span', { class: 'badge warn', hidden: true });
    this.status = h('span', { class: 'muted small' });
    this.plotEl = h('div', { class: 'plot' });
    this.legend = h('div', { class: 'legend' });
    this.el = h('section', { class: 'panel', dataset: { metric } },
      h('header', {}, h('h4', { title: metric }, metric), this.badge, this.status),
      this.plotEl, this.legend);
  }

  buckets() {
    const w = this.plotEl.clientWidth || 400;
    return Math.max(50, Math.min(2000, Math.round(w - 60)));
  }

  // load fetches every run's buckets (or those of onlyRuns, the runs that
  // changed) for the current zoom (step axis only: time axes zoom on what
  // is loaded), then draws. A load replaces (aborts) the one in flight, so
  // it also fetches what that one was fetching and every run not loaded
  // yet: a live refresh of one run must not leave the others undrawn.
  async load(onlyRuns) {
    this.abort?.abort();
    const ac = new AbortController();
    this.abort = ac;
    const n = this.buckets();
    this.n = n;
    const zoom = this.view.xaxis === 'step' ? this.view.zoom : null;
    let qs = `metric=${enc(this.metric)}&buckets=${n}`;
    if (zoom) qs += `&min_step=${Math.max(0, Math.floor(zoom[0]))}&max_step=${Math.max(0, Math.ceil(zoom[1]))}`;
    this.el.dataset.range = zoom ? `${Math.max(0, Math.floor(zoom[0]))},${Math.ceil(zoom[1])}` : '';
    this.el.dataset.loading = '1';
    this.status.textContent = 'loading…';
    const runs = onlyRuns ? this.runs.filter((r) => onlyRuns.has(r.id) || !this.data.has(r.id) || this.pending?.has(r.id)) : this.runs;
    this.pending = new Set(runs.map((r) => r.id));
    try {
      await pool(runs.map((r) => async () => {
        const b = await api(`${projectPath(this.entity, this.project)}/runs/${enc(r.id)}/sampled?${qs}`, { signal: ac.signal });
        this.data.set(r.id, b);
      }), 6);
    } catch (e) {
      if (e.name === 'AbortError') return;
      this.pending = null;
      this.status.textContent = '';
      put(this.plotEl, h('p', { class: 'error' }, e.message));
      delete this.el.dataset.loading;
      throw e;
    }
    if (this.abort !== ac) return;
    this.pending = null;
    this.status.textContent = '';
    const t0 = performance.now();
    this.draw();
    performance.measure('lb:panel-draw', { start: t0, end: performance.now(), detail: this.metric });
    delete this.el.dataset.loading;
  }

  // series builds each run's arrays in the current view's x units.
  series() {
    const { xaxis, log } = this.view;
    const out = [];
    for (const r of this.runs) {
      const b = this.data.get(r.id);
      if (!b) continue;
      const t0 = Date.parse(r.created_at) / 1000;
      const xs = [], ys = [], lo = [], hi = [], counts = [], marks = [];
      let prevX = -Infinity;
      for (const k of b) {
        let x = xaxis === 'step' ? k.step : xaxis === 'time' ? k.time : k.time - t0;
        if (!(x > prevX)) { // equal wall times (one batch): keep the last
          if (xs.length && x === prevX) { xs.pop(); ys.pop(); lo.pop(); hi.pop(); counts.pop(); } else continue;
        }
        prevX = x;
        const last = num(k.last), mn = num(k.min), mx = num(k.max);
        if (!Number.isFinite(last)) marks.push({ x, kind: Number.isNaN(last) ? 'nan' : last > 0 ? '+inf' : '-inf', run: r });
        if (mx === Infinity && last !== Infinity) marks.push({ x, kind: '+inf', run: r });
        if (mn === -Infinity && last !== -Infinity) marks.push({ x, kind: '-inf', run: r });
        const ok = (v) => Number.isFinite(v) && (!log || v > 0);
        xs.push(x);
        ys.push(Number.isFinite(last) ? last : NaN);
        lo.push(ok(mn) ? mn : null);
        hi.push(ok(mx) ? mx : null);
        counts.push(k.count);
      }
      let sm = smooth(xs, ys, this.view.smooth, this.view.smode);
      if (log) sm = sm.map((v) => (v != null && v > 0 ? v : null));
      out.push({ run: r, key: r.id, label: r.name, color: r.color, xs, raw: ys, ys: sm, lo, hi, counts, marks, start: b.length ? (xaxis === 'step' ? b[0].start : xs[0]) : null, end: b.length ? (xaxis === 'step' ? b[b.length - 1].end : xs[xs.length - 1]) : null });
    }
    return out;
  }

  // groupSeries folds the runs' buckets into one mean series per group
  // (runs hidden in the table are not among this.runs); the mean is
  // smoothed, the band is not.
  groupSeries() {
    const { xaxis, log, band } = this.view;
    const ok = (v) => (Number.isFinite(v) && (!log || v > 0) ? v : null);
    const byId = new Map(this.runs.map((r) => [r.id, r]));
    const out = [];
    for (const g of this.groups) {
      const members = g.ids.filter((id) => byId.has(id) && this.data.get(id)?.length);
      const agg = aggregate(members.map((id) => ({ buckets: this.data.get(id), t0: Date.parse(byId.get(id).created_at) / 1000 })), this.n || this.buckets(), xaxis);
      const xs = [], raw = [], lo = [], hi = [], counts = [];
      for (const a of agg) {
        if (xs.length && !(a.x > xs[xs.length - 1])) { // time axes: equal times keep the last, as a run's do
          if (a.x !== xs[xs.length - 1]) continue;
          xs.pop(); raw.pop(); lo.pop(); hi.pop(); counts.pop();
        }
        const [l, u] = bandOf(a, band);
        xs.push(a.x); raw.push(a.mean); lo.push(ok(l)); hi.push(ok(u)); counts.push(a.n);
      }
      let ys = smooth(xs, raw, this.view.smooth, this.view.smode);
      if (log) ys = ys.map((v) => (v != null && v > 0 ? v : null));
      out.push({ group: g, key: g.key, label: g.name, color: g.color, runs: members.length, ids: members, xs, raw, ys, lo, hi, counts, marks: [] });
    }
    return out;
  }

  // plotData lays the series out for uPlot: a run as line, min, max (the
  // band when buckets hold several points); in grouped mode the group's runs
  // first as thin lines (when asked), then each group as mean, band low,
  // band high.
  plotData(runSer, ser) {
    const tables = [];
    const series = [{}];
    const bands = [];
    const triple = (s, width, banded) => {
      const c = s.color, i = series.length;
      tables.push([s.xs, s.ys, s.lo, s.hi]);
      series.push({ label: s.label, stroke: c, width, points: { show: () => s.xs.length < 2 } });
      series.push({ label: 'min', stroke: banded ? c + '40' : 'transparent', width: banded ? 0.5 : 0, points: { show: false } });
      series.push({ label: 'max', stroke: banded ? c + '40' : 'transparent', width: banded ? 0.5 : 0, points: { show: false } });
      if (banded) bands.push({ series: [i + 2, i + 1], fill: c + '26' });
    };
    if (!this.groups) {
      const banded = ser.some((s) => s.counts.some((c) => c > 1));
      for (const s of ser) triple(s, 1.5, banded);
    } else {
      const byId = new Map(runSer.map((s) => [s.run.id, s]));
      if (this.view.gruns) {
        for (const g of ser) {
          for (const id of g.ids) {
            const s = byId.get(id);
            tables.push([s.xs, s.ys]);
            series.push({ label: s.label, stroke: g.color + '59', width: 0.75, points: { show: false } });
          }
        }
      }
      for (const g of ser) triple(g, 2, true);
    }
    return { data: tables.length ? uPlot.join(tables) : [[]], series, bands };
  }

  draw() {
    const runSer = this.series();
    const ser = this.groups ? this.groupSeries() : runSer;
    this.current = ser;
    this.markers = runSer.flatMap((s) => s.marks);
    const nonfinite = new Set(this.markers.map((m) => m.run.name));
    this.badge.hidden = nonfinite.size === 0;
    this.badge.textContent = nonfinite.size ? `NaN/∞ in ${nonfinite.size} run${nonfinite.size > 1 ? 's' : ''}` : '';
    this.badge.title = [...nonfinite].join(', ');
    this.el.dataset.runs = String(runSer.filter((s) => s.xs.length).length);
    if (this.groups) this.el.dataset.groups = String(ser.filter((s) => s.xs.length).length);
    else delete this.el.dataset.groups;
    this.el.dataset.points = String(runSer.reduce((a, s) => a + s.xs.length, 0));
    this.el.dataset.markers = String(this.markers.length);
    const { data, series, bands } = this.plotData(runSer, ser);
    if (!ser.some((s) => s.xs.length)) {
      this.plot?.destroy();
      this.plot = null;
      put(this.plotEl, h('p', { class: 'muted empty-plot' }, 'No points logged for this metric by the charted runs.'));
      put(this.legend, );
      return;
    }
    const xaxis = this.view.xaxis;
    let lo = Math.min(...runSer.filter((s) => s.start != null).map((s) => s.start));
    let hi = Math.max(...runSer.filter((s) => s.end != null).map((s) => s.end));
    if (this.view.zoom) [lo, hi] = this.view.zoom;
    if (hi <= lo) hi = lo + 1;
    const width = Math.max(200, this.plotEl.clientWidth || 400);
    const opts = {
      width, height: HEIGHT,
      legend: { show: false },
      scales: {
        x: { time: xaxis === 'time', range: () => [lo, hi] },
        y: this.view.log ? { distr: 3, log: 10 } : { auto: true },
      },
      series, bands,
      axes: [
        {
          values: xaxis === 'rel' ? (u, v) => v.map((x) => fmtDuration(x)) : xaxis === 'step' ? (u, v) => v.map((x) => fmtNum(x)) : undefined,
          grid: { stroke: '#e9ecef' }, ticks: { stroke: '#dee2e6' },
        },
        {
          values: (u, v) => v.map((y) => fmtNum(y)),
          size: (u, values) => (values ? Math.max(...values.map((s) => String(s).length)) * 7 + 18 : 50),
          grid: { stroke: '#e9ecef' }, ticks: { stroke: '#dee2e6' },
        },
      ],
      cursor: {
        drag: { x: true, y: false, setScale: false },
        bind: { dblclick: () => null },
        points: { show: false },
      },
      hooks: {
        setSelect: [(u) => {
          if (u.select.width < 4) return;
          const a = u.posToVal(u.select.left, 'x'), b = u.posToVal(u.select.left + u.select.width, 'x');
          u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
          this.onZoom?.([a, b]);
        }],
        setCursor: [(u) => this.hover(u)],
        draw: [(u) => this.drawMarkers(u)],
      },
    };
    this.plot?.destroy();
    put(this.plotEl, );
    this.plot = new uPlot(opts, data, this.plotEl);
    this.plot.over.addEventListener('dblclick', () => this.onZoom?.(null));
    this.plot.over.addEventListener('mouseleave', () => this.renderLegend(null));
    this.renderLegend(null);
  }

  // drawMarkers marks non-finite values where the line has a gap: NaN as a
  // cross on the x axis, +Infinity as a triangle at the top, -Infinity at
  // the bottom, in the run's colour.
  drawMarkers(u) {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    ctx.save();
    for (const m of this.markers) {
      const x = u.valToPos(m.x, 'x', true);
      if (x < left - 1 || x > left + width + 1) continue;
      const s = 5 * devicePixelRatio;
      ctx.strokeStyle = ctx.fillStyle = m.run.color;
      ctx.lineWidth = 2 * devicePixelRatio;
      ctx.beginPath();
      if (m.kind === 'nan') {
        const y = top + height - s - 2;
        ctx.moveTo(x - s, y - s); ctx.lineTo(x + s, y + s);
        ctx.moveTo(x + s, y - s); ctx.lineTo(x - s, y + s);
        ctx.stroke();
      } else if (m.kind === '+inf') {
        ctx.moveTo(x, top + 1); ctx.lineTo(x - s, top + 1 + 2 * s); ctx.lineTo(x + s, top + 1 + 2 * s);
        ctx.closePath(); ctx.fill();
      } else {
        const y = top + height - 1;
        ctx.moveTo(x, y); ctx.lineTo(x - s, y - 2 * s); ctx.lineTo(x + s, y - 2 * s);
        ctx.closePath(); ctx.fill();
      }
    }
    ctx.restore();
  }

  hover(u) {
    const idx = u.cursor.idx;
    this.renderLegend(idx == null ? null : u.data[0][idx]);
  }

  // renderLegend lists every run (or group: its run count, mean and band)
  // with its value at x (the last point at or before x), or its last value
  // when the pointer is not on the chart.
  renderLegend(x) {
    const rows = [];
    for (const s of this.current || []) {
      if (!s.xs.length) continue;
      let i = s.xs.length - 1;
      if (x != null) {
        let a = 0, b = s.xs.length - 1;
        if (s.xs[0] > x) i = -1;
        else {
          while (a < b) { const m = (a + b + 1) >> 1; if (s.xs[m] <= x) a = m; else b = m - 1; }
          i = a;
        }
      }
      const raw = i >= 0 ? s.raw[i] : undefined;
      const val = i < 0 ? '' : !Number.isFinite(raw) ? fmtNum(raw) : fmtNum(s.ys[i] ?? raw);
      // A group shows its band around the mean: [low, high] at that step.
      const band = s.group && i >= 0 ? `[${fmtNum(s.lo[i])}, ${fmtNum(s.hi[i])}]` : '';
      rows.push({ s, val, band, sort: i >= 0 && Number.isFinite(s.ys[i]) ? s.ys[i] : -Infinity });
    }
    if (x != null) rows.sort((a, b) => b.sort - a.sort);
    const xa = this.view.xaxis;
    const xl = x == null ? '' : xa === 'step' ? `step ${fmtNum(x)}` : xa === 'time' ? fmtTime(x * 1000) : fmtDuration(x);
    put(this.legend, 
      x != null ? h('div', { class: 'legend-x' }, xl) : null,
      ...rows.map(({ s, val, band }) => h('div', { class: 'legend-row', dataset: s.group ? { group: s.key } : { run: s.key } },
        h('i', { class: 'swatch', style: `background:${s.color}` }),
        h('span', { class: 'legend-name' }, s.label),
        s.group ? h('span', { class: 'legend-count muted' }, `${s.runs} run${s.runs === 1 ? '' : 's'}`) : null,
        h('span', { class: 'legend-val' }, val),
        s.group ? h('span', { class: 'legend-band muted' }, band) : null)));
    this.legend.dataset.x = x == null ? '' : String(x);
  }

  resize() {
    if (this.plot) this.plot.setSize({ width: Math.max(200, this.plotEl.clientWidth), height: HEIGHT });
  }

  destroy() {
    this.abort?.abort();
    this.plot?.destroy();
    this.plot = null;
  }
}

// sectionOf groups metrics as W&B does: "val/loss" in section "val", a
// metric without a prefix in "Charts".
export function sectionOf(metric) {
  const i = metric.indexOf('/');
  return i > 0 ? metric.slice(0, i) : 'Charts';
}
