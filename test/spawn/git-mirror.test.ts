import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { lockFile } from '../../src/file-lock.ts';
import { GitMirrorCache, type MirrorLease, mirrorKey, MIRROR_ENV, MIRROR_MOUNT, type MirrorOutcome } from '../../src/git-mirror.ts';
import { QUEUE_NAMES } from '../../queues/common.ts';
import { channels } from '../../src/protocol.ts';
import { describeDocker } from '../support/docker.ts';
import { legacyRequest, publishJson, ResultListener, startTestFleet, testEnv, type TestFleet } from '../support/fleet.ts';
import { startGitDaemon, type GitDaemon } from '../support/git-daemon.ts';
import { startGitHttpServer } from '../support/git-http.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';
import {
  type BareRepo,
  type WorkerRun,
  buildWorkerImage,
  docker,
  fakeToken,
  grepTree,
  makeBareRepo,
  removeLeftovers,
  runWorker,
} from '../worker-image/harness.ts';

const run = promisify(execFile);
const logger = pino({ level: 'silent' });
const temps: string[] = [];
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temps.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

function cache(dir: string, maxBytes = 1024 ** 3, outcomes: MirrorOutcome[] = []) {
  return new GitMirrorCache({ dir, maxBytes, logger, onUpdate: (outcome) => outcomes.push(outcome) });
}

const refs = async (path: string) => (await run('git', ['-C', path, 'for-each-ref', '--format=%(refname) %(objectname)'])).stdout.trim();

