// The project workspace: the runs table (server-side filters, sort and
// paging, a column picker over config and summary keys, grouping,
// selection and eye toggles) above the charts of the selected runs (or the
// first 10 visible ones; in a grouped table, one mean line and band per
// group). The whole view lives in the URL.

import { api, enc, projectPath, searchRuns } from './api.js';
import { h, put, fmtValue, fmtTime, fmtDuration, fmtAgo, flatten, runColor, paletteColor, runDuration, debounce, pool } from './util.js';
import { Panel, sectionOf } from './chart.js';
import { BANDS } from './group.js';
import { watchProject, currentSeq } from './live.js';

const BASE_COLS = [
  { id: 'state', label: 'State' },
  { id: 'owner', label: 'Owner' },
  { id: 'job_type', label: 'Job type' },
  { id: 'group', label: 'Group' },
  { id: 'tags', label: 'Tags' },
  { id: 'created_at', label: 'Created' },
  { id: 'duration', label: 'Duration' },
  { id: 'updated_at', label: 'Last activity', hidden: true },
];
const DEFAULT_COLS = BASE_COLS.filter((c) => !c.hidden).map((c) => c.id);
const BASE_FIELDS = ['state', 'owner', 'job_type', 'group', 'tag', 'tags_any'];
const GROUP_BY = ['job_type', 'group', 'state', 'owner', 'tag'];
export const DEFAULT_CHARTED = 10;
const RENDER_FIRST = 100, RENDER_MORE = 200;
export const MAX_CHARTED = 100;
// A grouped table charts at most this many groups (each the mean of up to
// MAX_CHARTED / groups of its runs) when no run is selected.
export const MAX_GROUPS_CHARTED = 20;

// Every column sorts on the server but tags and duration (which grows
// while a run runs, so it cannot page stably).
export function sortable(col) {
  return col !== 'tags' && col !== 'duration';
}

function list(v) { return v ? v.split(',').filter(Boolean) : []; }

export function readView(q, stored, storedPins) {
  const zoom = list(q.get('zoom')).map(Number);
  return {
    pinned: new Set(q.has('pin') ? list(q.get('pin')) : storedPins || []),
    sort: q.get('sort') || '-created_at',
    filters: q.getAll('f'),
    cols: q.has('cols') ? list(q.get('cols')) : [...(stored || DEFAULT_COLS)],
    sel: list(q.get('sel')),
    hide: new Set(list(q.get('hide'))),
    group: q.get('group') || '',
    limit: Math.min(1000, Math.max(10, Number(q.get('limit')) || 50)),
    cursor: q.get('cursor') || '',
    page: Math.max(1, Number(q.get('page')) || 1),
    xaxis: ['step', 'time', 'rel'].includes(q.get('x')) ? q.get('x') : 'step',
    smooth: Math.min(0.99, Math.max(0, Number(q.get('smooth')) || 0)),
    smode: q.get('smode') === 'ema' ? 'ema' : 'twema',
    log: q.get('log') === '1',
    band: Object.hasOwn(BANDS, q.get('band')) ? q.get('band') : 'minmax',
    gruns: q.get('gruns') === '1',
    zoom: zoom.length === 2 && zoom.every(Number.isFinite) ? zoom : null,
    ps: q.get('ps') || '',
    search: q.get('q') || '',
    collapsed: new Set(list(q.get('cs'))),
    asof: q.get('asof') || '',
  };
}

export function writeView(v) {
  const p = new URLSearchParams();
  if (v.sort !== '-created_at') p.set('sort', v.sort);
  for (const f of v.filters) p.append('f', f);
  if (v.cols.join(',') !== DEFAULT_COLS.join(',')) p.set('cols', v.cols.join(','));
  if (v.pinned.size) p.set('pin', [...v.pinned].join(','));
  if (v.sel.length) p.set('sel', v.sel.join(','));
  if (v.hide.size) p.set('hide', [...v.hide].join(','));
  if (v.group) p.set('group', v.group);
  if (v.limit !== 50) p.set('limit', String(v.limit));
  if (v.cursor) { p.set('cursor', v.cursor); p.set('page', String(v.page)); }
  if (v.xaxis !== 'step') p.set('x', v.xaxis);
  if (v.smooth) p.set('smooth', String(v.smooth));
  if (v.smode !== 'twema') p.set('smode', v.smode);
  if (v.log) p.set('log', '1');
  if (v.band !== 'minmax') p.set('band', v.band);
  if (v.gruns) p.set('gruns', '1');
  if (v.zoom) p.set('zoom', v.zoom.map((x) => +x.toPrecision(10)).join(','));
  if (v.ps) p.set('ps', v.ps);
  if (v.search) p.set('q', v.search);
  if (v.collapsed.size) p.set('cs', [...v.collapsed].join(','));
  if (v.asof) p.set('asof', v.asof);
  return p;
}

// apiParams turns the view's filters, sort and page into the API's search
// syntax: state/owner/job_type/group/tag/tags_any as their parameters,
// config.* and summary.* comparisons as filter=.
export function apiParams(v, extra = {}) {
  const p = new URLSearchParams();
  for (const f of v.filters) {
    const m = /^(state|owner|job_type|group|tag|tags_any)=(.*)$/s.exec(f);
    if (m) p.append(m[1], m[2]);
    else p.append('filter', f);
  }
  if (v.search) p.set('search', v.search);
  p.set('sort', v.sort);
  p.set('limit', String(v.limit));
  if (v.cursor) p.set('cursor', v.cursor);
  // Only the chosen config and summary columns travel.
  p.set('fields', v.cols.filter((c) => c.startsWith('config.') || c.startsWith('summary.')).join(','));
  if (!p.get('fields')) p.set('fields', 'name'); // the base fields only
  for (const [k, val] of Object.entries(extra)) p.set(k, val);
  return p;
}

