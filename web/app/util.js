// Small DOM and formatting helpers shared by the pages.

// h builds an element: h('a', {href: '/', class: 'x', onclick: fn}, 'text', child, [more]).
// Attributes starting with "on" become listeners; null/false attributes and
// children are left out; "dataset" takes an object.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') el.style.cssText = v; // CSSOM: allowed by the page's CSP, unlike a style attribute
    else if (k === 'value' || k === 'checked' || k === 'selected' || k === 'disabled') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

// num reads a metric value as the API writes it: a number, or the strings
// "NaN", "Infinity", "-Infinity" (JSON has no token for them).
export function num(v) {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') return Number(v);
  return NaN;
}

export function fmtNum(v) {
  if (v == null || v === '') return '';
  const x = num(v);
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return '∞';
  if (x === -Infinity) return '-∞';
  if (Number.isInteger(x) && Math.abs(x) < 1e15) return x.toLocaleString('en-US');
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return x.toExponential(3);
  return String(Number(x.toPrecision(5)));
}

export function fmtValue(v) {
  if (v === undefined) return '';
  if (v === null) return 'null';
  if (typeof v === 'number' || (typeof v === 'string' && /^(NaN|-?Infinity)$/.test(v))) return fmtNum(v);
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function fmtDuration(sec) {
  if (sec == null || !Number.isFinite(sec) || sec < 0) return '';
  sec = Math.round(sec);
  const d = Math.floor(sec / 86400), hh = Math.floor(sec / 3600) % 24, m = Math.floor(sec / 60) % 60, s = sec % 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

export function fmtAgo(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return '';
  return fmtDuration((now - t) / 1000) + ' ago';
}

// flatten turns nested config into dotted paths (as the API's filters name
// them); arrays are kept as values.
export function flatten(obj, prefix = '', out = {}) {
  if (obj && typeof obj === 'object' && !Array.isArray(obj)) {
    const keys = Object.keys(obj);
    if (keys.length === 0 && prefix) out[prefix] = {};
    for (const k of keys) flatten(obj[k], prefix ? prefix + '.' + k : k, out);
  } else if (prefix) {
    out[prefix] = obj;
  }
  return out;
}

// A run's end: the time of its last event once it is no longer running.
export function runEnd(run) {
  return run.state === 'running' ? null : run.updated_at;
}

export function runDuration(run, now = Date.now()) {
  const start = Date.parse(run.created_at);
  const end = run.state === 'running' ? now : Date.parse(run.updated_at);
  return (end - start) / 1000;
}

// Colours by run id, so a run has the same colour in the table, the legend
// and every chart, on every page.
const palette = ['#2f6fdf', '#e8590c', '#2b8a3e', '#c2255c', '#7048e8', '#0c8599', '#d6336c', '#5c940d',
  '#1864ab', '#a61e4d', '#e67700', '#087f5b', '#5f3dc4', '#c92a2a', '#364fc7', '#0b7285', '#862e9c', '#d9480f',
  '#2b8a9e', '#9c36b5'];
export function runColor(id) {
  let x = 2166136261;
  for (let i = 0; i < id.length; i++) x = Math.imul(x ^ id.charCodeAt(i), 16777619);
  return palette[(x >>> 0) % palette.length];
}

// paletteColor is the i-th colour of the runs' palette (groups take them in
// the table's order, so neighbouring groups differ).
export function paletteColor(i) {
  return palette[i % palette.length];
}

export function debounce(fn, ms) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

// pool runs at most n of the async jobs at once, in order of the list.
export async function pool(jobs, n) {
  const out = new Array(jobs.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, jobs.length) }, async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await jobs[i]();
    }
  }));
  return out;
}

// put replaces el's children, leaving out null and false (replaceChildren
// would write them as text) and flattening arrays.
export function put(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}
