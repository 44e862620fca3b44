// The run page: header fields, config and summary as searchable tables
// (nested keys flattened), the run's charts, console output with a live
// tail, and history export.

import { api, auth, enc, projectPath } from './api.js';
import { h, put, fmtValue, fmtTime, fmtDuration, fmtAgo, flatten, runColor, runDuration } from './util.js';
import { Panel, sectionOf } from './chart.js';
import { watchRun, currentSeq } from './live.js';

const LINES_PAGE = 1000;

export function runPage(app, entity, project, id, q) {
  const base = `/w/${enc(entity)}/${enc(project)}`;
  const path = `${projectPath(entity, project)}/runs/${enc(id)}`;
  app.crumbs(h('a', { href: '/' }, 'Projects'), h('span', {}, entity), h('a', { href: base }, project), h('span', {}, 'run'));
  const el = h('div', { class: 'page run-page' }, h('p', { class: 'muted' }, 'Loading…'));
  const view = { xaxis: 'step', smooth: 0, smode: 'twema', log: false, zoom: null };
  const panels = [];
  let stop = null;
  let run = null;

  const headerBox = h('div', { id: 'run-header' });
  const configBox = h('div', {});
  const summaryBox = h('div', {});
  const chartsBox = h('div', { class: 'panels', id: 'run-charts' });
  const consoleBox = h('pre', { class: 'console', id: 'console', tabindex: 0, 'aria-label': 'Console output' });
  const consoleInfo = h('p', { class: 'muted small', id: 'console-info' });
  const filesBox = h('div', { id: 'files' });
  const lines = new Map(); // n -> text

  function field(label, value, id) {
    return value === '' || value == null ? null : h('div', { class: 'field' }, h('dt', {}, label), h('dd', { dataset: id ? { field: id } : {} }, value));
  }

  function drawHeader() {
    const r = run;
    const end = r.state === 'running' ? null : r.updated_at;
    document.title = `${r.name} · ${project} · Logbook`;
    put(headerBox, 
      h('div', { class: 'toolbar' },
        h('i', { class: 'swatch big', style: `background:${runColor(r.id)}` }),
        h('h2', { id: 'run-name' }, r.name),
        h('span', { class: `state state-${r.state}`, id: 'run-state' }, r.state),
        h('span', { class: 'spacer' }),
        h('button', { onclick: () => exportRun('csv') }, 'Export CSV'),
        h('button', { onclick: () => exportRun('ndjson') }, 'Export NDJSON')),
      r.notes ? h('p', { class: 'notes' }, r.notes) : null,
      h('dl', { class: 'fields' },
        field('Run id', h('code', {}, r.id)),
        field('Owner', r.owner, 'owner'),
        field('Job type', r.job_type, 'job_type'),
        field('Group', r.group, 'group'),
        field('Tags', (r.tags || []).length ? r.tags.map((t) => h('span', { class: 'tag' }, t)) : null, 'tags'),
        field('Started', fmtTime(r.created_at), 'started'),
        field(r.state === 'crashed' ? 'Crashed at' : 'Ended', end ? fmtTime(end) : null, 'ended'),
        field('Duration', fmtDuration(runDuration(r)) + (r.state === 'running' ? ' so far' : ''), 'duration'),
        field('Exit code', r.exit_code != null ? String(r.exit_code) : null, 'exit_code'),
        field('Last activity', r.state === 'running' ? `${fmtAgo(r.updated_at)} (${fmtTime(r.updated_at)})` : null, 'last_activity'),
        field('Last step', r.last_step >= 0 ? String(r.last_step) : null, 'last_step'),
        field('History rows', String(r.history_rows ?? 0), 'rows')));
  }

  function kvTable(title, obj, idp) {
    const flat = Object.entries(obj).sort((a, b) => a[0].localeCompare(b[0]));
    const search = h('input', { type: 'search', id: `${idp}-search`, placeholder: `Search ${title.toLowerCase()}`, 'aria-label': `Search ${title.toLowerCase()}` });
    const tbody = h('tbody', {});
    const draw = () => {
      const t = search.value.toLowerCase();
      put(tbody, ...flat.filter(([k, v]) => !t || k.toLowerCase().includes(t) || fmtValue(v).toLowerCase().includes(t))
        .map(([k, v]) => h('tr', { dataset: { key: k } }, h('th', { scope: 'row' }, k), h('td', {}, fmtValue(v)))));
    };
    search.addEventListener('input', draw);
    draw();
    return [h('div', { class: 'toolbar' }, h('h3', {}, title), h('span', { class: 'count muted' }, `${flat.length}`), h('span', { class: 'spacer' }), search),
      flat.length ? h('table', { class: 'grid kv', id: `${idp}-table` }, tbody) : h('p', { class: 'muted' }, `No ${title.toLowerCase()}.`)];
  }

  function drawTables() {
    put(configBox, ...kvTable('Config', flatten(run.config || {}), 'config'));
    put(summaryBox, ...kvTable('Summary', run.summary || {}, 'summary'));
  }

  function drawCharts() {
    for (const p of panels) p.destroy();
    panels.length = 0;
    const metrics = Object.keys(run.metrics || {}).sort((a, b) => sectionOf(a).localeCompare(sectionOf(b)) || a.localeCompare(b));
    const runs = [{ id: run.id, name: run.name, color: runColor(run.id), created_at: run.created_at }];
    for (const m of metrics) {
      const p = new Panel({ entity, project, metric: m, runs, view, onZoom: (z) => { view.zoom = z; for (const x of panels) x.load().catch(() => {}); } });
      panels.push(p);
    }
    put(chartsBox, ...(panels.length ? panels.map((p) => p.el) : [h('p', { class: 'muted' }, 'No metrics logged yet.')]));
    for (const p of panels) p.load().catch(() => {});
  }

  async function loadLines(from) {
    const res = await api(`${path}/lines?file=output.log&offset=${from}&limit=${LINES_PAGE}`);
    for (const l of res.lines) lines.set(l.n, l.text);
    return res;
  }

  function drawConsole() {
    const ns = [...lines.keys()].sort((a, b) => a - b);
    const atBottom = consoleBox.scrollTop + consoleBox.clientHeight >= consoleBox.scrollHeight - 4;
    put(consoleBox, ...ns.map((n) => h('div', { class: 'line', dataset: { n } }, h('span', { class: 'ln' }, String(n + 1)), lines.get(n))));
    const count = run.lines?.['output.log'] || 0;
    consoleBox.hidden = ns.length === 0;
    consoleInfo.textContent = count ? `${count} line${count === 1 ? '' : 's'} of output.log${count > ns.length ? ` (showing the last ${ns.length})` : ''}` : 'No console output (output.log) for this run.';
    if (atBottom) consoleBox.scrollTop = consoleBox.scrollHeight;
  }

  async function loadFiles() {
    let res;
    try {
      res = await api(`${path}/files`);
    } catch (e) {
      put(filesBox, h('p', { class: 'muted' }, `Files: ${e.message}`));
      return;
    }
    const files = res.files || [];
    put(filesBox, files.length ? h('table', { class: 'grid', id: 'files-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'File'), h('th', { class: 'num' }, 'Size'), h('th', {}, 'Updated'))),
      h('tbody', {}, files.map((f) => h('tr', { dataset: { file: f.name } },
        h('td', {}, h('button', { class: 'link', onclick: () => download(`${path}/files/${f.name.split('/').map(enc).join('/')}`, f.name.split('/').pop()) }, f.name)),
        h('td', { class: 'num' }, f.size.toLocaleString('en-US') + ' B'), h('td', {}, fmtTime(f.updated_at))))))
      : h('p', { class: 'muted' }, 'No files uploaded for this run (W&B clients upload config.yaml, requirements.txt, saved files).'));
  }

  async function exportRun(format) {
    return download(`${path}/export?format=${format}`, `${run.id}.${format}`);
  }

  // download fetches with the key (a plain link cannot send it) and saves.
  async function download(apiPath, name) {
    try {
      const res = await fetch(`/api/v1${apiPath}`, { headers: { Authorization: 'Bearer ' + auth.key } });
      if (!res.ok) throw new Error((await res.json().catch(() => ({}))).error?.message || res.statusText);
      const url = URL.createObjectURL(await res.blob());
      const a = h('a', { href: url, download: name });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (e) { app.flash(`Download failed: ${e.message}`); }
  }

  (async () => {
    let since = '';
    try {
      since = await currentSeq(entity, project);
      run = await api(path);
      const count = run.lines?.['output.log'] || 0;
      await loadLines(Math.max(0, count - LINES_PAGE));
    } catch (e) {
      put(el, h('p', { class: 'error', role: 'alert' }, e.status === 404 ? `Run ${id} not found in ${entity}/${project}.` : e.message));
      return;
    }
    drawHeader();
    drawTables();
    put(el, headerBox,
      h('div', { class: 'two-col' }, h('section', { id: 'config' }, configBox), h('section', { id: 'summary' }, summaryBox)),
      h('h3', {}, 'Charts'), chartsBox,
      h('h3', {}, 'Console output'), consoleInfo, consoleBox,
      h('h3', {}, 'Files'), filesBox);
    loadFiles();
    drawCharts();
    drawConsole();
    stop = watchRun(entity, project, id, async (r) => {
      const newMetrics = Object.keys(r.metrics || {}).join() !== Object.keys(run.metrics || {}).join();
      const oldLines = run.lines?.['output.log'] || 0;
      run = r;
      drawHeader();
      drawTables();
      if (newMetrics) drawCharts(); else for (const p of panels) p.load().catch(() => {});
      const n = r.lines?.['output.log'] || 0;
      if (n !== oldLines) {
        // A rewritten line (a progress bar) may be just before the end.
        await loadLines(Math.max(0, Math.min(oldLines, n) - 5)).catch(() => {});
        drawConsole();
      }
    }, since);
  })();
  void q;
  return { el, destroy() { stop?.(); for (const p of panels) p.destroy(); } };
}