function cell(run, col, now) {
  switch (col) {
    case 'state': return h('span', { class: `state state-${run.state}` }, run.state);
    case 'owner': return run.owner;
    case 'job_type': return run.job_type || '';
    case 'group': return run.group || '';
    case 'tags': return (run.tags || []).map((t) => h('span', { class: 'tag' }, t));
    case 'created_at': return h('span', { title: run.created_at }, fmtTime(run.created_at));
    case 'updated_at': return h('span', { title: run.updated_at }, fmtAgo(run.updated_at, now));
    case 'duration': return fmtDuration(runDuration(run, now));
  }
  if (col.startsWith('config.')) return fmtValue(configOf(run)[col.slice(7)]);
  if (col.startsWith('summary.')) return fmtValue(run.summary?.[col.slice(8)]);
  return '';
}

const flatCache = new WeakMap();
function configOf(run) {
  let f = flatCache.get(run);
  if (!f) flatCache.set(run, (f = flatten(run.config || {})));
  return f;
}

// groupValues are the values a run is grouped under, written as the server
// writes them (GET .../run-groups): a run is under each of its tags (a run
// without tags under ""), a config value as text.
export function groupValues(run, by) {
  if (by === 'tag') return run.tags?.length ? run.tags : [''];
  if (by.startsWith('config.')) return [configText(configOf(run)[by.slice(7)])];
  return [run[by] || ''];
}

