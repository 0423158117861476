/**
 * The host git mirror (issue 11 item 3): clone of a generated repository with ≥ 200 MB of history through a
 * loopback smart-HTTP server, cold (the baseline, what every job did before) against the worker's clone
 * from the mirror after the host's incremental mirror update, in the same run. The worker's clone is
 * fleet-worker's own: a local `git clone --shared <mirror>` with origin set to the remote, after which the agent starts, while its
 * dissociate_from_mirror (read out of worker-image/fleet-worker and run as is) copies the mirror's objects
 * in the background; that copy is timed on its own. git's own `--dissociate` is measured beside it. Between runs one
 * small commit lands on the remote, as between two jobs, so every mirror update has something to fetch.
 *
 * The repository is made once under /tmp (BENCH_GIT_REPO_DIR) with git fast-import: incompressible random
 * blobs, so its size is its history's size.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { GitMirrorCache } from '../src/git-mirror.ts';
import { startGitHttpServer } from '../test/support/git-http.ts';

const run = promisify(execFile);

export interface GitMirrorRow {
  path: string;
  runs: number;
  median_ms: number;
  min_ms: number;
  max_ms: number;
  speedup: string;
}

/** fleet-worker's dissociate_from_mirror, taken from the script itself so the bench runs the worker's code. */
function workerDissociate(): string {
  const script = readFileSync(new URL('../worker-image/fleet-worker', import.meta.url), 'utf8');
  const match = /^dissociate_from_mirror\(\) \{\n[\s\S]*?^\}\n/m.exec(script);
  if (!match) throw new Error('dissociate_from_mirror() not found in worker-image/fleet-worker');
  return match[0];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Writes `commits` commits, each replacing one of 64 files with `blobBytes` random bytes, through fast-import. */
async function generate(path: string, commits: number, blobBytes: number): Promise<void> {
  await run('git', ['init', '--quiet', '--bare', '--initial-branch=main', path]);
  const child = spawn('git', ['-C', path, 'fast-import', '--quiet'], { stdio: ['pipe', 'ignore', 'inherit'] });
  const done = new Promise<void>((resolve, reject) =>
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`fast-import exited ${code}`)))),
  );
  const write = (chunk: string | Buffer) =>
    child.stdin.write(chunk) ? Promise.resolve() : new Promise<void>((resolve) => child.stdin.once('drain', () => resolve()));
  for (let i = 1; i <= commits; i++) {
    const blob = randomBytes(blobBytes);
    const message = `commit ${i}\n`;
    await write(`commit refs/heads/main\ncommitter bench <bench@fleet.invalid> ${1_700_000_000 + i} +0000\n`);
    await write(`data ${Buffer.byteLength(message)}\n${message}`);
    await write(`M 100644 inline data/file-${i % 64}.bin\ndata ${blob.length}\n`);
    await write(blob);
    await write('\n');
  }
  child.stdin.end();
  await done;
  // One pack, as a forge serves it.
  await run('git', ['-C', path, 'repack', '-a', '-d', '-q']);
}

async function dirBytes(path: string): Promise<number> {
  const { stdout } = await run('du', ['-sb', path]);
  return Number(stdout.split('\t')[0]);
}

async function timed(task: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await task();
  return performance.now() - started;
}

