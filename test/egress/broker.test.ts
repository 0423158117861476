import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createFleetCa } from '../../src/egress/ca.ts';
import { BROKER_KEY_FILE, FORGE_CA_FILE, openEgressSession, type EgressSession } from '../../src/egress/session.ts';
import type { BlockedAttempt } from '../../src/egress/proxy.ts';
import type { FleetConfig } from '../../src/config.ts';
import { startGitHttpServer, type GitHttpServer } from '../support/git-http.ts';
import { freePort } from '../support/redis.ts';

// The egress proxy and credential broker on the host, without Docker: host git and curl reach the proxy
// through the worker image's own forwarder (TCP on loopback -> the session's unix socket), as a worker does.

const run = promisify(execFile);
const FORWARDER = resolve(import.meta.dirname, '../../worker-image/fleet-egress-forwarder.mjs');
const TOKEN = `ghp_${'BrokerTestToken'.repeat(2)}`;
// Without GIT_SSL_CAINFO, which git prefers to any http.<url>.sslCAInfo (fleet-worker drops it for root's git too).
const { GIT_SSL_CAINFO: _dropped, ...gitEnv } = process.env;
const git = (cwd: string, ...args: string[]) =>
  run('git', ['-c', 'user.name=t', '-c', 'user.email=t@fleet.invalid', ...args], { cwd, env: { ...gitEnv, GIT_TERMINAL_PROMPT: '0' } });

const models: FleetConfig['models'] = {
  anthropicBaseUrl: undefined,
  openaiBaseUrl: undefined,
  droid: undefined,
  map: {},
  maxRetries: undefined,
};

let root: string;
let forge: GitHttpServer;
let web: Server;
let webPort: number;
const cleanups: (() => Promise<void> | void)[] = [];

async function bareRepo(base: string, name: string) {
  const path = join(base, `${name}.git`);
  mkdirSync(path, { recursive: true });
  await run('git', ['init', '--quiet', '--bare', '--initial-branch=main', path]);
  const seed = mkdtempSync(join(tmpdir(), 'fleet-broker-seed-'));
  await run('git', ['init', '--quiet', '--initial-branch=main', seed]);
  writeFileSync(join(seed, 'README.md'), 'hello\n');
  await git(seed, 'add', 'README.md');
  await git(seed, 'commit', '--quiet', '-m', 'initial');
  await git(seed, 'push', '--quiet', path, 'main');
  rmSync(seed, { recursive: true, force: true });
}

/** A session plus the forwarder serving it on a loopback port; what was blocked is collected. */
async function session(
  config: Partial<FleetConfig['egress']> & {
    models?: FleetConfig['models'];
    gitBaseUrl?: string;
    upstreamCa?: string;
    request?: { allow?: string[]; methods?: 'all' | 'read' };
  } = {},
) {
  const blocked: BlockedAttempt[] = [];
  const s: EgressSession = await openEgressSession({
    repo: 'acme/widgets',
    token: TOKEN,
    request: config.request,
    config: {
      egress: { mode: 'proxy', allow: config.allow ?? [], requestAllow: config.requestAllow ?? [], methods: config.methods ?? 'all' },
      gitBaseUrl: config.gitBaseUrl ?? forge.url,
      models: config.models ?? models,
    },
    hooks: { onBlocked: (attempt) => blocked.push(attempt) },
    upstreamCa: config.upstreamCa,
  });
  const dir = Object.keys(s.binds)[0]!;
  const port = await freePort();
  const forwarder: ChildProcess = spawn(process.execPath, [FORWARDER, join(dir, 'proxy.sock'), String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((ok, fail) => {
    forwarder.stdout!.once('data', () => ok());
    forwarder.once('exit', (code) => fail(new Error(`forwarder exited ${code}`)));
  });
  cleanups.push(async () => {
    forwarder.kill();
    await s.close();
  });
  const key = s.files.find((f) => f.path === BROKER_KEY_FILE)!.content;
  const proxy = `http://127.0.0.1:${port}`;
  // Root's git in the worker: the broker key from its credential helper, the proxy from the environment.
  const brokered = [
    '-c',
    `http.proxy=${proxy}`,
    '-c',
    'credential.helper=',
    '-c',
    `credential.helper=!f() { echo username=x-access-token; echo password=${key}; }; f`,
  ];
  return { s, blocked, proxy, brokered, key };
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'fleet-broker-'));
  await bareRepo(join(root, 'acme'), 'widgets');
  await bareRepo(join(root, 'acme'), 'other');
  forge = await startGitHttpServer(root, TOKEN);
  web = createServer((req, res) => res.end(`hello ${req.method}\n`));
  await new Promise<void>((ok) => web.listen(0, '127.0.0.1', ok));
  webPort = (web.address() as AddressInfo).port;
});

afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

afterAll(async () => {
  await forge?.stop();
  await new Promise((ok) => web?.close(ok));
  rmSync(root, { recursive: true, force: true });
});

describe('the credential broker', () => {
  it("clones and pushes the job's repository with the token it adds, and the worker never sends the token", async () => {
    const { brokered, blocked } = await session();
    const work = mkdtempSync(join(tmpdir(), 'fleet-broker-work-'));
    await git(work, ...brokered, 'clone', '--quiet', `${forge.url}/acme/widgets.git`, 'w');
    writeFileSync(join(work, 'w', 'new.txt'), 'pushed through the broker\n');
    await git(join(work, 'w'), 'add', 'new.txt');
    await git(join(work, 'w'), 'commit', '--quiet', '-m', 'via broker');
    await git(join(work, 'w'), ...brokered, 'push', '--quiet', 'origin', 'HEAD:refs/heads/brokered');
    const { stdout } = await run('git', ['--git-dir', join(root, 'acme/widgets.git'), 'log', '--format=%s', 'brokered']);
    expect(stdout).toContain('via broker');
    // Every request the forge answered with data carried the real token, which only the proxy holds.
    expect(forge.requests.filter((r) => r.path.includes('git-receive-pack') && r.method === 'POST').every((r) => r.authorized)).toBe(true);
    expect(blocked).toEqual([]);
    rmSync(work, { recursive: true, force: true });
  });

  it('refuses a push to another repository, even with the broker key, and never contacts the forge for it', async () => {
    const { brokered, blocked } = await session();
    const work = mkdtempSync(join(tmpdir(), 'fleet-broker-work-'));
    await git(work, ...brokered, 'clone', '--quiet', `${forge.url}/acme/widgets.git`, 'w');
    const before = forge.requests.length;
    await expect(git(join(work, 'w'), ...brokered, 'push', `${forge.url}/acme/other.git`, 'HEAD:refs/heads/stolen')).rejects.toThrow(/403/);
    expect(forge.requests.slice(before).some((r) => r.path.includes('acme/other'))).toBe(false);
    expect(blocked).toContainEqual(expect.objectContaining({ host: '127.0.0.1', port: forge.port, reason: 'other_repository' }));
    rmSync(work, { recursive: true, force: true });
  });

  it('answers a request without the broker key with a challenge, not with the token', async () => {
    const { proxy } = await session();
    const work = mkdtempSync(join(tmpdir(), 'fleet-broker-work-'));
    await expect(
      git(work, '-c', `http.proxy=${proxy}`, '-c', 'credential.helper=', 'ls-remote', `${forge.url}/acme/widgets.git`),
    ).rejects.toThrow(/Authentication failed|could not read Username|terminal prompts disabled/);
    rmSync(work, { recursive: true, force: true });
  });

  it('terminates TLS for an https forge with the fleet CA, which the client trusts for that host only', async () => {
    const upstreamCa = createFleetCa('test forge CA');
    const leaf = upstreamCa.leafFor('127.0.0.1');
    const tlsForge = await startGitHttpServer(root, TOKEN, { tls: { key: leaf.keyPem, cert: leaf.certPem } });
    cleanups.push(() => tlsForge.stop());
    const { s, brokered } = await session({ gitBaseUrl: tlsForge.url, upstreamCa: upstreamCa.certPem });
    const caFile = join(root, 'fleet-ca.pem');
    writeFileSync(caFile, s.files.find((f) => f.path === FORGE_CA_FILE)!.content);
    expect(s.env.FLEET_FORGE_CA).toBe(FORGE_CA_FILE);
    const work = mkdtempSync(join(tmpdir(), 'fleet-broker-work-'));
    await git(
      work,
      ...brokered,
      '-c',
      `http.${tlsForge.url}/.sslCAInfo=${caFile}`,
      'clone',
      '--quiet',
      `${tlsForge.url}/acme/widgets.git`,
      'w',
    );
    expect(tlsForge.requests.some((r) => r.path.endsWith('git-upload-pack') && r.authorized)).toBe(true);
    rmSync(work, { recursive: true, force: true });
  });
});

