// Project settings (members, invites, roles, delete, audit trail; Admins
// edit, everyone else reads) and the user's own API keys.

import { api, auth, enc, projectPath } from './api.js';
import { h, put, fmtTime } from './util.js';

const ROLES = ['admin', 'member', 'viewer'];

// confirmButton asks on the page, not in a dialog: the first press arms it,
// the second (within 5 s) acts.
function confirmButton(label, confirmLabel, action, attrs = {}) {
  let armed = false, t = 0;
  const b = h('button', { ...attrs, onclick: async () => {
    if (!armed) {
      armed = true;
      b.textContent = confirmLabel;
      b.classList.add('danger');
      t = setTimeout(() => { armed = false; b.textContent = label; b.classList.remove('danger'); }, 5000);
      return;
    }
    clearTimeout(t);
    b.disabled = true;
    try { await action(); } finally { b.disabled = false; armed = false; b.textContent = label; b.classList.remove('danger'); }
  } }, label);
  return b;
}

export function settingsPage(app, entity, project) {
  const base = `/w/${enc(entity)}/${enc(project)}`;
  const pp = projectPath(entity, project);
  document.title = `Settings · ${project} · Logbook`;
  app.crumbs(h('a', { href: '/' }, 'Projects'), h('span', {}, entity), h('a', { href: base }, project), h('span', {}, 'settings'));
  const membersBox = h('div', { id: 'members' }, h('p', { class: 'muted' }, 'Loading…'));
  const errBox = h('p', { class: 'error', role: 'alert', id: 'settings-error' });
  const okBox = h('p', { class: 'ok', role: 'status', id: 'settings-ok' });
  const auditBox = h('div', { id: 'audit' });
  const dangerBox = h('div', {});
  const inviteBox = h('div', {});
  let role = '';
  let seq = 0;

  const report = (msg) => { okBox.textContent = msg; errBox.textContent = ''; };
  const fail = (e) => {
    okBox.textContent = '';
    errBox.textContent = e.code === 'last_admin' ? `${e.message} Make someone else Admin first.` : e.message;
  };
  const write = async (path, opts, msg) => {
    try {
      const res = await api(path, opts);
      seq = res?.seq || seq;
      report(msg);
      await loadMembers();
    } catch (e) { fail(e); }
  };

  async function loadMembers() {
    const [p, members] = await Promise.all([api(`${pp}?min_seq=${seq}`), api(`${pp}/members?min_seq=${seq}`)]);
    role = p.role;
    const admin = role === 'admin';
    const me = app.me.username;
    put(membersBox, 
      admin ? null : h('p', { class: 'notice', id: 'read-only' }, `You are a ${role} of this project: only Admins can invite, change roles or remove members.`),
      h('table', { class: 'grid', id: 'members-table' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Member'), h('th', {}, 'Role'), h('th', {}, ''))),
        h('tbody', {}, members.map((m) => {
          const who = m.pending ? m.email : m.username;
          let roleCell;
          if (admin && !m.pending) {
            roleCell = h('select', { 'aria-label': `role of ${who}`, class: 'role-select', dataset: { user: who }, onchange: (e) =>
              write(`${pp}/members/${enc(who)}`, { method: 'PATCH', body: { role: e.target.value } }, `${who} is now ${e.target.value}.`) },
            ROLES.map((r) => h('option', { value: r, selected: r === m.role }, r)));
          } else roleCell = h('span', { class: `role role-${m.role}` }, m.role);
          let action = null;
          if (m.pending && admin) {
            action = confirmButton('Revoke invite', 'Really revoke?', () => write(`${pp}/invites/${enc(m.email)}`, { method: 'DELETE' }, `Invite of ${m.email} revoked.`), { 'aria-label': `revoke invite of ${who}` });
          } else if (!m.pending && m.username === me) {
            action = confirmButton('Leave', 'Really leave?', async () => {
              try {
                await api(`${pp}/members/${enc(me)}`, { method: 'DELETE' });
                app.navigate('/');
              } catch (e) { fail(e); }
            }, { 'aria-label': 'leave the project' });
          } else if (!m.pending && admin) {
            action = confirmButton('Remove', 'Really remove?', () => write(`${pp}/members/${enc(who)}`, { method: 'DELETE' }, `${who} was removed.`), { 'aria-label': `remove ${who}` });
          }
          return h('tr', { dataset: { member: who } },
            h('td', {}, who, m.pending ? h('span', { class: 'muted' }, ' (invited: joins when a user with this email exists)') : null, m.username === me ? h('span', { class: 'muted' }, ' (you)') : null),
            h('td', {}, roleCell), h('td', {}, action));
        }))));
    drawAdmin(admin);
  }

  function drawAdmin(admin) {
    if (!admin) {
      put(inviteBox, );
      put(dangerBox, );
      put(auditBox, h('p', { class: 'muted' }, 'The audit trail is for Admins.'));
      return;
    }
    if (!inviteBox.firstChild) {
      const who = h('input', { id: 'invite-who', placeholder: 'username or email', 'aria-label': 'Username or email to invite', required: true });
      const r = h('select', { id: 'invite-role', 'aria-label': 'Role' }, ROLES.map((x) => h('option', { value: x, selected: x === 'member' }, x)));
      put(inviteBox, h('form', { class: 'inline-form', id: 'invite-form', onsubmit: async (e) => {
        e.preventDefault();
        const v = who.value.trim();
        const body = v.includes('@') ? { email: v, role: r.value } : { username: v, role: r.value };
        await write(`${pp}/members`, { method: 'POST', body }, v.includes('@') ? `Invited ${v}: they join when a user with that email exists.` : `${v} joined as ${r.value}.`);
        if (!errBox.textContent) who.value = '';
      } }, h('strong', {}, 'Invite'), who, r, h('button', { type: 'submit', class: 'primary' }, 'Invite')));
      const confirmName = h('input', { id: 'delete-confirm', placeholder: project, 'aria-label': `Type ${project} to confirm` });
      put(dangerBox, h('h3', {}, 'Delete the project'),
        h('p', {}, 'Deleting removes the project and its runs from every view (the events stay in the log). Type the project name to confirm.'),
        h('form', { class: 'inline-form', onsubmit: async (e) => {
          e.preventDefault();
          if (confirmName.value !== project) { fail({ message: `Type ${project} to confirm.` }); return; }
          try {
            await api(pp, { method: 'DELETE' });
            app.navigate('/');
          } catch (ex) { fail(ex); }
        } }, confirmName, h('button', { type: 'submit', class: 'danger', id: 'delete-project' }, 'Delete project')));
      loadAudit();
    }
  }

  async function loadAudit(before) {
    try {
      const rows = await api(`${pp}/audit?limit=100${before ? `&before=${enc(before)}` : ''}`);
      const table = auditBox.querySelector('tbody') || null;
      const trs = rows.map((a) => h('tr', { class: a.accepted ? null : 'rejected' },
        h('td', { title: a.time }, fmtTime(a.time)), h('td', {}, a.actor), h('td', {}, a.type),
        h('td', {}, a.accepted ? 'accepted' : h('span', { class: 'error' }, `rejected: ${a.reason || a.code || ''}`)),
        h('td', {}, a.run || ''), h('td', { class: 'details' }, a.details ? JSON.stringify(a.details).slice(0, 200) : (a.message || ''))));
      const more = rows.length === 100 ? h('button', { id: 'audit-more', onclick: (e) => { e.target.remove(); loadAudit(rows[rows.length - 1].time); } }, 'Older') : null;
      if (table && before) { table.append(...trs); if (more) auditBox.append(more); return; }
      put(auditBox, h('table', { class: 'grid', id: 'audit-table' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Time'), h('th', {}, 'Actor'), h('th', {}, 'Event'), h('th', {}, 'Decision'), h('th', {}, 'Run'), h('th', {}, 'Details'))),
        h('tbody', {}, trs)), more);
    } catch (e) { put(auditBox, h('p', { class: 'error' }, e.message)); }
  }

  loadMembers().catch((e) => put(membersBox, h('p', { class: 'error', role: 'alert' }, e.status === 404 ? `Project ${entity}/${project} not found.` : e.message)));
  return { el: h('div', { class: 'page' },
    h('div', { class: 'toolbar' }, h('h2', {}, project),
      h('nav', { class: 'tabs' }, h('a', { href: base }, 'Workspace'), h('a', { href: `${base}/settings`, class: 'active', 'aria-current': 'page' }, 'Settings'))),
    errBox, okBox,
    h('h3', {}, 'Members'), inviteBox, membersBox, dangerBox,
    h('h3', {}, 'Audit trail'), auditBox) };
}

export function keysPage(app) {
  const me = app.me.username;
  document.title = 'API keys · Logbook';
  app.crumbs(h('a', { href: '/' }, 'Projects'), h('span', {}, 'API keys'));
  const listBox = h('div', { id: 'keys' }, h('p', { class: 'muted' }, 'Loading…'));
  const shown = h('div', { id: 'new-key', role: 'status' });
  const err = h('p', { class: 'error', role: 'alert' });
  const name = h('input', { id: 'key-name', placeholder: 'name (e.g. laptop, ci)', 'aria-label': 'Key name', required: true });

  async function load() {
    const keys = await api(`/users/${enc(me)}/keys`);
    put(listBox, keys.length ? h('table', { class: 'grid', id: 'keys-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Id'), h('th', {}, 'Created'), h('th', {}, ''))),
      h('tbody', {}, keys.map((k) => h('tr', { dataset: { key: k.id } }, h('td', {}, k.name), h('td', {}, h('code', {}, k.id)), h('td', {}, fmtTime(k.created)),
        h('td', {}, confirmButton('Revoke', 'Really revoke?', async () => {
          try {
            await api(`/users/${enc(me)}/keys/${enc(k.id)}`, { method: 'DELETE' });
            await load().catch(() => {}); // a revoked own key signs out
          } catch (e) { err.textContent = e.message; }
        }, { 'aria-label': `revoke key ${k.name}` })))))) : h('p', { class: 'muted' }, 'No keys.'));
  }

  const form = h('form', { class: 'inline-form', id: 'key-form', onsubmit: async (e) => {
    e.preventDefault();
    err.textContent = '';
    try {
      const k = await api(`/users/${enc(me)}/keys`, { method: 'POST', body: { name: name.value.trim() } });
      name.value = '';
      const code = h('code', { id: 'new-key-value' }, k.key);
      put(shown, h('div', { class: 'notice' },
        h('p', {}, h('strong', {}, `Key "${k.name}" created. `), 'Copy it now: it is shown once, and Logbook keeps only its hash.'),
        h('p', {}, code, ' ', h('button', { onclick: () => navigator.clipboard?.writeText(k.key).catch(() => {}) }, 'Copy'))));
      await load();
    } catch (ex) { err.textContent = ex.message; }
  } }, h('strong', {}, 'New key'), name, h('button', { type: 'submit', class: 'primary' }, 'Create'));

  load().catch((e) => put(listBox, h('p', { class: 'error' }, e.message)));
  void auth;
  return { el: h('div', { class: 'page' }, h('h2', {}, 'Your API keys'),
    h('p', { class: 'muted' }, `Keys of ${me}. Use one as WANDB_API_KEY or LOGBOOK_API_KEY; revoking it stops it at once.`),
    form, err, shown, listBox) };
}
