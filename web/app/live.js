// Live updates of what is on screen. The API has no push stream yet, so
// this polls, once a second while the tab is visible, the most recently
// updated runs of the view's search (sort=-updated_at, 50 runs): a run whose
// updated_at moved (state change, new steps, new summary) is handed to the
// page with its new document, and a change of the total (a run started or
// deleted) asks the page to reload. One cheap request a second per tab,
// whatever the number of runs on screen.

import { searchRuns, api, enc, projectPath } from './api.js';

export const POLL_MS = 1000;

export function watchProject(entity, project, paramsFn, onChange) {
  const seen = new Map(); // run id -> updated_at
  let total = null;
  let stopped = false;
  let timer = 0;
  async function tick() {
    if (stopped) return;
    if (!document.hidden) {
      try {
        const p = paramsFn();
        p.set('sort', '-updated_at');
        p.set('limit', '50');
        p.delete('cursor');
        const page = await searchRuns(entity, project, p);
        if (stopped) return;
        const first = total === null;
        const changed = page.runs.filter((r) => seen.get(r.id) !== r.updated_at);
        for (const r of page.runs) seen.set(r.id, r.updated_at);
        const added = !first && page.total !== total;
        total = page.total;
        if (!first && (changed.length || added)) onChange(changed, added);
      } catch { /* a failed poll is retried; auth errors sign out in api() */ }
    }
    timer = setTimeout(tick, POLL_MS);
  }
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

// watchRun polls one run's document; onChange gets it when updated_at moved.
export function watchRun(entity, project, id, onChange) {
  let last = null;
  let stopped = false;
  let timer = 0;
  async function tick() {
    if (stopped) return;
    if (!document.hidden) {
      try {
        const r = await api(`${projectPath(entity, project)}/runs/${enc(id)}`);
        if (stopped) return;
        if (last !== null && r.updated_at !== last) onChange(r);
        last = r.updated_at;
      } catch { /* retried */ }
    }
    timer = setTimeout(tick, POLL_MS);
  }
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}