describe('git mirror cache (host side: real git, a loopback smart-HTTP server)', () => {
  it('fetches with the token through the environment only: nothing of it lands in the mirror', async () => {
    const repo = await makeBareRepo();
    temps.push(repo.dir);
    const token = fakeToken();
    // The server needs the token on every request, as GitHub does for a private repository.
    const server = await startGitHttpServer(repo.dir, token);
    try {
      const outcomes: MirrorOutcome[] = [];
      const mirrors = cache(tempDir('fleet-mirrors-'), undefined, outcomes);
      const url = `${server.url}/origin.git`;
      const lease = await mirrors.prepare(url, token);
      expect(lease).not.toBeNull();
      expect(outcomes).toEqual(['created']);
      expect(server.authorized).toBeGreaterThan(0);
      expect(await refs(lease!.path)).toBe(await refs(repo.path));

      const basic = Buffer.from(`x-access-token:${token}`).toString('base64');
      expect(await grepTree(lease!.path, token)).toEqual([]);
      expect(await grepTree(lease!.path, basic)).toEqual([]);
      expect(readFileSync(join(lease!.path, 'config'), 'utf8')).not.toMatch(/extraheader|Authorization|url\s*=/i);

      // Without the token the server refuses: the mirror is not updated, the job goes on without it.
      const refusedBefore = server.refused;
      expect(await mirrors.prepare(url, 'ghp_wrong')).toBeNull();
      expect(server.refused).toBeGreaterThan(refusedBefore);
      expect(outcomes).toEqual(['created', 'failed']);
      await lease!.release();
    } finally {
      await server.stop();
    }
  }, 60_000);

  it("points the mirror's HEAD at the remote's default branch, and asks again once that branch is gone", async () => {
    const repo = await makeBareRepo();
    temps.push(repo.dir);
    await repo.commitOn('trunk', 'trunk.txt', 'on trunk\n');
    await repo.git('symbolic-ref', 'HEAD', 'refs/heads/trunk');
    const token = fakeToken();
    const server = await startGitHttpServer(repo.dir, token);
    try {
      const mirrors = cache(tempDir('fleet-mirrors-'));
      const url = `${server.url}/origin.git`;
      const first = await mirrors.prepare(url, token);
      const head = () => run('git', ['-C', first!.path, 'symbolic-ref', 'HEAD']).then((r) => r.stdout.trim());
      expect(await head()).toBe('refs/heads/trunk');
      await first!.release();
      // The remote renames its default branch: the next update follows.
      await repo.git('branch', '-m', 'trunk', 'develop');
      const second = await mirrors.prepare(url, token);
      expect(await head()).toBe('refs/heads/develop');
      await second!.release();
    } finally {
      await server.stop();
    }
  }, 60_000);

  it('a failed first fetch leaves no mirror behind and resolves null', async () => {
    const dir = tempDir('fleet-mirrors-');
    const outcomes: MirrorOutcome[] = [];
    const url = `file://${dir}/no-such-repo.git`;
    expect(await cache(dir, undefined, outcomes).prepare(url, undefined)).toBeNull();
    expect(outcomes).toEqual(['failed']);
    expect(existsSync(join(dir, `${mirrorKey(url)}.git`))).toBe(false);
    expect(existsSync(join(dir, `${mirrorKey(url)}.git.new`))).toBe(false);
  }, 30_000);

  it('prunes the least recently used mirrors past the max, never one a worker holds', async () => {
    const dir = tempDir('fleet-mirrors-');
    const origins = tempDir('fleet-origins-');
    // Three repositories of ~300 KB each (incompressible blobs), a max that fits two.
    const urls: string[] = [];
    for (const name of ['a', 'b', 'c']) {
      const seed = join(origins, name);
      await run('git', ['init', '--quiet', '--initial-branch=main', seed]);
      writeFileSync(join(seed, 'blob.bin'), Buffer.from(Array.from({ length: 300_000 }, () => Math.floor(Math.random() * 256))));
      await run('git', ['-C', seed, 'add', '.']);
      await run('git', ['-C', seed, '-c', 'user.name=t', '-c', 'user.email=t@t.invalid', 'commit', '--quiet', '-m', name]);
      urls.push(`file://${seed}`);
    }
    const mirrors = cache(dir, 700_000);
    const leases: MirrorLease[] = [];
    for (const url of urls) leases.push((await mirrors.prepare(url, undefined))!);
    await mirrors.settled();
    // Use order: b (oldest), a, c (newest). b is still leased to a running worker: a goes instead.
    await mirrors.touch(urls[1]!, new Date(Date.now() - 30_000));
    await mirrors.touch(urls[0]!, new Date(Date.now() - 20_000));
    await mirrors.touch(urls[2]!, new Date(Date.now() - 10_000));
    await leases[0]!.release();
    await leases[2]!.release();
    expect(await mirrors.prune()).toEqual([mirrorKey(urls[0]!)]);
    expect(existsSync(leases[0]!.path)).toBe(false);
    expect(existsSync(leases[1]!.path)).toBe(true);

    // Once b's worker is done, b (least recently used) goes before c.
    await leases[1]!.release();
    const again = cache(dir, 400_000);
    expect(await again.prune()).toEqual([mirrorKey(urls[1]!)]);
    expect(existsSync(leases[2]!.path)).toBe(true);
    // Pruning skips a mirror whose update holds its lock (another fleet process fetching it).
    const held = await lockFile(join(dir, `${mirrorKey(urls[2]!)}.lock`), 1000);
    expect(await cache(dir, 1).prune()).toEqual([]);
    await held!.release();
    expect(await cache(dir, 1).prune()).toEqual([mirrorKey(urls[2]!)]);
  }, 60_000);

  it('the file lock excludes other processes until released', async () => {
    const path = join(tempDir('fleet-lock-'), 'x.lock');
    const first = await lockFile(path, 1000);
    expect(first).not.toBeNull();
    expect(await lockFile(path, 0)).toBeNull();
    await first!.release();
    const second = await lockFile(path, 0);
    expect(second).not.toBeNull();
    await second!.release();
  }, 30_000);

  it("the warm pool's lease of an existing mirror never outlives a prune that was already removing it", async () => {
    const dir = tempDir('fleet-mirrors-');
    const seed = join(tempDir('fleet-origins-'), 'r');
    await run('git', ['init', '--quiet', '--initial-branch=main', seed]);
    await run('git', ['-C', seed, '-c', 'user.name=t', '-c', 'user.email=t@t.invalid', 'commit', '--quiet', '--allow-empty', '-m', 'r']);
    const url = `file://${seed}`;
    const mirrors = cache(dir);
    await (await mirrors.prepare(url, undefined))!.release();
    const leases = join(dir, `${mirrorKey(url)}.leases`);
    expect(readdirSync(leases)).toEqual([]);

    // A prune between its look at the leases (none) and the end of its removal holds the mirror's lock.
    const pruning = await lockFile(join(dir, `${mirrorKey(url)}.lock`), 1000);
    const leaseWritten = new Promise<void>((resolve) => {
      const watcher = watch(leases, () => {
        if (readdirSync(leases).length === 0) return;
        watcher.close();
        resolve();
      });
    });
    const leasing = mirrors.leaseExisting(url);
    // The pool has seen the mirror and written its lease; the prune goes on and removes the mirror.
    await leaseWritten;
    expect(readdirSync(leases)).toHaveLength(1);
    rmSync(mirrors.pathFor(url), { recursive: true, force: true });
    await pruning!.release();

    expect(await leasing).toBeNull();
    expect(readdirSync(leases)).toEqual([]);
    // Once a job has made it again, the pool gets it.
    await (await mirrors.prepare(url, undefined))!.release();
    const lease = await mirrors.leaseExisting(url);
    expect(lease?.path).toBe(mirrors.pathFor(url));
    await lease!.release();
  }, 30_000);
});

