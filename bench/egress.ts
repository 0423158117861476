/**
 * The egress proxy's cost: `git clone` of a ≥ 200 MB repository (random, incompressible blobs, generated
 * once under /tmp) from a loopback smart-HTTP forge (git http-backend, checking the token), direct with the
 * token vs through the worker's path: the image's forwarder on loopback, the job's unix socket and the
 * host's proxy and credential broker (which swaps the broker key for the token). Runs alternate, so both
 * see the same machine load; the ratio is direct time / proxied time (1 = free, goal ≥ 0.8).
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { BROKER_KEY_FILE, openEgressSession } from '../src/egress/session.ts';
import { startGitHttpServer } from '../test/support/git-http.ts';
import { freePort } from '../test/support/redis.ts';

const run = promisify(execFile);
const FORWARDER = resolve(import.meta.dirname, '../worker-image/fleet-egress-forwarder.mjs');
const TOKEN = `ghp_${'BenchEgressToken'.repeat(2)}`;
const FILES = 50;
const FILE_BYTES = 4 * 1024 * 1024;

export interface EgressBenchRow {
  path: 'direct' | 'proxy';
  runs: number;
  repo_mb: number;
  median_s: number;
  min_s: number;
  mb_per_s: number;
}

/** The test repository, made once: FILES random files, packed. */
async function testRepo(): Promise<{ root: string; bytes: number }> {
  const root = join(tmpdir(), `fleet-bench-egress-${FILES}x${FILE_BYTES}`);
  const bare = join(root, 'acme', 'big.git');
  if (!existsSync(join(root, 'ready'))) {
    rmSync(root, { recursive: true, force: true });
    mkdirSync(join(root, 'acme'), { recursive: true });
    const seed = join(root, 'seed');
    await run('git', ['init', '--quiet', '--initial-branch=main', seed]);
    for (let i = 0; i < FILES; i++) writeFileSync(join(seed, `blob-${i}.bin`), randomBytes(FILE_BYTES));
    await run('git', ['-C', seed, 'add', '.']);
    await run('git', ['-C', seed, '-c', 'user.name=b', '-c', 'user.email=b@fleet.invalid', 'commit', '--quiet', '-m', 'blobs']);
    await run('git', ['clone', '--quiet', '--bare', seed, bare]);
    await run('git', ['-C', bare, 'repack', '-a', '-d', '-q', '--window=0']);
    rmSync(seed, { recursive: true, force: true });
    writeFileSync(join(root, 'ready'), '');
  }
  const { stdout } = await run('du', ['-sb', bare]);
  return { root, bytes: Number(stdout.split('\t')[0]) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function benchEgress(runs = Number(process.env.BENCH_EGRESS_RUNS ?? 3)): Promise<EgressBenchRow[]> {
  const { root, bytes } = await testRepo();
  const forge = await startGitHttpServer(root, TOKEN);
  const session = await openEgressSession({
    repo: 'acme/big',
    token: TOKEN,
    config: {
      egress: { mode: 'proxy', allow: [], requestAllow: [], methods: 'all' },
      gitBaseUrl: forge.url,
      models: { anthropicBaseUrl: undefined, openaiBaseUrl: undefined, droid: undefined, map: {}, maxRetries: undefined },
    },
    hooks: { onBlocked: () => {} },
  });
  const port = await freePort();
  const forwarder = spawn(process.execPath, [FORWARDER], {
    env: { FLEET_EGRESS_SOCKET: join(Object.keys(session.binds)[0]!, 'proxy.sock'), FLEET_EGRESS_PORT: String(port) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((ok) => forwarder.stdout.once('data', () => ok()));
  const key = session.files.find((f) => f.path === BROKER_KEY_FILE)!.content;
  const helper = (password: string) => [
    '-c',
    'credential.helper=',
    '-c',
    `credential.helper=!f() { echo username=x-access-token; echo password=${password}; }; f`,
  ];
  const args = {
    direct: helper(TOKEN),
    proxy: [...helper(key), '-c', `http.proxy=http://127.0.0.1:${port}`],
  };
  const times: Record<'direct' | 'proxy', number[]> = { direct: [], proxy: [] };
  const work = mkdtempSync(join(tmpdir(), 'fleet-bench-clone-'));
  try {
    for (let i = 0; i < runs; i++) {
      for (const path of ['direct', 'proxy'] as const) {
        const target = join(work, `${path}-${i}`);
        const started = process.hrtime.bigint();
        await run('git', [...args[path], 'clone', '--quiet', '--no-checkout', `${forge.url}/acme/big.git`, target], {
          env: { ...process.env, GIT_TERMINAL_PROMPT: '0' },
        });
        times[path].push(Number(process.hrtime.bigint() - started) / 1e9);
        rmSync(target, { recursive: true, force: true });
      }
    }
  } finally {
    forwarder.kill();
    await session.close();
    await forge.stop();
    rmSync(work, { recursive: true, force: true });
  }
  const mb = bytes / 1024 / 1024;
  return (['direct', 'proxy'] as const).map((path) => ({
    path,
    runs,
    repo_mb: Math.round(mb),
    median_s: Number(median(times[path]).toFixed(2)),
    min_s: Number(Math.min(...times[path]).toFixed(2)),
    mb_per_s: Number((mb / median(times[path])).toFixed(1)),
  }));
}
