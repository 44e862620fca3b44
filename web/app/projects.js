// The projects list: search, your role, run count, last activity, and a
// form to create a project.

import { api, enc, searchRuns } from './api.js';
import { h, put, fmtAgo, fmtTime, pool } from './util.js';

export function projectsPage(app, q) {
  document.title = 'Projects · Logbook';
  app.crumbs(h('a', { href: '/' }, 'Projects'));
  const search = h('input', { type: 'search', id: 'project-search', placeholder: 'Search projects', 'aria-label': 'Search projects', value: q.get('q') || '' });
  const list = h('div', { id: 'projects' }, h('p', { class: 'muted' }, 'Loading…'));
  const entity = h('input', { id: 'new-entity', value: app.me.username, 'aria-label': 'Entity (you or a team)', size: 14 });
  const name = h('input', { id: 'new-project', placeholder: 'project-name', 'aria-label': 'Project name', required: true, pattern: '[A-Za-z0-9][A-Za-z0-9_\\-]{0,63}' });
  const err = h('span', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'inline-form', onsubmit: async (e) => {
    e.preventDefault();
    err.textContent = '';
    try {
      await api('/projects', { method: 'POST', body: { entity: entity.value.trim(), name: name.value.trim() } });
      app.navigate(`/w/${enc(entity.value.trim())}/${enc(name.value.trim())}`);
    } catch (ex) { err.textContent = ex.message; }
  } }, h('strong', {}, 'New project'), entity, h('span', {}, '/'), name, h('button', { type: 'submit' }, 'Create'), err);

  let projects = [];
  const lastActivity = new Map();
  const draw = () => {
    const term = search.value.trim().toLowerCase();
    const shown = projects.filter((p) => `${p.entity}/${p.name}`.toLowerCase().includes(term));
    if (!projects.length) {
      put(list, h('div', { class: 'empty card' },
        h('h3', {}, 'No projects yet'),
        h('p', {}, 'Create one above, or just start logging: a W&B ', h('code', {}, 'wandb.init(project="…")'),
          ' pointed at this server creates the project on its first run (in your own entity, or a team you belong to).')));
      return;
    }
    put(list, h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Project'), h('th', {}, 'Your role'), h('th', { class: 'num' }, 'Runs'), h('th', {}, 'Last activity'), h('th', {}, 'Created'))),
      h('tbody', {}, shown.map((p) => {
        const key = `${p.entity}/${p.name}`;
        const la = lastActivity.get(key);
        return h('tr', { dataset: { project: key } },
          h('td', {}, h('a', { href: `/w/${enc(p.entity)}/${enc(p.name)}` }, h('span', { class: 'muted' }, p.entity + ' / '), h('strong', {}, p.name))),
          h('td', {}, h('span', { class: `role role-${p.role}` }, p.role)),
          h('td', { class: 'num' }, String(p.run_count ?? 0)),
          h('td', { title: la ? fmtTime(la) : '' }, la ? fmtAgo(la) : p.run_count ? '…' : '—'),
          h('td', {}, fmtTime(p.created_at)));
      }))),
    shown.length ? null : h('p', { class: 'muted' }, `No project matches "${search.value}".`));
  };
  search.addEventListener('input', () => {
    const p = new URLSearchParams(location.search);
    if (search.value) p.set('q', search.value); else p.delete('q');
    app.setQuery(p);
    draw();
  });

  (async () => {
    try {
      projects = await api('/projects');
      projects.sort((a, b) => `${a.entity}/${a.name}`.localeCompare(`${b.entity}/${b.name}`));
      draw();
      // Last activity: the most recently updated run of each project.
      await pool(projects.filter((p) => p.run_count).slice(0, 100).map((p) => async () => {
        try {
          const { runs } = await searchRuns(p.entity, p.name, new URLSearchParams({ sort: '-updated_at', limit: '1' }));
          if (runs[0]) lastActivity.set(`${p.entity}/${p.name}`, runs[0].updated_at);
        } catch { /* the list still shows */ }
      }), 4);
      draw();
    } catch (e) {
      put(list, h('p', { class: 'error' }, e.message));
    }
  })();
  return { el: h('div', { class: 'page' }, h('div', { class: 'toolbar' }, h('h2', {}, 'Projects'), search), form, list) };
}