// The real worker image, run as the spawn role runs it with the mirror (read-only bind, FLEET_GIT_MIRROR),
// cloning from and pushing to a loopback git daemon (network host).
describeDocker('git mirror cache with the real worker image', () => {
  let image: string;
  let repo: BareRepo;
  let daemon: GitDaemon;
  let url: string;
  let mirrors: GitMirrorCache;
  const runs: WorkerRun[] = [];

  beforeAll(async () => {
    image = await buildWorkerImage();
    repo = await makeBareRepo();
    temps.push(repo.dir);
    // Some history for the mirror to hold.
    for (let i = 0; i < 5; i++) await repo.commitOn('main', `src/file-${i}.txt`, `${'x'.repeat(10_000)}${i}\n`);
    daemon = await startGitDaemon(repo.dir, 'origin');
    url = `${daemon.url}/origin.git`;
    mirrors = cache(tempDir('fleet-mirrors-'));
  }, 30 * 60_000);

  afterEach(async () => {
    await Promise.all(runs.splice(0).map((r) => r.remove()));
  });

  afterAll(async () => {
    await daemon?.stop();
    expect(await removeLeftovers()).toEqual([]);
  });

  async function worker(mirror: string | undefined, env: Record<string, string>, task = '# mirror\n') {
    const result = await runWorker(image, {
      env: {
        FLEET_REQUEST_ID: 'req-mirror',
        REPO: 'acme/widgets',
        FLEET_GIT_URL: url,
        FLEET_AGENT: 'custom',
        FLEET_DIND: 'off',
        TASK_TITLE: 'mirror test',
        MODEL: 'test-model',
        ...(mirror ? { [MIRROR_ENV]: MIRROR_MOUNT } : {}),
        ...env,
      },
      input: { 'TASK.md': task },
      binds: mirror ? { [mirror]: `${MIRROR_MOUNT}:ro` } : {},
      network: 'host',
      timeoutMs: 120_000,
    });
    runs.push(result);
    return result;
  }

  it("pushes a branch whose objects don't depend on the mirror (the --dissociate check), and the mirror holds no token", async () => {
    const hostToken = fakeToken();
    const lease = await mirrors.prepare(url, hostToken);
    expect(lease).not.toBeNull();
    const workerToken = fakeToken();
    const run1 = await worker(
      lease!.path,
      {
        FLEET_BRANCH: 'fleet/mirror-1',
        GITHUB_TOKEN: workerToken,
        // The agent looks for the host's token (line 2 of its task, so that no env holds it) where it could
        // reach it: the mounted mirror and its own environment.
        FLEET_AGENT_CMD: `echo one > one.txt; t="$(sed -n 2p TASK.md)"; test -n "$t" || exit 7; if grep -rqaF "$t" ${MIRROR_MOUNT} || env | grep -qF "$t"; then echo HOST_TOKEN_SEEN; else echo HOST_TOKEN_UNSEEN; fi`,
      },
      `# mirror\n${hostToken}\n`,
    );
    expect(run1.exitCode).toBe(0);
    expect(run1.logLines).toContain("fleet-worker: cloned with the host's git mirror");
    expect(run1.logLines).toContain("fleet-worker: the clone no longer needs the host's git mirror (its objects are copied)");
    expect(run1.logLines).toContain('HOST_TOKEN_UNSEEN');
    const { stdout: inspected } = await docker(['inspect', '--format', '{{json .Config.Env}}', run1.container]);
    expect(inspected).not.toContain(hostToken);
    expect(await grepTree(lease!.path, hostToken)).toEqual([]);

    // The worker's own clone has no alternates and is complete without the mirror.
    await expect(run1.copyOut('/fleet/state/repo.git/objects/info/alternates')).rejects.toThrow();
    const copy = join(tempDir('fleet-worker-git-'), 'repo.git');
    await docker(['cp', `${run1.container}:/fleet/state/repo.git`, copy]);
    await lease!.release();
    rmSync(lease!.path, { recursive: true, force: true });
    await run('git', ['-C', copy, 'fsck', '--full', '--no-dangling']);
    // So is the remote: every object of the pushed branch is there.
    await run('git', ['-C', repo.path, 'fsck', '--full', '--no-dangling']);
    expect(await repo.git('show', 'fleet/mirror-1:one.txt')).toBe('one');
    await run('git', ['-C', repo.path, 'rev-list', '--objects', 'fleet/mirror-1']);
  }, 300_000);

  it('updates the mirror before each clone: a commit pushed between two jobs is in the mirror the second one reads', async () => {
    const first = await mirrors.prepare(url, undefined);
    await first!.release();
    const newer = await repo.commitOn('main', 'between.txt', 'pushed between two jobs\n');
    await expect(run('git', ['-C', first!.path, 'cat-file', '-e', newer])).rejects.toThrow();

    const lease = await mirrors.prepare(url, undefined);
    expect((await run('git', ['-C', lease!.path, 'rev-parse', 'refs/heads/main'])).stdout.trim()).toBe(newer);
    const run2 = await worker(lease!.path, { FLEET_BRANCH: 'fleet/mirror-2', FLEET_AGENT_CMD: 'cat between.txt; echo two > two.txt' });
    await lease!.release();
    expect(run2.exitCode).toBe(0);
    expect(run2.logLines).toContain("fleet-worker: cloned with the host's git mirror");
    expect(run2.logLines).toContain('pushed between two jobs');
    expect(await repo.git('rev-parse', 'fleet/mirror-2^')).toBe(newer);
  }, 300_000);

  it('a mirror the clone refuses falls back to a plain clone', async () => {
    // A shallow repository: git refuses it as a reference ("reference repository ... is shallow").
    const broken = join(tempDir('fleet-broken-mirror-'), 'mirror.git');
    await run('git', ['clone', '--quiet', '--bare', repo.path, broken]);
    writeFileSync(join(broken, 'shallow'), `${await repo.git('rev-parse', 'main')}\n`);
    const run3 = await worker(broken, { FLEET_BRANCH: 'fleet/mirror-3', FLEET_AGENT_CMD: 'echo three > three.txt' });
    expect(run3.exitCode).toBe(0);
    expect(run3.logLines).toContain("fleet-worker: clone with the host's git mirror failed; cloning without it");
    expect(await repo.git('show', 'fleet/mirror-3:three.txt')).toBe('three');
  }, 300_000);
});

