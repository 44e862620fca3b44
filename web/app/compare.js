// Compare: the chosen runs' config and summary side by side, with a
// diff-only toggle (kept in the URL) that hides keys where every run agrees.

import { api, enc, projectPath } from './api.js';
import { h, put, fmtValue, flatten, runColor } from './util.js';

export function comparePage(app, entity, project, q) {
  const base = `/w/${enc(entity)}/${enc(project)}`;
  const ids = (q.get('runs') || '').split(',').filter(Boolean).slice(0, 100);
  let diffOnly = q.get('diff') === '1';
  document.title = `Compare · ${project} · Logbook`;
  app.crumbs(h('a', { href: '/' }, 'Projects'), h('span', {}, entity), h('a', { href: base }, project), h('span', {}, 'compare'));
  const box = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const toggle = h('input', { type: 'checkbox', id: 'diff-only', checked: diffOnly });
  let runs = [];

  function section(title, get) {
    const keys = [...new Set(runs.flatMap((r) => Object.keys(get(r))))].sort();
    const rows = keys.map((k) => {
      const vals = runs.map((r) => fmtValue(get(r)[k]));
      return { k, vals, same: vals.every((v) => v === vals[0]) };
    });
    const shown = diffOnly ? rows.filter((r) => !r.same) : rows;
    return [h('h3', {}, `${title} `, h('span', { class: 'muted small' }, diffOnly ? `${shown.length} of ${rows.length} keys differ` : `${rows.length} keys`)),
      h('table', { class: 'grid compare', id: `compare-${title.toLowerCase()}` },
        h('thead', {}, h('tr', {}, h('th', {}, 'Key'), runs.map((r) => h('th', { scope: 'col' }, h('i', { class: 'swatch', style: `background:${runColor(r.id)}` }), h('a', { href: `${base}/runs/${enc(r.id)}` }, r.name))))),
        h('tbody', {}, shown.map((row) => h('tr', { class: row.same ? null : 'differs', dataset: { key: row.k } },
          h('th', { scope: 'row' }, row.k), row.vals.map((v) => h('td', {}, v))))))];
  }

  function draw() {
    const flat = new Map(runs.map((r) => [r.id, flatten(r.config || {})]));
    put(box, ...section('Config', (r) => flat.get(r.id)), ...section('Summary', (r) => r.summary || {}));
  }
  toggle.addEventListener('change', () => {
    diffOnly = toggle.checked;
    const p = new URLSearchParams(location.search);
    if (diffOnly) p.set('diff', '1'); else p.delete('diff');
    app.setQuery(p);
    draw();
  });

  (async () => {
    if (ids.length < 2) {
      put(box, h('p', {}, 'Select two or more runs in the ', h('a', { href: base }, 'workspace'), ' and press Compare.'));
      return;
    }
    const got = await Promise.all(ids.map((id) => api(`${projectPath(entity, project)}/runs/${enc(id)}`).catch((e) => ({ id, error: e.message }))));
    const bad = got.filter((r) => r.error);
    runs = got.filter((r) => !r.error);
    draw();
    if (bad.length) app.flash(`Not shown: ${bad.map((r) => `${r.id} (${r.error})`).join(', ')}`);
  })().catch((e) => put(box, h('p', { class: 'error' }, e.message)));

  return { el: h('div', { class: 'page' },
    h('div', { class: 'toolbar' }, h('h2', {}, `Compare ${ids.length} runs`), h('span', { class: 'spacer' }),
      h('label', {}, toggle, ' Differences only')), box) };
}