export async function benchGitMirror(runs = Number(process.env.BENCH_GIT_RUNS ?? 3)): Promise<{ rows: GitMirrorRow[]; repoBytes: number }> {
  const root = process.env.BENCH_GIT_REPO_DIR ?? join(tmpdir(), 'fleet-bench-git-mirror');
  const origin = join(root, 'bench', 'big.git');
  // Written last: a generation cut short is made again.
  const complete = join(root, 'complete');
  if (!existsSync(complete)) {
    rmSync(root, { recursive: true, force: true });
    const ms = await timed(() => generate(origin, 2_000, 110 * 1024));
    writeFileSync(complete, '');
    console.log(`generated ${origin} in ${Math.round(ms)} ms`);
  }
  const repoBytes = await dirBytes(origin);
  const server = await startGitHttpServer(root, undefined);
  const url = `${server.url}/bench/big.git`;
  const work = mkdtempSync(join(tmpdir(), 'fleet-bench-clones-'));
  const mirrors = new GitMirrorCache({ dir: join(work, 'mirrors'), maxBytes: 100 * 1024 ** 3, logger: pino({ level: 'silent' }) });
  // A scratch clone that pushes one small commit between runs, as another job would.
  const pusher = join(work, 'pusher');
  await run('git', ['clone', '--quiet', '--reference', origin, url, pusher]);
  let n = 0;
  const pushOne = async () => {
    writeFileSync(join(pusher, 'between.txt'), `run ${++n}\n`);
    await run('git', ['-C', pusher, 'add', 'between.txt']);
    await run('git', ['-C', pusher, '-c', 'user.name=b', '-c', 'user.email=b@b.invalid', 'commit', '--quiet', '-m', `between ${n}`]);
    await run('git', ['-C', pusher, 'push', '--quiet', 'origin', 'HEAD:main']);
  };
  const clone = (dest: string, extra: string[] = []) =>
    run('git', ['clone', '--quiet', ...extra, '--', url, dest], { env: { ...process.env, GIT_TERMINAL_PROMPT: '0' } });

  try {
    const firstFill = await timed(async () => {
      const lease = await mirrors.prepare(url, undefined);
      if (!lease) throw new Error('the mirror could not be created');
      await lease.release();
    });
    const cold: number[] = [];
    const update: number[] = [];
    const fromMirror: number[] = [];
    const gitDissociate: number[] = [];
    const copy: number[] = [];
    const dissociate = workerDissociate();
    const total: number[] = [];
    for (let i = 0; i < runs; i++) {
      await pushOne();
      const dest = join(work, `cold-${i}`);
      cold.push(await timed(() => clone(dest)));
      rmSync(dest, { recursive: true, force: true });

      await pushOne();
      const mirrorDest = join(work, `mirror-${i}`);
      let path = '';
      let release = async () => {};
      const updateMs = await timed(async () => {
        const lease = await mirrors.prepare(url, undefined);
        if (!lease) throw new Error('the mirror update failed');
        path = lease.path;
        release = lease.release;
      });
      // The clone step of the worker: it goes on to the agent right after this.
      const cloneMs = await timed(async () => {
        await run('git', ['clone', '--quiet', '--shared', '--', path, mirrorDest]);
        await run('git', ['-C', mirrorDest, 'remote', 'set-url', 'origin', url]);
      });
      // Its dissociation, which runs in the background while the agent works.
      copy.push(
        await timed(() =>
          run('bash', ['-c', `${dissociate}\ndissociate_from_mirror`], {
            env: { ...process.env, FLEET_GIT_MIRROR: path, ROOT_GIT: join(mirrorDest, '.git') },
          }),
        ),
      );
      // Whole without the mirror: no alternates, and every object reachable is there.
      if (existsSync(join(mirrorDest, '.git', 'objects', 'info', 'alternates'))) throw new Error('the worker clone still has alternates');
      await run('git', ['-C', mirrorDest, 'fsck', '--connectivity-only', '--no-dangling']);
      rmSync(mirrorDest, { recursive: true, force: true });
      const gitDest = join(work, `git-dissociate-${i}`);
      gitDissociate.push(await timed(() => clone(gitDest, ['--reference', path, '--dissociate'])));
      rmSync(gitDest, { recursive: true, force: true });
      await release();
      update.push(updateMs);
      fromMirror.push(cloneMs);
      total.push(updateMs + cloneMs);
    }
    const base = median(cold);
    const row = (path: string, xs: number[]): GitMirrorRow => ({
      path,
      runs: xs.length,
      median_ms: Math.round(median(xs)),
      min_ms: Math.round(Math.min(...xs)),
      max_ms: Math.round(Math.max(...xs)),
      speedup: xs === cold ? '1.0× (baseline)' : `${(base / median(xs)).toFixed(1)}×`,
    });
    return {
      repoBytes,
      rows: [
        row('cold clone (baseline)', cold),
        row('mirror update (host, incremental fetch)', update),
        row('worker clone step: local clone --shared of the mirror', fromMirror),
        row('mirror update + worker clone step (what a job waits for)', total),
        row("worker's object copy (in the background, while the agent works)", copy),
        row("git's own clone --reference mirror --dissociate (repacks; not used)", gitDissociate),
        {
          path: 'mirror first fill (once per host and repository)',
          runs: 1,
          median_ms: Math.round(firstFill),
          min_ms: Math.round(firstFill),
          max_ms: Math.round(firstFill),
          speedup: '-',
        },
      ],
    };
  } finally {
    await server.stop();
    rmSync(work, { recursive: true, force: true });
  }
}
