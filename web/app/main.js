// Logbook's web workspace: a client-side router over /w/... paths (the
// whole view is in the URL, so a link shows the same thing to a teammate),
// the header with sign-in state, and the sign-in page.

import { api, auth, setUnauthorizedHandler } from './api.js';
import { h, put } from './util.js';
import { projectsPage } from './projects.js';
import { workspacePage } from './workspace.js';
import { runPage } from './run.js';
import { comparePage } from './compare.js';
import { settingsPage, keysPage } from './settings.js';

const root = document.getElementById('app');
const who = document.getElementById('who');
const crumbs = document.getElementById('crumbs');
let current = null; // the page shown: {el, destroy}
let me = null;

export const app = {
  get me() { return me; },
  navigate(url, { replace = false } = {}) {
    if (replace) history.replaceState(null, '', url);
    else history.pushState(null, '', url);
    render();
  },
  // setQuery rewrites the URL's query without a new history entry and
  // without rendering again (the page updates itself).
  setQuery(params) {
    const s = params.toString();
    history.replaceState(null, '', location.pathname + (s ? '?' + s : ''));
  },
  crumbs(...parts) {
    put(crumbs, ...parts.flatMap((p, i) => [i ? h('span', { class: 'sep' }, '/') : null, p]));
  },
  flash(msg, kind = 'error') {
    const el = h('div', { class: `flash ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, msg,
      h('button', { class: 'link', 'aria-label': 'dismiss', onclick: () => el.remove() }, '×'));
    document.getElementById('flash').replaceChildren(el);
  },
};

setUnauthorizedHandler((err) => {
  auth.clear();
  me = null;
  signIn(`Signed out: ${err.message}.`);
});

// Links inside the app navigate without a reload.
document.addEventListener('click', (e) => {
  const a = e.target.closest('a[href]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || a.target) return;
  const url = new URL(a.href);
  if (url.origin !== location.origin || !(url.pathname === '/' || url.pathname.startsWith('/w/'))) return;
  e.preventDefault();
  app.navigate(url.pathname + url.search);
});
window.addEventListener('popstate', () => render());

function renderWho() {
  if (!me) {
    put(who, );
    return;
  }
  put(who, 
    h('span', { class: 'muted' }, 'Signed in as '), h('strong', { id: 'whoami' }, me.username),
    h('a', { href: '/w/_keys' }, 'API keys'),
    h('button', { id: 'signout', class: 'link', onclick: signOut }, 'Sign out'));
}

function signOut() {
  auth.clear();
  me = null;
  signIn('Signed out. Your key was removed from this browser.');
}

function show(page) {
  current?.destroy?.();
  current = page;
  put(root, page.el);
  document.getElementById('flash').replaceChildren();
}

function signIn(message) {
  renderWho();
  app.crumbs();
  document.title = 'Sign in · Logbook';
  const input = h('input', { id: 'key', type: 'password', autocomplete: 'off', spellcheck: 'false', placeholder: 'lb-…', required: true, 'aria-describedby': 'key-help' });
  const err = h('p', { class: 'error', role: 'alert', id: 'signin-error' });
  const form = h('form', { class: 'card signin', onsubmit: async (e) => {
    e.preventDefault();
    err.textContent = '';
    const key = input.value.trim();
    try {
      const user = await api('/whoami', { key });
      auth.save(key); // saved only once the server accepted it
      me = user;
      render();
    } catch (ex) {
      err.textContent = ex.status === 401 ? 'That key was not accepted (invalid or revoked). Nothing was saved.' : `Could not sign in: ${ex.message}`;
    }
  } },
  h('h2', {}, 'Sign in to Logbook'),
  message ? h('p', { class: 'notice', role: 'status' }, message) : null,
  h('label', { for: 'key' }, 'API key'), input,
  h('div', { id: 'key-help', class: 'muted small' },
    h('p', {}, 'A key comes from your Logbook admin (', h('code', {}, 'logbook key create <your-username>'),
      ') or from API keys in this UI once you are signed in. The first start of ', h('code', {}, 'logbook'),
      ' prints the site admin\'s key. The key stays in this browser\'s local storage until you sign out.')),
  err,
  h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  show({ el: h('div', { class: 'page narrow' }, form) });
  input.focus();
}

async function render() {
  if (!auth.key) return signIn();
  if (!me) {
    try {
      me = await api('/whoami');
    } catch (e) {
      if (e.status !== 401) {
        show({ el: h('div', { class: 'page' }, h('p', { class: 'error' }, `Cannot reach Logbook: ${e.message}`)) });
      }
      return;
    }
  }
  renderWho();
  const parts = location.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const q = new URLSearchParams(location.search);
  let page;
  if (parts.length === 0 || (parts.length === 1 && parts[0] === 'w')) page = projectsPage(app, q);
  else if (parts[0] === 'w' && parts[1] === '_keys' && parts.length === 2) page = keysPage(app);
  else if (parts[0] === 'w' && parts.length === 3) page = workspacePage(app, parts[1], parts[2], q);
  else if (parts[0] === 'w' && parts.length === 5 && parts[3] === 'runs') page = runPage(app, parts[1], parts[2], parts[4], q);
  else if (parts[0] === 'w' && parts.length === 4 && parts[3] === 'compare') page = comparePage(app, parts[1], parts[2], q);
  else if (parts[0] === 'w' && parts.length === 4 && parts[3] === 'settings') page = settingsPage(app, parts[1], parts[2], q);
  else page = { el: h('div', { class: 'page' }, h('h2', {}, 'Not found'), h('p', {}, h('a', { href: '/' }, 'Your projects'))) };
  show(page);
}

render();
