// Live updates of what is on screen: one Server-Sent Events stream per
// page (GET .../events, with the view's filters and columns), read with
// fetch because EventSource cannot send the Authorization header. Each
// event carries the runs that changed, with their new documents, and the
// total of matching runs; after a dropped connection the stream resumes
// from the last event's id (Last-Event-ID), so nothing is missed. A server
// without the stream (404) is polled once a second instead.

import { auth, searchRuns, api, enc, projectPath } from './api.js';

export const POLL_MS = 1000;
const RETRY_MS = 1000;

// currentSeq answers the read model's sequence now (or '' for a server
// without the stream). A page asks for it before it loads its data and
// starts its stream there: a change between the load and the stream's
// start is then replayed, not lost.
export async function currentSeq(entity, project) {
  try {
    const d = await api(`${projectPath(entity, project)}/events?once=1&fields=name`);
    return String(d.seq);
  } catch (e) {
    if (e.status === 401) throw e;
    return '';
  }
}

// watchProject calls onChange(changedRuns, totalChanged) for the runs of
// the search paramsFn() answers that change after sequence since.
export function watchProject(entity, project, paramsFn, onChange, since = '') {
  let stopped = false;
  let ac = null;
  let lastId = since;
  let total = null;
  let timer = 0;

  async function stream() {
    if (stopped) return;
    ac = new AbortController();
    const p = paramsFn();
    for (const k of ['sort', 'limit', 'cursor']) p.delete(k);
    try {
      const headers = { Authorization: 'Bearer ' + auth.key };
      if (lastId) headers['Last-Event-ID'] = lastId;
      const res = await fetch(`/api/v1${projectPath(entity, project)}/events?${p}`, { headers, signal: ac.signal });
      if (res.status === 404) return poll();
      if (!res.ok) throw new Error('HTTP ' + res.status);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          handle(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      }
    } catch (e) {
      if (stopped || e.name === 'AbortError') return;
    }
    if (!stopped) timer = setTimeout(stream, RETRY_MS);
  }

  function handle(block) {
    let id = '', ev = 'message', data = '';
    for (const line of block.split('\n')) {
      if (line.startsWith('id: ')) id = line.slice(4);
      else if (line.startsWith('event: ')) ev = line.slice(7);
      else if (line.startsWith('data: ')) data += line.slice(6);
    }
    if (ev !== 'runs' || !data) return;
    const d = JSON.parse(data);
    if (id) lastId = id;
    const first = total === null;
    const totalChanged = !first && d.total !== total;
    total = d.total;
    if (d.more) onChange([], true);
    else if (d.runs.length || totalChanged) onChange(d.runs, totalChanged);
  }

  // poll: for a server without the stream.
  async function poll() {
    const seen = new Map();
    const tick = async () => {
      if (stopped) return;
      if (!document.hidden) {
        try {
          const p = paramsFn();
          p.set('sort', '-updated_at');
          p.set('limit', '50');
          p.delete('cursor');
          const page = await searchRuns(entity, project, p);
          const first = total === null;
          const changed = page.runs.filter((r) => seen.get(r.id) !== r.updated_at);
          for (const r of page.runs) seen.set(r.id, r.updated_at);
          const added = !first && page.total !== total;
          total = page.total;
          if (!stopped && !first && (changed.length || added)) onChange(changed, added);
        } catch { /* retried */ }
      }
      if (!stopped) timer = setTimeout(tick, POLL_MS);
    };
    tick();
  }

  stream();
  return () => { stopped = true; clearTimeout(timer); ac?.abort(); };
}

// watchRun follows one run (its id as the search) and calls onChange with
// its full document when it changed.
export function watchRun(entity, project, id, onChange, since = '') {
  const stop = watchProject(entity, project, () => new URLSearchParams({ search: id, fields: 'name' }), async (runs) => {
    if (!runs.some((r) => r.id === id)) return;
    try { onChange(await api(`${projectPath(entity, project)}/runs/${enc(id)}`)); } catch { /* retried on the next change */ }
  }, since);
  return stop;
}
