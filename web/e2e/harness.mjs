// Test harness of the browser tests and the benchmark: builds and starts a
// real logbook (temp data dir, free ports), seeds it through the HTTP API,
// and drives Debian's chromium with playwright-core. A console error or an
// uncaught exception in the page fails the test; screenshots go to a temp
// dir whose path is printed once.

import { chromium } from 'playwright-core';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CHROMIUM = process.env.LOGBOOK_CHROMIUM || '/usr/bin/chromium';
// Flags for a machine without network access to anything but the server.
export const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--no-first-run', '--disable-sync', '--disable-dev-shm-usage'];
const inCI = () => !!process.env.CI && process.env.CI !== 'false';

// buildLogbook builds the assets and the all-in-one binary once per test
// process (LOGBOOK_BIN, set by scripts/test, skips the build).
let built = null;
export function buildLogbook() {
  if (process.env.LOGBOOK_BIN) return process.env.LOGBOOK_BIN;
  if (built) return built;
  execFileSync(path.join(ROOT, 'scripts/web-build'), { stdio: 'inherit' });
  const dir = mkdtempSync(path.join(tmpdir(), 'logbook-e2e-bin-'));
  const bin = path.join(dir, 'logbook');
  execFileSync('go', ['build', '-o', bin, './cmd/logbook'], { cwd: ROOT, stdio: 'inherit' });
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  built = bin;
  return bin;
}

// startLogbook runs the all-in-one on free ports with its own data dir.
export async function startLogbook({ args = [] } = {}) {
  const bin = buildLogbook();
  const dir = mkdtempSync(path.join(tmpdir(), 'logbook-e2e-data-'));
  const adminKey = 'lb-' + randomBytes(24).toString('hex');
  const proc = spawn(bin, ['-data.dir', dir, '-http.addr', '127.0.0.1:0', '-nats.addr', '127.0.0.1:0', '-log.level', 'warn', ...args],
    { env: { ...process.env, LOGBOOK_ADMIN_API_KEY: adminKey }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`logbook did not start in 60 s:\n${out}`)), 60000);
    const onData = (b) => {
      out += b;
      const m = /Web\/API:\s+(http:\/\/\S+)/.exec(out);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`logbook exited (${code}):\n${out}`)); });
  });
  const admin = new Client(url, adminKey);
  return {
    url, adminKey, admin, dir, proc,
    output: () => out,
    async stop() {
      proc.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10000))]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// Client speaks the HTTP API (plain fetch), retrying 429s as the server asks.
export class Client {
  constructor(url, key) { this.url = url; this.key = key; }