describe('the egress allowlist', () => {
  const curl = (proxy: string, ...args: string[]) =>
    run('curl', ['-sS', '--proxy', proxy, '-o', '-', '-w', '\n%{http_code}', ...args]).then((r) => r.stdout.trim().split('\n').pop());

  it('lets an allowed host through and refuses another, reporting the refusal', async () => {
    const other = await freePort();
    const { proxy, blocked, s } = await session({ allow: [`127.0.0.1:${webPort}`] });
    expect(await curl(proxy, `http://127.0.0.1:${webPort}/`)).toBe('200');
    expect(await curl(proxy, `http://127.0.0.1:${other}/`)).toBe('403');
    await expect(run('curl', ['-sS', '-p', '--proxy', proxy, `http://127.0.0.1:${other}/`])).rejects.toThrow(/403/);
    expect(blocked.map((b) => [b.host, b.port, b.reason])).toEqual([
      ['127.0.0.1', other, 'not_allowed'],
      ['127.0.0.1', other, 'not_allowed'],
    ]);
    expect(s.report().blocked).toEqual([
      { method: 'GET', host: '127.0.0.1', port: other, reason: 'not_allowed', count: 1 },
      { method: 'CONNECT', host: '127.0.0.1', port: other, reason: 'not_allowed', count: 1 },
    ]);
  });

  it('methods "read" lets GET and HEAD through and refuses POST and tunnels', async () => {
    const { proxy, s } = await session({ allow: [`127.0.0.1:${webPort}`], request: { methods: 'read' } });
    expect(await curl(proxy, `http://127.0.0.1:${webPort}/`)).toBe('200');
    expect(await curl(proxy, '-I', `http://127.0.0.1:${webPort}/`)).toBe('200');
    expect(await curl(proxy, '-X', 'POST', `http://127.0.0.1:${webPort}/`)).toBe('403');
    await expect(run('curl', ['-sS', '-p', '--proxy', proxy, `http://127.0.0.1:${webPort}/`])).rejects.toThrow(/403/);
    expect(s.report().blocked.map((b) => [b.method, b.reason])).toEqual([
      ['POST', 'method'],
      ['CONNECT', 'method'],
    ]);
  });

  it('methods "read" leaves the configured model endpoint usable (every agent call is a POST)', async () => {
    const { proxy, s } = await session({ methods: 'read', models: { ...models, anthropicBaseUrl: `http://127.0.0.1:${webPort}` } });
    expect(await curl(proxy, '-X', 'POST', `http://127.0.0.1:${webPort}/v1/messages`)).toBe('200');
    expect(s.report().blocked).toEqual([]);
  });

  it('a request may narrow the list, and widen it only by what the host allows', async () => {
    const { proxy, s } = await session({
      allow: ['npm'],
      requestAllow: [`127.0.0.1:${webPort}`],
      request: { allow: [`127.0.0.1:${webPort}`, 'evil.example:80'] },
    });
    expect(await curl(proxy, `http://127.0.0.1:${webPort}/`)).toBe('200');
    expect(await curl(proxy, 'http://registry.npmjs.org/')).toBe('403');
    expect(s.report().refused_entries).toEqual(['evil.example:80']);
  });
});