// The spawn role end to end with the cache on: the mirror is fetched before the container starts, mounted,
// used by the worker's clone, and its lease is gone once the result is out.
describeDocker('git mirror cache through the fleet (bridge + spawn, real worker image)', () => {
  let redisServer: TestRedis;
  let redis: Redis;
  let results: ResultListener;
  let daemon: GitDaemon;
  let fleet: TestFleet;
  let cacheDir: string;
  let bare: string;

  beforeAll(async () => {
    const image = await buildWorkerImage();
    const origin = await makeBareRepo();
    temps.push(origin.dir);
    const repos = tempDir('fleet-mirror-repos-');
    bare = join(repos, 'acme', 'widgets.git');
    await run('git', ['clone', '--quiet', '--bare', origin.path, bare]);
    daemon = await startGitDaemon(repos, 'acme/widgets');
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    results = await ResultListener.start(redisServer.url);
    cacheDir = tempDir('fleet-mirror-cache-');
    fleet = await startTestFleet(
      testEnv(redisServer.url, image, {
        FLEET_DOCKER_NETWORK: 'host',
        FLEET_GIT_BASE_URL: daemon.url,
        FLEET_AGENT_CMD: 'sh TASK.md',
        FLEET_DIND: 'off',
        FLEET_WORKER_MEMORY: '1g',
        FLEET_GIT_CACHE: 'on',
        FLEET_GIT_CACHE_DIR: cacheDir,
      }),
      ['bridge', 'spawn'],
    );
  }, 30 * 60_000);

  afterAll(async () => {
    await fleet?.stop();
    await results?.close();
    redis?.disconnect();
    await redisServer?.stop();
    await daemon?.stop();
  });

  it('clones through the mirror and pushes a complete commit', async () => {
    const before = await run('git', ['-C', bare, 'rev-parse', 'main']).then((r) => r.stdout.trim());
    const request = legacyRequest({ agent: 'custom', timeout_seconds: 300, task_content: 'echo mirrored > mirrored.txt' });
    const id = request.request_id as string;
    await publishJson(redis, channels.spawn, request);
    const result = await results.next(id, 240_000);
    expect(result).toMatchObject({ success: true, error_type: null });

    const queue = new Queue(QUEUE_NAMES.spawn, { connection: { url: redisServer.url }, prefix: fleet.config.prefix });
    const { logs } = await queue.getJobLogs(id);
    await queue.close();
    expect(logs.join('\n')).toContain("fleet-worker: cloned with the host's git mirror");
    expect(logs.join('\n')).toContain("fleet-worker: the clone no longer needs the host's git mirror (its objects are copied)");

    const mirror = join(cacheDir, `${mirrorKey(`${daemon.url}/acme/widgets.git`)}.git`);
    expect((await run('git', ['-C', mirror, 'rev-parse', 'refs/heads/main'])).stdout.trim()).toBe(before);
    await run('git', ['-C', bare, 'fsck', '--full', '--no-dangling']);
    expect((await run('git', ['-C', bare, 'rev-parse', 'main^'])).stdout.trim()).toBe(before);
    // Once the container is gone (the result comes first, its removal after), so is its lease: the mirror
    // may be pruned again.
    const leases = join(cacheDir, `${mirrorKey(`${daemon.url}/acme/widgets.git`)}.leases`);
    await expect.poll(() => readdirSync(leases), { timeout: 15_000, interval: 100 }).toEqual([]);
  }, 300_000);
});