// configText is the server's configText: strings as they are, numbers as
// Go's strconv.FormatFloat(x, 'g', -1, 64) (plain from 1e-4 to below 1e6,
// else an exponent of at least two digits: 1e-05, 1.5e+06), else JSON.
export function configText(v) {
  if (v == null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) {
    const [m, e] = v.toExponential().split('e');
    const exp = Number(e);
    if (exp >= -4 && exp < 6) return String(v);
    return `${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  return JSON.stringify(v);
}

function colLabel(col) {
  return BASE_COLS.find((c) => c.id === col)?.label || col;
}

export function workspacePage(app, entity, project, q) {
  const colsKey = `logbook.cols.${entity}/${project}`;
  const pinsKey = `logbook.pins.${entity}/${project}`;
  let stored = null, storedPins = null;
  try {
    stored = JSON.parse(localStorage.getItem(colsKey) || 'null');
    storedPins = JSON.parse(localStorage.getItem(pinsKey) || 'null');
  } catch { /* ignore */ }
  const view = readView(q, stored, storedPins);
  // Pinned columns come first and stay in view when the table scrolls sideways.
  const shownCols = () => [...view.cols.filter((c) => view.pinned.has(c)), ...view.cols.filter((c) => !view.pinned.has(c))];
  const base = `/w/${enc(entity)}/${enc(project)}`;
  document.title = `${project} · ${entity} · Logbook`;
  app.crumbs(h('a', { href: '/' }, 'Projects'), h('span', {}, entity), h('a', { href: base }, project));

  const cursors = []; // cursors of the pages before this one (Prev)
  let rows = []; // runs on screen (page, or the expanded groups)
  let total = 0;
  const runCache = new Map(); // id -> the full run document (charts need its metrics)
  const knownKeys = { config: new Set(), summary: new Set() };
  const panels = new Map(); // metric -> Panel
  let chartIds = ''; // the charted runs and metrics the panels were built for
  let destroyed = false;
  let stopLive = null;
  const openGroups = new Set();

  const sync = () => app.setQuery(writeView(view));

  // ----- header: tabs, as-of picker
  const asofInput = h('input', { type: 'datetime-local', id: 'asof', step: 1, 'aria-label': 'Show the project as it was at' });
  if (view.asof) {
    const d = new Date(view.asof);
    if (!Number.isNaN(d.getTime())) asofInput.value = new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
  }
  const head = h('div', { class: 'toolbar' },
    h('h2', {}, project),
    h('nav', { class: 'tabs' }, h('a', { href: base, class: 'active', 'aria-current': 'page' }, 'Workspace'), h('a', { href: `${base}/settings` }, 'Settings')),
    h('span', { class: 'spacer' }),
    h('form', { class: 'asof', onsubmit: (e) => {
      e.preventDefault();
      if (!asofInput.value) return;
      view.asof = new Date(asofInput.value).toISOString();
      sync();
      app.navigate(location.pathname + location.search, { replace: true });
    } }, h('label', { for: 'asof' }, 'As of'), asofInput, h('button', { type: 'submit' }, 'Go')));

  if (view.asof) return asofView();

  // ----- filter bar
  const fieldIn = h('input', { id: 'filter-field', list: 'filter-fields', placeholder: 'field (state, config.lr, summary.loss…)', 'aria-label': 'Filter field', size: 26 });
  const fieldList = h('datalist', { id: 'filter-fields' });
  fieldIn.addEventListener('focus', () => sampleKeys());
  const opIn = h('select', { id: 'filter-op', 'aria-label': 'Filter operator' }, ['=', '!=', '<', '<=', '>', '>='].map((o) => h('option', { value: o }, o)));
  const valIn = h('input', { id: 'filter-value', placeholder: 'value', 'aria-label': 'Filter value', size: 14 });
  const filterErr = h('span', { class: 'error', role: 'alert' });
  fieldIn.addEventListener('change', () => { if (BASE_FIELDS.includes(fieldIn.value.trim())) opIn.value = '='; });
  const chips = h('div', { class: 'chips', id: 'filter-chips' });
  const filterForm = h('form', { class: 'filter-builder', onsubmit: (e) => {
    e.preventDefault();
    filterErr.textContent = '';
    const f = fieldIn.value.trim(), op = opIn.value, v = valIn.value.trim();
    if (!f) return;
    if (BASE_FIELDS.includes(f) && op !== '=') { filterErr.textContent = `${f} filters match exactly: use =`; return; }
    if (!BASE_FIELDS.includes(f) && !f.startsWith('config.') && !f.startsWith('summary.')) {
      filterErr.textContent = `Filter on ${BASE_FIELDS.join(', ')}, config.<path> or summary.<metric>`;
      return;
    }
    view.filters.push(f + op + v);
    fieldIn.value = valIn.value = '';
    resetPaging();
    sync();
    drawChips();
    loadRuns();
  } }, h('span', { class: 'muted' }, 'Filter'), fieldIn, fieldList, opIn, valIn, h('button', { type: 'submit' }, 'Add'), filterErr);

  function drawChips() {
    put(chips, ...view.filters.map((f, i) => h('span', { class: 'chip' }, f,
      h('button', { class: 'link', 'aria-label': `remove filter ${f}`, onclick: () => {
        view.filters.splice(i, 1);
        resetPaging();
        sync();
        drawChips();
        loadRuns();
      } }, '×'))));
  }

  function drawFieldList() {
    drawGroupOptions();
    put(fieldList, ...BASE_FIELDS.map((f) => h('option', { value: f })),
      ...[...knownKeys.config].sort().map((k) => h('option', { value: 'config.' + k })),
      ...[...knownKeys.summary].sort().map((k) => h('option', { value: 'summary.' + k })));
  }

  const searchIn = h('input', { type: 'search', id: 'run-search', placeholder: 'Search runs by name', 'aria-label': 'Search runs by name', value: view.search });
  searchIn.addEventListener('input', debounce(() => {
    view.search = searchIn.value.trim();
    resetPaging();
    sync();
    loadRuns();
  }, 250));

  // ----- group by, page size, column picker
  const groupSel = h('select', { id: 'group-by', 'aria-label': 'Group by', onchange: () => {
    view.group = groupSel.value;
    groupCtl.hidden = !view.group;
    openGroups.clear();
    resetPaging();
    sync();
    loadRuns();
  } });
  function drawGroupOptions() {
    const keys = [...knownKeys.config].sort().map((k) => 'config.' + k);
    if (view.group.startsWith('config.') && !keys.includes(view.group)) keys.unshift(view.group);
    put(groupSel, h('option', { value: '' }, 'No grouping'),
      GROUP_BY.map((g) => h('option', { value: g, selected: view.group === g }, 'Group by ' + (g === 'tag' ? 'tag' : colLabel(g).toLowerCase()))),
      keys.length ? h('optgroup', { label: 'Config' }, keys.map((k) => h('option', { value: k, selected: view.group === k }, 'Group by ' + k))) : null);
  }
  drawGroupOptions();
  groupSel.addEventListener('focus', () => sampleKeys());
  const limitSel = h('select', { id: 'page-size', 'aria-label': 'Runs per page', onchange: () => {
    view.limit = Number(limitSel.value);
    resetPaging();
    sync();
    loadRuns();
  } }, [20, 50, 100, 500, 1000].map((n) => h('option', { value: n, selected: view.limit === n }, `${n} per page`)));

  const picker = h('div', { class: 'popover', id: 'column-picker', hidden: true });
  const pickBtn = h('button', { id: 'columns-button', 'aria-expanded': 'false', 'aria-controls': 'column-picker', onclick: () => {
    picker.hidden = !picker.hidden;
    pickBtn.setAttribute('aria-expanded', String(!picker.hidden));
    if (!picker.hidden) { drawPicker(); sampleKeys(); }
  } }, 'Columns');
  function drawPicker() {
    const search = h('input', { type: 'search', id: 'column-search', placeholder: 'Search columns', 'aria-label': 'Search columns' });
    const box = h('div', { class: 'picker-list' });
    const all = [...BASE_COLS.map((c) => c.id), ...[...knownKeys.config].sort().map((k) => 'config.' + k), ...[...knownKeys.summary].sort().map((k) => 'summary.' + k)];
    for (const c of view.cols) if (!all.includes(c)) all.push(c);
    const drawList = () => {
      const term = search.value.toLowerCase();
      put(box, ...all.filter((c) => c.toLowerCase().includes(term) || colLabel(c).toLowerCase().includes(term)).map((c) =>
        h('label', { class: 'pick' }, h('input', { type: 'checkbox', checked: view.cols.includes(c), dataset: { col: c }, onchange: (e) => {
          if (e.target.checked) view.cols.push(c);
          else view.cols = view.cols.filter((x) => x !== c);
          localStorage.setItem(colsKey, JSON.stringify(view.cols));
          sync();
          // A new config or summary column is fetched: rows carry only the chosen ones.
          if (e.target.checked && (c.startsWith('config.') || c.startsWith('summary.'))) loadRuns({ quiet: true });
          else drawTable();
        } }), colLabel(c),
        view.cols.includes(c) ? h('button', { class: 'pin', 'aria-pressed': String(view.pinned.has(c)), 'aria-label': `pin ${c}`, title: 'Pin to the left', dataset: { pin: c }, onclick: (e) => {
          e.preventDefault();
          if (view.pinned.has(c)) view.pinned.delete(c); else view.pinned.add(c);
          localStorage.setItem(pinsKey, JSON.stringify([...view.pinned]));
          sync();
          drawTable();
          drawList();
        } }, view.pinned.has(c) ? 'pinned' : 'pin') : null)));
    };
    search.addEventListener('input', drawList);
    drawList();
    put(picker, search, box, h('button', { class: 'link', onclick: () => {
      view.cols = [...DEFAULT_COLS];
      localStorage.removeItem(colsKey);
      sync();
      drawTable();
      drawList();
    } }, 'Reset columns'));
    search.focus();
  }

  const runsErr = h('div', { id: 'runs-error', class: 'error', role: 'alert' });
  const tableBox = h('div', { class: 'table-box', id: 'runs' });
  const pager = h('div', { class: 'pager', id: 'pager' });
  const selInfo = h('div', { class: 'sel-info' });

  function resetPaging() {
    view.cursor = '';
    view.page = 1;
    cursors.length = 0;
  }

  // ----- runs table
  let loadSeq = 0;
  async function loadRuns({ quiet = false } = {}) {
    const my = ++loadSeq;
    if (!quiet) tableBox.classList.add('loading');
    try {
      if (view.group) await loadGroups(my);
      else {
        const t0 = performance.now();
        const page = await searchRuns(entity, project, apiParams(view));
        if (my !== loadSeq || destroyed) return;
        performance.mark('lb:runs-response', { detail: { fetchMs: performance.now() - t0 } });
        rows = page.runs;
        total = page.total;
        if (!quiet) rendered = 0;
        view.nextCursor = page.next;
      }
      runsErr.textContent = '';
      const b0 = performance.now();
      for (const r of rows) learnKeys(r);
      const b1 = performance.now();
      drawTable();
      performance.measure('lb:learn', { start: b0, end: b1 });
      performance.measure('lb:table-build', { start: b1, end: performance.now() });
      requestAnimationFrame(() => setTimeout(() => performance.mark('lb:table-painted'), 0));
      drawFieldList();
      updateCharts();
    } catch (e) {
      if (my !== loadSeq) return;
      // A filter the server cannot parse is an error to fix, never "0 runs".
      runsErr.textContent = e.code === 'invalid_filter' ? `Invalid filter: ${e.message}` : e.message;
      rows = [];
      total = 0;
      put(tableBox, );
      put(pager, );
    } finally {
      tableBox.classList.remove('loading');
    }
  }

  let groups = [];
  // Colours of the groups, in the table's order (a value seen only among
  // selected runs takes the next one), shared by the group rows and charts.
  const groupColors = new Map();
  const groupColor = (v) => {
    if (!groupColors.has(v)) groupColors.set(v, paletteColor(groupColors.size));
    return groupColors.get(v);
  };
  const members = new Map(); // group value -> its first runs, for the charts
  async function loadGroups(my) {
    const p = apiParams(view);
    p.delete('cursor');
    p.set('by', view.group);
    for (const c of view.cols) if (c.startsWith('summary.')) p.append('agg', c);
    const res = await api(`${projectPath(entity, project)}/run-groups?${p}`);
    if (my !== loadSeq) return;
    groups = res.groups;
    total = res.total;
    rows = [];
    members.clear();
    groupColors.clear();
    groups.forEach((g, i) => groupColors.set(g.value, paletteColor(i)));
    for (const g of groups) {
      if (!openGroups.has(g.value) || g.value === '') continue;
      const gv = { ...view, cursor: '', limit: 100, filters: [...view.filters, `${view.group}=${g.value}`] };
      const page = await searchRuns(entity, project, apiParams(gv));
      g.runs = page.runs;
      g.more = page.total - page.runs.length;
      rows.push(...page.runs);
    }
  }

  function learn(r) {
    runCache.set(r.id, r);
    learnKeys(r);
  }

  // Keys for the column picker and the filter builder: the table's rows
  // carry only the chosen columns, so a sample of full runs (the 200 most
  // recently active) is read once, when the picker or the builder is used.
  let sampled = false;
  async function sampleKeys() {
    if (sampled) return;
    sampled = true;
    try {
      const page = await searchRuns(entity, project, new URLSearchParams({ sort: '-updated_at', limit: '200' }));
      for (const r of page.runs) learnKeys(r);
      drawFieldList();
      if (!picker.hidden) drawPicker();
    } catch { sampled = false; }
  }

  function learnKeys(r) {
    for (const k of Object.keys(configOf(r))) knownKeys.config.add(k);
    for (const k of Object.keys(r.summary || {})) knownKeys.summary.add(k);
  }

  function headerCell(col) {
    const label = col === 'name' ? 'Name' : colLabel(col);
    if (!sortable(col)) return h('th', { scope: 'col', title: 'The server cannot sort by this column yet' }, label);
    const dir = view.sort === col ? 'ascending' : view.sort === '-' + col ? 'descending' : 'none';
    return h('th', { scope: 'col', 'aria-sort': dir }, h('button', { class: 'sort', dataset: { sort: col }, onclick: () => {
      view.sort = view.sort === col ? '-' + col : col;
      resetPaging();
      sync();
      loadRuns();
    } }, label, dir === 'ascending' ? ' ▲' : dir === 'descending' ? ' ▼' : ''));
  }

  function runRow(r, now) {
    const selected = view.sel.includes(r.id);
    const hidden = view.hide.has(r.id);
    return h('tr', { dataset: { run: r.id }, class: selected ? 'selected' : null },
      h('td', { class: 'ctl' },
        h('input', { type: 'checkbox', class: 'sel', checked: selected, 'aria-label': `select ${r.name}`, onchange: (e) => toggleSel(r.id, e.target.checked) }),
        h('button', { class: 'eye', 'aria-pressed': String(!hidden), 'aria-label': `${hidden ? 'show' : 'hide'} ${r.name} in charts`, title: hidden ? 'Hidden from charts' : 'Shown in charts', onclick: () => toggleHide(r.id) }, hidden ? '◌' : '●'),
        h('i', { class: 'swatch', style: `background:${runColor(r.id)}` })),
      h('th', { scope: 'row', class: 'name' }, h('a', { href: `${base}/runs/${enc(r.id)}` }, r.name)),
      shownCols().map((c, i) => h('td', { class: (c.startsWith('summary.') || c.startsWith('config.') ? 'num' : '') + (view.pinned.has(c) ? ' pinned' : ''), style: view.pinned.has(c) ? `left:var(--pin-${i})` : null, dataset: { col: c } }, cell(r, c, now))));
  }

  let rendered = 0;
  tableBox.addEventListener('scroll', () => {
    if (view.group || rendered >= rows.length) return;
    if (tableBox.scrollTop + tableBox.clientHeight < tableBox.scrollHeight - 400) return;
    const more = rows.slice(rendered, rendered + RENDER_MORE);
    rendered += more.length;
    const now = Date.now();
    tableBox.querySelector('#runs-body')?.append(...more.map((r) => runRow(r, now)));
  });

  function drawTable() {
    const now = Date.now();
    const cols = ['name', ...shownCols()];
    const allSel = rows.length > 0 && rows.every((r) => view.sel.includes(r.id));
    const thead = h('thead', {}, h('tr', {},
      h('th', { class: 'ctl' }, h('input', { type: 'checkbox', id: 'select-page', 'aria-label': 'select every run on this page', checked: allSel, onchange: (e) => {
        for (const r of rows) toggleSel(r.id, e.target.checked, true);
        sync();
        drawTable();
        updateCharts();
      } })),
      cols.map((c, i) => {
        const th = headerCell(c);
        if (c === 'name') th.classList.add('name');
        if (view.pinned.has(c)) { th.classList.add('pinned'); th.style.left = `var(--pin-${i - 1})`; }
        return th;
      })));
    let body;
    if (view.group) {
      body = groups.map((g) => {
        const open = openGroups.has(g.value);
        const label = `${view.group === 'tag' ? 'Tag' : colLabel(view.group)}: ${g.value || '(none)'}`;
        const aggs = Object.entries(g.aggregates || {}).map(([k, a]) =>
          h('span', { class: 'agg', dataset: { agg: k } }, `${k.slice(8)}: mean ${fmtValue(a.mean)} (min ${fmtValue(a.min)}, max ${fmtValue(a.max)}, ${a.count} runs)`));
        return h('tbody', { class: 'group', dataset: { group: g.value } },
          h('tr', { class: 'group-row' }, h('td', { colspan: cols.length + 1 },
            h('i', { class: 'swatch', style: `background:${groupColor(g.value)}`, title: 'The colour of the group on the charts' }),
            // Runs without the value cannot be filtered for: their group is a count only.
            g.value === '' ? h('span', { class: 'group-toggle' }, label) : h('button', { class: 'link group-toggle', 'aria-expanded': String(open), onclick: () => {
              if (open) openGroups.delete(g.value); else openGroups.add(g.value);
              loadRuns();
            } }, `${open ? '▾' : '▸'} ${label}`),
            h('span', { class: 'count' }, ` ${g.count} run${g.count === 1 ? '' : 's'}`),
            aggs.length ? h('span', { class: 'aggs' }, aggs) : null,
            open && g.more > 0 ? h('span', { class: 'muted' }, ` (first 100 shown)`) : null)),
          open ? (g.runs || []).map((r) => runRow(r, now)) : null);
      });
    } else {
      // Rows are built as the table box scrolls near its end: a page of
      // 1,000 runs paints its first rows at once, not after 1,000 of them.
      rendered = Math.min(rows.length, Math.max(RENDER_FIRST, rendered));
      body = h('tbody', { id: 'runs-body' }, rows.slice(0, rendered).map((r) => runRow(r, now)));
    }
    if (total === 0 && !view.filters.length) {
      put(tableBox, emptyState());
      put(pager, );
      return;
    }
    const table = h('table', { class: 'grid runs', dataset: { total } }, thead, body);
    requestAnimationFrame(() => {
      // Offsets of the pinned columns: after the control and name columns.
      const ths = table.querySelectorAll('thead th');
      if (ths.length < 2) return;
      table.style.setProperty('--name-left', ths[0].offsetWidth + 'px');
      let left = ths[0].offsetWidth + ths[1].offsetWidth;
      shownCols().forEach((c, k) => {
        if (!view.pinned.has(c)) return;
        table.style.setProperty(`--pin-${k}`, left + 'px');
        left += ths[k + 2].offsetWidth;
      });
    });
    put(tableBox, table,
      total === 0 ? h('p', { class: 'muted', id: 'no-match' }, 'No runs match these filters.') : null);
    drawPager();
    drawSelInfo();
  }

  function drawPager() {
    if (view.group) {
      put(pager, h('span', { id: 'run-count' }, `${total} run${total === 1 ? '' : 's'} in ${groups.length} group${groups.length === 1 ? '' : 's'}`));
      return;
    }
    const first = (view.page - 1) * view.limit + 1;
    const last = first + rows.length - 1;
    put(pager, 
      h('span', { id: 'run-count' }, total ? `${first.toLocaleString('en-US')}–${last.toLocaleString('en-US')} of ${total.toLocaleString('en-US')} runs` : '0 runs'),
      h('button', { id: 'prev-page', disabled: view.page <= 1, onclick: () => {
        view.cursor = cursors.pop() || '';
        view.page = Math.max(1, view.page - 1);
        sync();
        loadRuns();
      } }, '‹ Prev'),
      h('button', { id: 'next-page', disabled: !view.nextCursor, onclick: () => {
        cursors.push(view.cursor);
        view.cursor = view.nextCursor;
        view.page++;
        sync();
        loadRuns();
      } }, 'Next ›'),
      limitSel);
  }

  function drawSelInfo() {
    const n = view.sel.length;
    put(selInfo, 
      n ? h('span', {}, `${n} selected`) : h('span', { class: 'muted' }, 'Select runs to chart or compare them'),
      n >= 2 ? h('a', { class: 'button', id: 'compare-link', href: `${base}/compare?runs=${view.sel.map(enc).join(',')}` }, 'Compare') : null,
      n ? h('button', { class: 'link', id: 'clear-selection', onclick: () => {
        view.sel = [];
        sync();
        drawTable();
        updateCharts();
      } }, 'Clear') : null);
  }

  function toggleSel(id, on, batch) {
    const has = view.sel.includes(id);
    if (on && !has) {
      if (view.sel.length >= MAX_CHARTED) {
        app.flash(`At most ${MAX_CHARTED} runs can be selected.`);
        return;
      }
      view.sel.push(id);
    } else if (!on && has) view.sel = view.sel.filter((x) => x !== id);
    if (batch) return;
    sync();
    drawTable();
    updateCharts();
  }

  function toggleHide(id) {
    if (view.hide.has(id)) view.hide.delete(id); else view.hide.add(id);
    sync();
    drawTable();
    updateCharts();
  }

  function emptyState() {
    const origin = location.origin;
    const py = `export WANDB_BASE_URL=${origin}
export WANDB_API_KEY=<your Logbook API key>
export WANDB_ERROR_REPORTING=false

python - <<'EOF'
import wandb
run = wandb.init(entity="${entity}", project="${project}", config={"lr": 0.001})
for step in range(100):
    run.log({"loss": 1 / (step + 1)})
run.finish()
EOF`;
    const go = `// LOGBOOK_URL=${origin} LOGBOOK_API_KEY=<your key> go run .
run, err := client.Init(ctx, client.Options{
	Entity: "${entity}", Project: "${project}", JobType: "train",
	Config: map[string]any{"lr": 0.001},
}) // import "github.com/logbook/logbook/client"
if err != nil {
	log.Fatal(err)
}
for step := 0; step < 100; step++ {
	run.Log(map[string]any{"loss": 1 / float64(step+1)})
}
err = run.Finish()`;
    return h('div', { class: 'empty card', id: 'empty-project' },
      h('h3', {}, 'No runs yet: log the first one'),
      h('p', {}, 'Code written for W&B logs here unchanged: point the SDK at this server.'),
      h('h4', {}, 'Python (wandb)'), h('pre', { class: 'code', id: 'snippet-python' }, py),
      h('h4', {}, 'Go (Logbook client)'), h('pre', { class: 'code', id: 'snippet-go' }, go),
      h('p', { class: 'muted' }, 'Runs appear here as they start, without a reload.'));
  }

  // ----- charts
  const chartInfo = h('span', { id: 'chart-info', class: 'muted' });
  const panelSearch = h('input', { type: 'search', id: 'panel-search', placeholder: 'Search panels', 'aria-label': 'Search panels', value: view.ps });
  const smoothIn = h('input', { type: 'range', id: 'smoothing', min: 0, max: 0.99, step: 0.01, value: view.smooth, 'aria-label': 'Smoothing' });
  const smoothOut = h('output', { for: 'smoothing', id: 'smoothing-value' }, String(view.smooth));
  const smodeSel = h('select', { id: 'smoothing-mode', 'aria-label': 'Smoothing kind' },
    h('option', { value: 'twema', selected: view.smode === 'twema' }, 'Time-weighted EMA'),
    h('option', { value: 'ema', selected: view.smode === 'ema' }, 'EMA'));
  const xSel = h('select', { id: 'x-axis', 'aria-label': 'X axis' },
    h('option', { value: 'step', selected: view.xaxis === 'step' }, 'Step'),
    h('option', { value: 'time', selected: view.xaxis === 'time' }, 'Wall time'),
    h('option', { value: 'rel', selected: view.xaxis === 'rel' }, 'Relative time'));
  const logIn = h('input', { type: 'checkbox', id: 'log-scale', checked: view.log });
  const bandSel = h('select', { id: 'group-band', 'aria-label': 'Band around the group mean' },
    Object.entries(BANDS).map(([v, l]) => h('option', { value: v, selected: view.band === v }, l)));
  const grunsIn = h('input', { type: 'checkbox', id: 'group-runs', checked: view.gruns });
  const groupCtl = h('span', { class: 'group-ctl', hidden: !view.group },
    h('label', { class: 'ctl-label' }, 'Band ', bandSel),
    h('label', { class: 'ctl-label', title: "The group's runs as thin lines beneath its mean" }, grunsIn, ' Show runs'));
  const resetZoom = h('button', { id: 'reset-zoom', hidden: !view.zoom, onclick: () => zoom(null) }, 'Reset zoom');
  const sections = h('div', { id: 'sections' });

  const redraw = () => { for (const p of panels.values()) if (p.current) p.draw(); };
  smoothIn.addEventListener('input', () => {
    view.smooth = Number(smoothIn.value);
    smoothOut.textContent = String(view.smooth);
    sync();
    redraw();
  });
  smodeSel.addEventListener('change', () => { view.smode = smodeSel.value; sync(); redraw(); });
  logIn.addEventListener('change', () => { view.log = logIn.checked; sync(); redraw(); });
  bandSel.addEventListener('change', () => { view.band = bandSel.value; sync(); redraw(); });
  grunsIn.addEventListener('change', () => { view.gruns = grunsIn.checked; sync(); redraw(); });
  xSel.addEventListener('change', () => {
    view.xaxis = xSel.value;
    view.zoom = null;
    resetZoom.hidden = true;
    sync();
    redraw();
  });
  panelSearch.addEventListener('input', debounce(() => { view.ps = panelSearch.value; sync(); filterPanels(); }, 150));

  function zoom(range) {
    view.zoom = range && range[1] > range[0] ? range : null;
    resetZoom.hidden = !view.zoom;
    sync();
    // The step axis asks the server for the range; time axes zoom in place.
    for (const p of panels.values()) {
      if (view.xaxis === 'step') { if (p.visible) p.load().catch(() => {}); else p.stale = true; } else if (p.current) p.draw();
    }
  }

  // chartedRuns: the selected runs (up to 100), else in a grouped table the
  // first runs of each group (chartedGroupRuns), else the first 10 visible
  // rows; runs hidden with the eye toggle are left out.
  async function chartedRuns() {
    let ids;
    let why;
    if (view.group && !view.sel.length) return chartedGroupRuns();
    if (view.sel.length) {
      ids = view.sel.filter((id) => !view.hide.has(id)).slice(0, MAX_CHARTED);
      why = `${ids.length} selected run${ids.length === 1 ? '' : 's'}`;
    } else {
      ids = rows.filter((r) => !view.hide.has(r.id)).slice(0, DEFAULT_CHARTED).map((r) => r.id);
      why = ids.length ? `the first ${ids.length} visible run${ids.length === 1 ? '' : 's'} (select runs to choose, up to ${MAX_CHARTED})` : '';
    }
    return { ids, why };
  }

  // chartedGroupRuns: with no run selected, a grouped table charts its
  // first MAX_GROUPS_CHARTED groups, each from up to MAX_CHARTED / groups of
  // its runs (in the table's sort; the "(none)" group cannot be asked for).
  async function chartedGroupRuns() {
    const gs = groups.filter((g) => g.value !== '').slice(0, MAX_GROUPS_CHARTED);
    const per = Math.max(1, Math.floor(MAX_CHARTED / Math.max(1, gs.length)));
    await pool(gs.filter((g) => !members.has(g.value)).map((g) => async () => {
      const gv = { ...view, cursor: '', limit: per, filters: [...view.filters, `${view.group}=${g.value}`] };
      members.set(g.value, g.runs || (await searchRuns(entity, project, apiParams(gv))).runs);
    }), 6);
    const byGroup = new Map(gs.map((g) => [g.value, (members.get(g.value) || []).slice(0, per).map((r) => r.id).filter((id) => !view.hide.has(id))]));
    const ids = [...new Set([...byGroup.values()].flat())];
    const why = gs.length ? `${gs.length} group${gs.length === 1 ? '' : 's'}: the mean of up to ${per} run${per === 1 ? '' : 's'} each (select runs to choose)` : '';
    return { ids, why, byGroup };
  }

  // chartGroups are the groups the panels draw: those of chartedGroupRuns,
  // or the selected runs grouped by their values, in the table's order.
  function chartGroups(runs, byGroup) {
    const have = new Set(runs.map((r) => r.id));
    if (!byGroup) {
      byGroup = new Map();
      for (const r of runs) {
        for (const v of groupValues(runCache.get(r.id), view.group)) {
          if (!byGroup.has(v)) byGroup.set(v, []);
          byGroup.get(v).push(r.id);
        }
      }
    }
    const order = new Map(groups.map((g, i) => [g.value, i]));
    return [...byGroup].sort((a, b) => (order.get(a[0]) ?? Infinity) - (order.get(b[0]) ?? Infinity) || a[0].localeCompare(b[0]))
      .map(([v, ids]) => ({ key: v, name: v || '(none)', color: groupColor(v), ids: ids.filter((id) => have.has(id)) }))
      .filter((g) => g.ids.length);
  }

  const io = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const p = e.target.__panel;
      if (!p) continue;
      p.visible = e.isIntersecting;
      if (p.visible && (!p.loaded || p.stale)) {
        p.loaded = true;
        p.stale = false;
        p.load().then(() => chartsDrawn()).catch(() => {});
      }
    }
  }, { rootMargin: '300px' });

  function chartsDrawn() {
    // Marks when every panel in view has drawn (the benchmark reads it).
    const loading = [...panels.values()].filter((p) => p.visible && p.el.dataset.loading);
    if (!loading.length) requestAnimationFrame(() => performance.mark('lb:charts-drawn'));
  }

  let chartSeq = 0;
  async function updateCharts(force = false, refresh = new Set()) {
    const my = ++chartSeq;
    const { ids, why, byGroup } = await chartedRuns();
    const missing = ids.filter((id) => !runCache.has(id) || refresh.has(id));
    if (missing.length) {
      await pool(missing.map((id) => async () => {
        try { learn(await api(`${projectPath(entity, project)}/runs/${enc(id)}`)); } catch { /* deleted or not visible */ }
      }), 6);
    }
    const runs = ids.filter((id) => runCache.has(id)).map((id) => {
      const r = runCache.get(id);
      return { id: r.id, name: r.name, color: runColor(r.id), created_at: r.created_at };
    });
    if (my !== chartSeq || destroyed) return; // a later call charts the newer view
    const metrics = [...new Set(runs.flatMap((r) => Object.keys(runCache.get(r.id).metrics || {})))].sort();
    const cgroups = view.group ? chartGroups(runs, byGroup) : null;
    const sig = runs.map((r) => r.id + ':' + r.name).join(',') + '|' + metrics.join(',') +
      (cgroups ? `|${view.group}|` + cgroups.map((g) => `${g.key}=${g.ids.join('+')}`).join(';') : '');
    chartInfo.textContent = runs.length ? `Charting ${why}` : '';
    if (sig === chartIds && !force) return;
    chartIds = sig;
    for (const p of panels.values()) { io.unobserve(p.el); p.destroy(); }
    panels.clear();
    const bySection = new Map();
    for (const m of metrics) {
      const s = sectionOf(m);
      if (!bySection.has(s)) bySection.set(s, []);
      bySection.get(s).push(m);
    }
    const secEls = [];
    for (const [name, ms] of [...bySection].sort((a, b) => (a[0] === 'Charts' ? -1 : b[0] === 'Charts' ? 1 : a[0].localeCompare(b[0])))) {
      const grid = h('div', { class: 'panels' });
      for (const m of ms) {
        const p = new Panel({ entity, project, metric: m, runs, groups: cgroups, view, onZoom: zoom });
        p.el.__panel = p;
        panels.set(m, p);
        grid.append(p.el);
      }
      const det = h('details', { class: 'section', open: !view.collapsed.has(name), dataset: { section: name } },
        h('summary', {}, name, h('span', { class: 'count' }, ` ${ms.length}`)), grid);
      det.addEventListener('toggle', () => {
        if (det.open) view.collapsed.delete(name); else view.collapsed.add(name);
        sync();
      });
      secEls.push(det);
    }
    put(sections, ...secEls);
    if (!runs.length) {
      put(sections, h('p', { class: 'muted' }, rows.length ? 'Every run is hidden from the charts.' : 'No runs to chart.'));
    } else if (!metrics.length) {
      put(sections, h('p', { class: 'muted', id: 'no-metrics' }, 'The charted runs have not logged any metrics yet.'));
    }
    filterPanels();
    for (const p of panels.values()) io.observe(p.el);
  }

  function filterPanels() {
    let re = null;
    try { re = view.ps ? new RegExp(view.ps, 'i') : null; } catch { re = null; }
    const term = view.ps.toLowerCase();
    for (const [m, p] of panels) p.el.hidden = !!view.ps && !(re ? re.test(m) : m.toLowerCase().includes(term));
    for (const det of sections.querySelectorAll('details.section')) det.hidden = ![...det.querySelectorAll('.panel')].some((el) => !el.hidden);
  }

  const onResize = debounce(() => { for (const p of panels.values()) p.resize(); }, 150);
  window.addEventListener('resize', onResize);

  // ----- live: changed runs patch the table and re-ask the charts
  const onLive = (changed, added) => {
    if (destroyed) return;
    const byId = new Map(changed.map((r) => [r.id, r]));
    if (view.group) { loadRuns({ quiet: true }).then(() => refreshCharted(byId)); return; }
    if (added) { loadRuns({ quiet: true }); return; }
    let redrawTable = false;
    rows = rows.map((r) => {
      const n = byId.get(r.id);
      if (n) redrawTable = true;
      return n || r;
    });
    if (redrawTable) drawTable();
    refreshCharted(byId);
  };

  // refreshCharted re-asks the panels for the charted runs that changed
  // (in a grouped chart, a group's mean follows its logging runs).
  async function refreshCharted(byId) {
    if (destroyed) return;
    const charted = new Set((await chartedRuns()).ids.filter((id) => byId.has(id)));
    if (!charted.size) return;
    const before = chartIds;
    await updateCharts(false, charted);
    if (chartIds !== before) return; // rebuilt: the new panels load by themselves
    for (const p of panels.values()) if (p.loaded) p.load(charted).catch(() => {});
  }

  drawChips();
  // The stream starts at the sequence read before the first load, so a
  // change in between is replayed rather than lost.
  currentSeq(entity, project).then((since) => {
    if (destroyed) return;
    loadRuns();
    stopLive = watchProject(entity, project, () => apiParams({ ...view, cursor: '' }), onLive, since);
  }).catch(() => {});

  const el = h('div', { class: 'page workspace' }, head,
    h('div', { class: 'toolbar wrap' }, searchIn, filterForm, h('span', { class: 'spacer' }), groupSel, h('div', { class: 'popover-anchor' }, pickBtn, picker)),
    chips, runsErr, tableBox, h('div', { class: 'table-foot' }, selInfo, pager),
    h('div', { class: 'toolbar wrap charts-toolbar' },
      h('h3', {}, 'Charts'), chartInfo, h('span', { class: 'spacer' }), panelSearch,
      h('label', { class: 'ctl-label' }, 'Smoothing ', smoothIn, smoothOut), smodeSel,
      h('label', { class: 'ctl-label' }, 'X ', xSel),
      h('label', { class: 'ctl-label' }, logIn, ' Log scale'), groupCtl, resetZoom),
    sections);
  return {
    el,
    destroy() {
      destroyed = true;
      stopLive?.();
      io.disconnect();
      window.removeEventListener('resize', onResize);
      for (const p of panels.values()) p.destroy();
    },
  };

  // ----- the project as it was
  function asofView() {
    const box = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    const back = () => { view.asof = ''; sync(); app.navigate(location.pathname + location.search, { replace: true }); };
    (async () => {
      try {
        const a = await api(`${projectPath(entity, project)}/asof?time=${enc(view.asof)}`);
        const runs = a.runs || [];
        const sumKeys = [...new Set(runs.flatMap((r) => Object.keys(r.summary || {})))].sort().slice(0, 12);
        put(box, 
          h('h3', {}, 'Members'),
          (a.members || []).length ? h('table', { class: 'grid', id: 'asof-members' },
            h('thead', {}, h('tr', {}, h('th', {}, 'Member'), h('th', {}, 'Role'))),
            h('tbody', {}, a.members.map((m) => h('tr', {}, h('td', {}, m.username || m.email), h('td', {}, m.pending ? `${m.role} (invited)` : m.role))))) : h('p', { class: 'muted' }, 'No members at that time: the project did not exist yet.'),
          h('h3', {}, `Runs (${runs.length})`),
          runs.length ? h('table', { class: 'grid runs', id: 'asof-runs' },
            h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'State'), h('th', {}, 'Owner'), h('th', {}, 'Job type'), h('th', {}, 'Created'), sumKeys.map((k) => h('th', {}, 'summary.' + k)))),
            h('tbody', {}, runs.map((r) => h('tr', { dataset: { run: r.id } }, h('th', { scope: 'row' }, r.name), h('td', {}, cell(r, 'state')), h('td', {}, r.owner), h('td', {}, r.job_type || ''), h('td', {}, fmtTime(r.created_at)),
              sumKeys.map((k) => h('td', { class: 'num' }, fmtValue(r.summary?.[k]))))))) : h('p', { class: 'muted' }, 'No runs at that time.'));
        banner.querySelector('.seq').textContent = ` (log position ${a.seq})`;
      } catch (e) {
        put(box, h('p', { class: 'error', role: 'alert' }, e.message));
      }
    })();
    const banner = h('div', { class: 'notice asof-banner', id: 'asof-banner', role: 'status' },
      h('strong', {}, `The project as it was at ${fmtTime(view.asof)}`), h('span', { class: 'seq' }),
      ': members, runs and their summaries then. Charts and run pages show the present. ',
      h('button', { id: 'asof-back', onclick: back }, 'Back to now'));
    return { el: h('div', { class: 'page workspace' }, head, banner, box) };
  }
}