  async req(method, p, body, { ok = true } = {}) {
    for (let attempt = 0; ; attempt++) {
      const res = await fetch(this.url + p, {
        method, headers: { Authorization: 'Bearer ' + this.key, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      if (res.status === 429 && attempt < 50) {
        await new Promise((r) => setTimeout(r, 1000 * Number(res.headers.get('Retry-After') || 0.2)));
        continue;
      }
      const text = await res.text();
      const data = text ? JSON.parse(text) : null;
      if (ok && !res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
      return ok ? data : { status: res.status, data, headers: res.headers };
    }
  }

  // user creates a user (site admin) and answers a Client with a new key.
  async user(name) {
    await this.req('POST', '/api/v1/users', { username: name, email: `${name}@example.com` });
    const k = await this.req('POST', `/api/v1/users/${name}/keys`, { name: 'e2e' });
    return new Client(this.url, k.key);
  }

  project(entity, name) { return this.req('POST', '/api/v1/projects', { entity, name }); }
  invite(e, p, who, role) { return this.req('POST', `/api/v1/projects/${e}/${p}/members`, who.includes('@') ? { email: who, role } : { username: who, role }); }
  async startRun(e, p, body) { return (await this.req('POST', `/api/v1/projects/${e}/${p}/runs`, body)); }
  log(e, p, id, rows) { return this.req('POST', `/api/v1/projects/${e}/${p}/runs/${id}/log`, { rows }); }
  finish(e, p, id, body = { exit_code: 0 }) { return this.req('POST', `/api/v1/projects/${e}/${p}/runs/${id}/finish`, body); }
  run(e, p, id) { return this.req('GET', `/api/v1/projects/${e}/${p}/runs/${id}`); }

  // output writes console lines through the W&B file_stream endpoint (the
  // only writer of output.log).
  async output(e, p, id, offset, lines) {
    const res = await fetch(`${this.url}/files/${e}/${p}/${id}/file_stream`, {
      method: 'POST', headers: { Authorization: 'Basic ' + Buffer.from('api:' + this.key).toString('base64'), 'Content-Type': 'application/json' },
      body: JSON.stringify({ files: { 'output.log': { offset, content: lines } } }),
    });
    assert.equal(res.status, 200, await res.text());
  }

  // upload stores a run file the way the W&B clients do: CreateRunFiles
  // over GraphQL, then a PUT to the signed URL it answers.
  async upload(e, p, id, name, content) {
    const basic = 'Basic ' + Buffer.from('api:' + this.key).toString('base64');
    const query = 'mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) { createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) { runID uploadHeaders files { name uploadUrl } } }';
    const res = await fetch(this.url + '/graphql', {
      method: 'POST', headers: { Authorization: basic, 'Content-Type': 'application/json' },
      body: JSON.stringify({ query, operationName: 'CreateRunFiles', variables: { entity: e, project: p, run: id, files: [name] } }),
    });
    const j = await res.json();
    const url = j.data?.createRunFiles?.files?.[0]?.uploadUrl;
    assert.ok(url, JSON.stringify(j));
    const put = await fetch(new URL(url, this.url), { method: 'PUT', body: content });
    assert.equal(put.status, 200, await put.text());
  }

  // waitRows waits until the read model shows a run's history rows.
  async waitRows(e, p, id, rows, timeoutMs = 60000) {
    const end = Date.now() + timeoutMs;
    for (;;) {
      let r = null;
      try { r = await this.run(e, p, id); } catch (err) { if (Date.now() > end) throw err; } // a busy machine: try again
      if (r && r.history_rows >= rows) return r;
      if (Date.now() > end) throw new Error(`run ${id}: ${r?.history_rows} rows, want ${rows}`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }
}

// rowsOf makes n history rows of metric functions: {loss: (i) => ...}.
export function rowsOf(n, metrics, from = 0) {
  const rows = [];
  for (let i = from; i < from + n; i++) {
    const values = {};
    for (const [k, f] of Object.entries(metrics)) values[k] = f(i);
    rows.push({ step: i, values });
  }
  return rows;
}

let shotDir = null;
export function screenshotDir() {
  if (!shotDir) {
    shotDir = process.env.LOGBOOK_SCREENSHOTS || mkdtempSync(path.join(tmpdir(), 'logbook-ui-screenshots-'));
    console.log(`# screenshots: ${shotDir}`);
  }
  return shotDir;
}

export async function shot(page, name) {
  const p = path.join(screenshotDir(), name + '.png');
  await page.screenshot({ path: p, fullPage: true });
  return p;
}

// launch starts chromium with a fresh profile. Outside CI a machine without
// it skips the tests; under CI (CI=true) it fails them.
export async function launch(t) {
  if (!existsSync(CHROMIUM)) {
    const msg = `chromium not found at ${CHROMIUM} (apt-get install -y chromium)`;
    if (inCI()) throw new Error(msg);
    skip(t, msg);
    return null;
  }
  const profile = mkdtempSync(path.join(tmpdir(), 'logbook-chromium-'));
  try {
    const ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1280, height: 900 },
    });
    const close = ctx.close.bind(ctx);
    ctx.close = async () => { await close(); rmSync(profile, { recursive: true, force: true }); };
    return ctx;
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    if (inCI()) throw e;
    skip(t, `chromium does not start: ${e.message.split('\n')[0]}`);
    return null;
  }
}

// skip skips a test, or, from a suite's before hook (which cannot skip),
// says why its tests will skip.
function skip(t, msg) {
  if (typeof t?.skip === 'function') t.skip(msg);
  else console.log(`# skipping the browser tests: ${msg}`);
}

// watch records the page's console errors and uncaught exceptions;
// check() fails the test on any (expected: regexps of errors the test
// provokes on purpose, such as the 401 of a bad key).
export function watch(page) {
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()} (${m.location()?.url || ''})`); });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  return {
    errors,
    check(expected = []) {
      const bad = errors.filter((e) => !expected.some((re) => re.test(e)));
      errors.length = 0;
      assert.deepEqual(bad, [], 'the page logged errors');
    },
  };
}

// signIn stores a key the way the sign-in page does (tests of the sign-in
// page itself go through the form).
export async function signIn(page, url, key) {
  await page.goto(url + '/');
  await page.fill('#key', key);
  await page.click('button[type=submit]');
  await page.waitForSelector('#whoami');
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
