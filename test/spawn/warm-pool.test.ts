import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LABELS } from '../../src/container-runtime.ts';
import { EGRESS_MOUNT } from '../../src/egress/session.ts';
import { channels } from '../../src/protocol.ts';
import { containersWithLabel, describeDocker, removeContainersWithLabel } from '../support/docker.ts';
import {
  legacyRequest,
  publishJson,
  ResultListener,
  spawnFleetProcess,
  startTestFleet,
  testEnv,
  TEST_TOKEN,
  uid,
  type FleetProcess,
} from '../support/fleet.ts';
import { startGitDaemon, type GitDaemon } from '../support/git-daemon.ts';
import { startGitHttpServer, type GitHttpServer } from '../support/git-http.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { runFleet } from '../ops/support.ts';
import { buildWorkerImage } from '../worker-image/harness.ts';

// The warm pool with the REAL worker image (pool mode is in its entrypoint): idle containers hold nothing of a
// request, each serves one job and goes, the pool refills, a stopped host leaves no idle container, a killed
// host's successor removes the old pool, and Docker never shows more job containers than the cap.
// Workers use network `host` to reach a loopback git daemon; the custom agent runs the task as a script.

const run = promisify(execFile);
const REPO = 'acme/widgets';
/** A second repository of the same content, for jobs that are not REPO's. */
const OTHER_REPO = 'acme/gadgets';
/** The task prints the id of the container it runs in (Docker's /etc/hostname mount names it). */
const PRINT_CONTAINER = `echo "CID=$(grep -o 'containers/[0-9a-f]*/hostname' /proc/self/mountinfo | head -1 | cut -d/ -f2)"`;

function docker(...args: string[]): string {
  return execFileSync('docker', args, { encoding: 'utf8' }).trim();
}

function containerOf(logsTail: string | null): string {
  const id = /CID=([0-9a-f]{64})/.exec(logsTail ?? '')?.[1];
  if (!id) throw new Error(`no CID line in the result's log tail:\n${logsTail}`);
  return id;
}

/** Resolves on the first log line of a fleet child process that contains `text` (its `count`th, if given). */
function logLine(proc: FleetProcess, text: string | RegExp, count = 1): Promise<void> {
  const matches = (line: string) => (typeof text === 'string' ? line.includes(text) : text.test(line));
  return new Promise((resolve, reject) => {
    const check = () => {
      if (proc.lines.filter(matches).length >= count) {
        clearInterval(timer);
        resolve();
      }
    };
    // The child's lines arrive on its stdout reader; checked as they come in (and once now).
    const timer = setInterval(check, 50);
    void proc.exited.then((code) => {
      clearInterval(timer);
      reject(new Error(`fleet exited (${code}) before logging "${text}":\n${proc.lines.slice(-15).join('\n')}`));
    });
    check();
  });
}

describeDocker('warm pool with the real worker image', () => {
  let redisServer: TestRedis;
  let redis: Redis;
  let results: ResultListener;
  let image: string;
  let gitDir: string;
  let daemon: GitDaemon;

  beforeAll(async () => {
    image = await buildWorkerImage();
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    results = await ResultListener.start(redisServer.url);
    gitDir = mkdtempSync(join(tmpdir(), 'fleet-warm-git-'));
    mkdirSync(join(gitDir, 'repos', 'acme'), { recursive: true });
    const bare = join(gitDir, 'repos', `${REPO}.git`);
    const work = join(gitDir, 'seed');
    await run('git', ['init', '--quiet', '--bare', '--initial-branch=main', bare]);
    await run('git', ['init', '--quiet', '--initial-branch=main', work]);
    execFileSync('sh', ['-c', 'echo "# widgets" > README.md'], { cwd: work });
    await run('git', ['-C', work, 'add', '-A']);
    await run('git', ['-C', work, '-c', 'user.name=t', '-c', 'user.email=t@t.invalid', 'commit', '-q', '-m', 'seed']);
    await run('git', ['-C', work, 'push', '-q', bare, 'HEAD:main']);
    const other = join(gitDir, 'repos', `${OTHER_REPO}.git`);
    await run('git', ['init', '--quiet', '--bare', '--initial-branch=main', other]);
    await run('git', ['-C', work, 'push', '-q', other, 'HEAD:main']);
    daemon = await startGitDaemon(join(gitDir, 'repos'), REPO);
  }, 30 * 60_000);

  afterAll(async () => {
    await results?.close();
    redis?.disconnect();
    await redisServer?.stop();
    await daemon?.stop();
    if (gitDir) rmSync(gitDir, { recursive: true, force: true });
  });

  const env = (overrides: Record<string, string> = {}) =>
    testEnv(redisServer.url, image, {
      FLEET_DOCKER_NETWORK: 'host',
      FLEET_GIT_BASE_URL: daemon.url,
      FLEET_AGENT_CMD: 'sh TASK.md',
      FLEET_DIND: 'off',
      FLEET_WORKER_MEMORY: '512m',
      FLEET_WARM_POOL: '2',
      ...overrides,
    });

  /**
   * A cap-1 fleet under FLEET_EGRESS=proxy (test fleets run open) whose forge is a smart-HTTP server that insists on
   * the token, with a copy of the test repository: the worker (network none) reaches it only through the job's
   * proxy, whose broker swaps the worker's key for the token.
   */
  async function proxiedLab(overrides: Record<string, string>) {
    const root = mkdtempSync(join(tmpdir(), 'fleet-warm-forge-'));
    mkdirSync(join(root, 'acme'));
    const bare = join(root, `${REPO}.git`);
    await run('git', ['clone', '--quiet', '--bare', join(gitDir, 'repos', `${REPO}.git`), bare]);
    const forge = await startGitHttpServer(root, TEST_TOKEN);
    const cleanUp = async () => {
      await forge.stop();
      rmSync(root, { recursive: true, force: true });
    };
    let fleet: Awaited<ReturnType<typeof startTestFleet>>;
    try {
      fleet = await startTestFleet(
        env({
          FLEET_EGRESS: 'proxy',
          FLEET_DOCKER_NETWORK: 'none',
          FLEET_GIT_BASE_URL: forge.url,
          FLEET_HOST_CONCURRENCY: '1',
          ...overrides,
        }),
        ['bridge', 'spawn'],
      );
    } catch (error) {
      await cleanUp();
      throw error;
    }
    return {
      fleet,
      forge,
      bare,
      async stop() {
        await stopFleet(fleet);
        await cleanUp();
      },
    };
  }

  /** A suite's fleet goes, and every container of its host with it (a test that failed half-way leaves some). */
  async function stopFleet(fleet: Awaited<ReturnType<typeof startTestFleet>> | undefined) {
    if (!fleet) return;
    await fleet.stop();
    removeContainersWithLabel(`${LABELS.host}=${fleet.config.hostId}`);
  }

  describe('one host, cap 2, pool 2', () => {
    let fleet: Awaited<ReturnType<typeof startTestFleet>>;
    const hostLabel = () => `${LABELS.host}=${fleet.config.hostId}`;
    /** The pool's idle containers: a claimed one keeps the pool label but takes its job's name. */
    const idlePool = () =>
      docker('ps', '-a', '--no-trunc', '--filter', `label=${LABELS.pool}=${fleet.spawn!.pool!.instance}`, '--format', '{{.ID}} {{.Names}}')
        .split('\n')
        .filter((line) => line.includes('-warm-'))
        .map((line) => line.split(' ')[0]!);

    beforeAll(async () => {
      fleet = await startTestFleet(env({ FLEET_HOST_CONCURRENCY: '2' }), ['bridge', 'spawn']);
      await fleet.spawn!.pool!.whenIdle(2);
    }, 120_000);
    afterAll(() => stopFleet(fleet));

    const send = async (task: string) => {
      const request = legacyRequest({ agent: 'custom', timeout_seconds: 120, task_content: task });
      await publishJson(redis, channels.spawn, request);
      return request.request_id as string;
    };

    it('serves each job in its own pool container, removes it after, and refills the pool', async () => {
      const before = idlePool();
      expect(before).toHaveLength(2);
      const marker = uid('task-marker');
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push(await send(`# Print the container\n${PRINT_CONTAINER}\necho ${marker}-${i}\n`));
      const served: string[] = [];
      for (const id of ids) {
        const result = await results.next(id, 120_000);
        expect(result).toMatchObject({ success: true, error_type: null });
        served.push(containerOf(result.logs_tail));
      }
      // One job per container: three jobs, three containers, and the first two were the idle ones.
      expect(new Set(served).size).toBe(3);
      expect(before.every((id) => served.includes(id))).toBe(true);
      expect(fleet.spawn!.warmPool()!.claims).toBeGreaterThanOrEqual(2);
      await fleet.spawn!.pool!.whenIdle(2);
      const refilled = idlePool();
      expect(refilled).toHaveLength(2);
      expect(refilled.some((id) => served.includes(id))).toBe(false);

      // The pool on /metrics (read at scrape time) and in `fleet status` (the host's heartbeat record).
      const metrics = await (await fetch(`http://127.0.0.1:${fleet.httpPort}/metrics`)).text();
      expect(metrics).toMatch(/^fleet_warm_pool_idle 2$/m);
      expect(metrics).toMatch(/^fleet_warm_pool_claims_total [2-9]$/m);
      expect(metrics).toMatch(/^fleet_warm_pool_misses_total \d+$/m);
      const status = await runFleet(['status', '--json'], { REDIS_URL: redisServer.url, FLEET_PREFIX: fleet.config.prefix });
      expect(JSON.parse(status.stdout).hosts[0].warm).toMatchObject({ size: 2 });
    }, 300_000);

    it('an idle pool container holds no token, task or request data (env, labels, files, /proc)', async () => {
      // A job ran on this host just before: nothing of it may reach the next idle containers.
      const marker = uid('secret-task');
      const id = await send(`# Leave nothing\necho ${marker}\n`);
      expect(await results.next(id, 120_000)).toMatchObject({ success: true });
      await fleet.spawn!.pool!.whenIdle(2);
      const idle = idlePool();
      expect(idle).toHaveLength(2);
      for (const container of idle) {
        const inspected = docker('inspect', container);
        for (const needle of [TEST_TOKEN, marker, id, REPO, 'GITHUB_TOKEN', 'TASK_TITLE', 'FLEET_REQUEST_ID']) {
          expect(inspected).not.toContain(needle);
        }
        // Every process's environment and command line, and every file fleet or a job would write, read out
        // whole and searched here (a search inside would hold the needles in its own command line).
        const inside = docker(
          'exec',
          container,
          'sh',
          '-c',
          'cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" "\\n"; ls -la /run/fleet /fleet/input; ' +
            'find /run /fleet /tmp /workspace /home -type f -size -1M -exec cat {} + 2>/dev/null; echo END',
        );
        expect(inside).toContain('END');
        expect(inside).toContain('FLEET_POOL=1');
        for (const needle of [TEST_TOKEN, marker, id, REPO]) expect(inside).not.toContain(needle);
        expect(inside).not.toMatch(/github-token|TASK\.md|request\.json|GITHUB_TOKEN=/);
      }
    }, 300_000);

    it('holds the cap by Docker’s own count: never more than 2 job containers, nor more than cap + pool in all', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) ids.push(await send(`# Wait a little\nsleep 1\n${PRINT_CONTAINER}\n`));
      let done = false;
      const pending = Promise.all(ids.map((id) => results.next(id, 180_000))).finally(() => (done = true));
      let samples = 0;
      let maxJobs = 0;
      let maxAll = 0;
      // Observation, not synchronisation: Docker's list, read as often as it answers while the jobs run.
      while (!done) {
        const { stdout } = await run('docker', ['ps', '-a', '--filter', `label=${hostLabel()}`, '--format', '{{.Names}}']);
        const names = stdout.split('\n').filter(Boolean);
        maxAll = Math.max(maxAll, names.length);
        maxJobs = Math.max(maxJobs, names.filter((name) => !name.includes('-warm-')).length);
        samples++;
      }
      const all = await pending;
      expect(all.every((r) => r.success)).toBe(true);
      expect(samples).toBeGreaterThan(3);
      expect(maxJobs).toBeGreaterThan(0);
      expect(maxJobs).toBeLessThanOrEqual(2);
      expect(maxAll).toBeLessThanOrEqual(4);
    }, 300_000);
  });

  describe('one host under FLEET_EGRESS=proxy, cap 1, pool 1', () => {
    let lab: Awaited<ReturnType<typeof proxiedLab>>;
    let fleet: Awaited<ReturnType<typeof startTestFleet>>;
    let forge: GitHttpServer;
    const forgeBare = () => lab.bare;

    beforeAll(async () => {
      lab = await proxiedLab({ FLEET_WARM_POOL: '1' });
      ({ fleet, forge } = lab);
      await fleet.spawn!.pool!.whenIdle(1);
    }, 120_000);
    afterAll(async () => {
      await lab?.stop();
    });

    /** The idle container of the pool, with the host directory bound at the egress mount. */
    const idleOne = () => {
      const [id, ...more] = docker(
        'ps',
        '-a',
        '--no-trunc',
        '--filter',
        `label=${LABELS.pool}=${fleet.spawn!.pool!.instance}`,
        '--format',
        '{{.ID}} {{.Names}}',
      )
        .split('\n')
        .filter((line) => line.includes('-warm-'))
        .map((line) => line.split(' ')[0]!);
      expect(more).toEqual([]);
      const inspected = JSON.parse(docker('inspect', id!))[0];
      const mount = inspected.Mounts.find((m: { Destination: string }) => m.Destination === EGRESS_MOUNT);
      return { id: id!, inspected, mount: mount as { Source: string; RW: boolean } | undefined };
    };

    it('an idle container runs on network none with an empty egress directory: no socket, no key, no token', async () => {
      const { id, inspected, mount } = idleOne();
      expect(inspected.HostConfig.NetworkMode).toBe('none');
      expect(mount).toBeDefined();
      expect(mount!.RW).toBe(false);
      expect(mount!.Source.startsWith(join(tmpdir(), 'fleet-pool-egress-'))).toBe(true);
      expect(readdirSync(mount!.Source)).toEqual([]);
      const text = JSON.stringify(inspected);
      for (const needle of [TEST_TOKEN, 'HTTPS_PROXY', 'FLEET_EGRESS_SOCKET']) expect(text).not.toContain(needle);
      const inside = docker(
        'exec',
        id,
        'sh',
        '-c',
        `echo "mount:[$(ls -A ${EGRESS_MOUNT})]"; ls -la /run/fleet /fleet/input; ` +
          'cat /proc/[0-9]*/environ 2>/dev/null | tr "\\0" "\\n"; find /run /fleet /tmp -type f -size -1M -exec cat {} + 2>/dev/null; echo END',
      );
      expect(inside).toContain('END');
      expect(inside).toContain('mount:[]');
      expect(inside).toContain('FLEET_POOL=1');
      expect(inside).not.toContain(TEST_TOKEN);
      expect(inside).not.toMatch(/broker-key|github-token|HTTPS_PROXY=|FLEET_EGRESS_SOCKET=/);
    }, 120_000);

    it('a job served by the pool container pushes through the broker, and its egress directory goes with it', async () => {
      const { id: warm, mount } = idleOne();
      const marker = uid('pooled');
      const request = legacyRequest({
        agent: 'custom',
        timeout_seconds: 120,
        task_content: `# Commit through the proxy\n${PRINT_CONTAINER}\necho ${marker} > pooled.txt\n`,
      });
      await publishJson(redis, channels.spawn, request);
      const result = await results.next(request.request_id as string, 180_000);
      expect(result).toMatchObject({ success: true, error_type: null });
      expect(containerOf(result.logs_tail)).toBe(warm);
      expect(fleet.spawn!.warmPool()!.claims).toBe(1);
      // The push reached the forge with the token, which only the host's broker holds.
      const sha = (await run('git', ['--git-dir', forgeBare(), 'rev-parse', 'main'])).stdout.trim();
      expect(sha).toBe(result.commit_sha);
      const { stdout: pushed } = await run('git', ['--git-dir', forgeBare(), 'show', `${sha}:pooled.txt`]);
      expect(pushed.trim()).toBe(marker);
      expect(forge.requests.some((r) => r.method === 'POST' && r.path.endsWith('/git-receive-pack') && r.authorized)).toBe(true);
      // The result goes out before Docker's removal (result before teardown): the directory goes with the container.
      await expect.poll(() => existsSync(mount!.Source), { timeout: 60_000 }).toBe(false);
      expect(containersWithLabel(`${LABELS.host}=${fleet.config.hostId}`)).not.toContain(warm);
      // The refill gets a directory of its own.
      await fleet.spawn!.pool!.whenIdle(1);
      const next = idleOne();
      expect(next.id).not.toBe(warm);
      expect(next.mount!.Source).not.toBe(mount!.Source);
      expect(readdirSync(next.mount!.Source)).toEqual([]);
    }, 300_000);

    it('a stopped host leaves no pool egress directory', async () => {
      const { mount } = idleOne();
      expect(existsSync(mount!.Source)).toBe(true);
      await fleet.spawn!.pool!.stopIdle();
      expect(existsSync(mount!.Source)).toBe(false);
      expect(readdirSync(tmpdir()).filter((name) => name.startsWith(`fleet-pool-egress-${fleet.spawn!.pool!.instance}-`))).toEqual([]);
    }, 120_000);
  });

  describe('one host with a repository pool (FLEET_WARM_REPOS=acme/widgets, no generic pool), cap 1', () => {
    let fleet: Awaited<ReturnType<typeof startTestFleet>>;
    let seed: string;
    const OTHER = OTHER_REPO;
    const idlePool = () =>
      docker('ps', '-a', '--no-trunc', '--filter', `label=${LABELS.pool}=${fleet.spawn!.pool!.instance}`, '--format', '{{.ID}} {{.Names}}')
        .split('\n')
        .filter((line) => line.includes('-warm-'))
        .map((line) => line.split(' ')[0]!);
    const send = async (task: string, repo = REPO) => {
      const request = legacyRequest({ agent: 'custom', timeout_seconds: 120, task_content: task, repo });
      await publishJson(redis, channels.spawn, request);
      return request.request_id as string;
    };
    const bare = (repo: string) => join(gitDir, 'repos', `${repo}.git`);
    const git = async (...args: string[]) => (await run('git', args)).stdout.trim();
    /** A commit on the remote's main that no mirror has yet. */
    const pushToMain = async (file: string) => {
      await git('-C', seed, 'pull', '-q', bare(REPO), 'main');
      execFileSync('sh', ['-c', `echo new > ${file}`], { cwd: seed });
      await git('-C', seed, 'add', '-A');
      await git('-C', seed, '-c', 'user.name=t', '-c', 'user.email=t@t.invalid', 'commit', '-q', '-m', `add ${file}`);
      await git('-C', seed, 'push', '-q', bare(REPO), 'HEAD:main');
      return git('-C', bare(REPO), 'rev-parse', 'main');
    };

    beforeAll(async () => {
      seed = join(gitDir, 'seed');
      fleet = await startTestFleet(
        env({ FLEET_HOST_CONCURRENCY: '1', FLEET_WARM_POOL: '0', FLEET_WARM_REPOS: REPO, FLEET_GIT_CACHE: 'on' }),
        ['bridge', 'spawn'],
      );
    }, 120_000);
    afterAll(() => stopFleet(fleet));

    it("waits for the repository's first job to make a mirror, then keeps a container with the clone made from it and no secret", async () => {
      // No mirror on the host yet: nothing to clone from, so no container (the pool's look ends at once, and nothing
      // is starting or idle after it); the first job starts cold and makes the mirror.
      await expect.poll(() => fleet.spawn!.warmPool()!.starting, { timeout: 30_000 }).toBe(0);
      expect(fleet.spawn!.warmPool()).toMatchObject({ size: 1, idle: 0 });
      expect(idlePool()).toEqual([]);
      const first = await send('# Nothing\necho first\n');
      expect(await results.next(first, 120_000)).toMatchObject({ success: true });
      expect(fleet.spawn!.warmPool()).toMatchObject({ claims: 0, misses: 1 });
      await fleet.spawn!.pool!.whenIdle(1);
      const [container] = idlePool();
      const main = await git('-C', bare(REPO), 'rev-parse', 'main');
      // The clone is there, at the remote's main, whole without the mirror; the work tree is the agent's.
      const inside = docker(
        'exec',
        container!,
        'sh',
        '-c',
        'git --git-dir=/fleet/state/repo.git rev-parse HEAD; stat -c %U /workspace/README.md; ' +
          'cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" "\\n"; ls -la /run/fleet /fleet/input; ' +
          'find /run /fleet/input /tmp /home -type f -size -1M -exec cat {} + 2>/dev/null; echo END',
      );
      expect(inside.split('\n').slice(0, 2)).toEqual([main, 'agent']);
      expect(inside).toContain('END');
      expect(() => docker('exec', container!, 'test', '-e', '/fleet/state/repo.git/objects/info/alternates')).toThrow();
      expect(inside).toContain(`REPO=${REPO}`);
      for (const needle of [TEST_TOKEN, first, 'GITHUB_TOKEN=', 'TASK_TITLE=', 'FLEET_REQUEST_ID=']) expect(inside).not.toContain(needle);
      expect(inside).not.toMatch(/github-token|TASK\.md/);
    }, 300_000);

    it('a job of another repository never takes it; a job of this one does, fetches what the remote got since, and pushes on top of it', async () => {
      await fleet.spawn!.pool!.whenIdle(1);
      const [waiting] = idlePool();
      const other = await send('# Elsewhere\necho elsewhere > other.txt\n', OTHER);
      expect(await results.next(other, 120_000)).toMatchObject({ success: true });
      // Another spelling is another mirror and another URL: not this container's either (and no such repository here).
      const spelled = await send('# Elsewhere\necho x\n', 'ACME/widgets');
      expect(await results.next(spelled, 120_000)).toMatchObject({ success: false, error_type: 'clone_failed' });
      expect(idlePool()).toEqual([waiting]);
      // Each of the three jobs missed (an attempt BullMQ retries misses again: CI saw 5).
      expect(fleet.spawn!.warmPool()!.claims).toBe(0);
      expect(fleet.spawn!.warmPool()!.misses).toBeGreaterThanOrEqual(3);

      // The remote moves after the clone was made: the claim must start from where it is now.
      const moved = await pushToMain('NEW.md');
      const id = await send(
        `# Work on top of the new commit\n${PRINT_CONTAINER}\ntest -f NEW.md && echo HAS-NEW\necho change > change.txt\n`,
      );
      const result = await results.next(id, 120_000);
      expect(result).toMatchObject({ success: true, error_type: null });
      expect(containerOf(result.logs_tail)).toBe(waiting);
      expect(result.logs_tail).toContain('HAS-NEW');
      expect(fleet.spawn!.warmPool()).toMatchObject({ claims: 1, repoClaims: 1 });
      const metrics = await (await fetch(`http://127.0.0.1:${fleet.httpPort}/metrics`)).text();
      expect(metrics).toMatch(/^fleet_warm_pool_repo_claims_total 1$/m);
      // Pushed on top of the fetched commit, and the remote is whole: the push did not lean on the host's mirror.
      const branch = result.branch as string;
      expect(await git('-C', bare(REPO), 'rev-parse', `${branch}^`)).toBe(moved);
      await git('-C', bare(REPO), 'fsck', '--full', '--no-dangling');

      // The replacement comes from the mirror as the job's token brought it up to date: the new commit included.
      await fleet.spawn!.pool!.whenIdle(1);
      const [next] = idlePool();
      expect(next).not.toBe(waiting);
      expect(docker('exec', next!, 'git', '--git-dir=/fleet/state/repo.git', 'rev-parse', 'HEAD')).toBe(moved);
    }, 300_000);

    it("a tracked AGENTS.md that changed since the clone: the job's own AGENTS.md, on top of the remote's change", async () => {
      // A clone that has AGENTS.md (the claim of this job brings the mirror, and so the next clone, to it) ...
      await pushToMain('AGENTS.md');
      expect(await results.next(await send('# Nothing\necho x\n'), 120_000)).toMatchObject({ success: true });
      await fleet.spawn!.pool!.whenIdle(1);
      const [waiting] = idlePool();
      expect(docker('exec', waiting!, 'cat', '/workspace/AGENTS.md')).toBe('new');
      // ... then the remote changes it: the claim checks out the remote's main over a work tree that already holds
      // the job's AGENTS.md.
      await git('-C', seed, 'pull', '-q', bare(REPO), 'main');
      execFileSync('sh', ['-c', 'echo changed > AGENTS.md'], { cwd: seed });
      await git('-C', seed, '-c', 'user.name=t', '-c', 'user.email=t@t.invalid', 'commit', '-q', '-am', 'change AGENTS.md');
      await git('-C', seed, 'push', '-q', bare(REPO), 'HEAD:main');
      const changed = await git('-C', bare(REPO), 'rev-parse', 'main');
      const request = legacyRequest({
        agent: 'custom',
        timeout_seconds: 120,
        task_content: `# Read the instructions\n${PRINT_CONTAINER}\necho "AGENTS=$(cat AGENTS.md)"\necho y > y.txt\n`,
        agents_content: 'the job says so',
      });
      await publishJson(redis, channels.spawn, request);
      const result = await results.next(request.request_id as string, 120_000);
      expect(result).toMatchObject({ success: true, error_type: null });
      expect(containerOf(result.logs_tail)).toBe(waiting);
      expect(result.logs_tail).toContain('AGENTS=the job says so');
      expect(await git('-C', bare(REPO), 'rev-parse', `${result.commit_sha}^`)).toBe(changed);
      // The job's AGENTS.md is the agent's instructions, not a change to the repository's.
      expect(await git('-C', bare(REPO), 'show', `${result.commit_sha}:AGENTS.md`)).toBe('changed');
    }, 300_000);

    it("a remote whose default branch was renamed since the clone: a fresh clone, on the remote's new default", async () => {
      await fleet.spawn!.pool!.whenIdle(1);
      const [waiting] = idlePool();
      await git('-C', bare(REPO), 'branch', '-m', 'main', 'trunk');
      await git('-C', bare(REPO), 'symbolic-ref', 'HEAD', 'refs/heads/trunk');
      try {
        const request = legacyRequest({
          agent: 'custom',
          timeout_seconds: 120,
          task_content: `# Work\n${PRINT_CONTAINER}\necho z > z.txt\n`,
        });
        await publishJson(redis, channels.spawn, request);
        const result = await results.next(request.request_id as string, 120_000);
        expect(result).toMatchObject({ success: true, error_type: null, branch: 'trunk' });
        expect(containerOf(result.logs_tail)).toBe(waiting);
        expect(result.logs_tail).toContain('cloning afresh');
        expect(await git('-C', bare(REPO), 'rev-parse', 'trunk')).toBe(result.commit_sha);
      } finally {
        // The suites after this one clone this repository too, and expect its main.
        await git('-C', bare(REPO), 'branch', '-m', 'trunk', 'main');
        await git('-C', bare(REPO), 'symbolic-ref', 'HEAD', 'refs/heads/main');
      }
    }, 300_000);
  });

  describe('a generic pool beside a repository pool (FLEET_WARM_POOL=1, FLEET_WARM_REPOS), cap 1', () => {
    let fleet: Awaited<ReturnType<typeof startTestFleet>>;
    beforeAll(async () => {
      fleet = await startTestFleet(
        env({ FLEET_HOST_CONCURRENCY: '1', FLEET_WARM_POOL: '1', FLEET_WARM_REPOS: OTHER_REPO, FLEET_GIT_CACHE: 'on' }),
        ['bridge', 'spawn'],
      );
    }, 120_000);
    afterAll(() => stopFleet(fleet));

    it("a job of the repository on a generic container makes the mirror that the repository's own container is cloned from", async () => {
      await fleet.spawn!.pool!.whenIdle(1);
      expect(fleet.spawn!.warmPool()).toMatchObject({ size: 2, idle: 1 });
      const request = legacyRequest({ agent: 'custom', timeout_seconds: 120, task_content: '# Nothing\necho x\n', repo: OTHER_REPO });
      await publishJson(redis, channels.spawn, request);
      expect(await results.next(request.request_id as string, 120_000)).toMatchObject({ success: true });
      expect(fleet.spawn!.warmPool()).toMatchObject({ claims: 1, repoClaims: 0, misses: 0 });
      // The generic one's replacement, and the repository's first container, from the mirror that claim made.
      await fleet.spawn!.pool!.whenIdle(2);
    }, 300_000);
  });

  describe('a repository pool under FLEET_EGRESS=proxy (network none, a forge that insists on the token)', () => {
    let lab: Awaited<ReturnType<typeof proxiedLab>>;
    let fleet: Awaited<ReturnType<typeof startTestFleet>>;
    const forgeBare = () => lab.bare;

    beforeAll(async () => {
      lab = await proxiedLab({ FLEET_WARM_POOL: '0', FLEET_WARM_REPOS: REPO, FLEET_GIT_CACHE: 'on' });
      ({ fleet } = lab);
    }, 120_000);
    afterAll(async () => {
      await lab?.stop();
    });

    it("a claim fetches what is new through the job's proxy (the container has no other way out) and pushes", async () => {
      const send = async (task: string) => {
        const request = legacyRequest({ agent: 'custom', timeout_seconds: 120, task_content: task });
        await publishJson(redis, channels.spawn, request);
        return results.next(request.request_id as string, 180_000);
      };
      // The first job starts cold and makes the host's mirror (with its token, on the host); then the pool fills.
      expect(await send('# Nothing\necho first\n')).toMatchObject({ success: true });
      await fleet.spawn!.pool!.whenIdle(1);

      // A commit the mirror does not have, straight into the forge's repository.
      const work = mkdtempSync(join(tmpdir(), 'fleet-warm-repo-work-'));
      try {
        await run('git', ['clone', '--quiet', forgeBare(), work]);
        execFileSync('sh', ['-c', 'echo proxied > PROXIED.md'], { cwd: work });
        await run('git', ['-C', work, 'add', '-A']);
        await run('git', ['-C', work, '-c', 'user.name=t', '-c', 'user.email=t@t.invalid', 'commit', '-q', '-m', 'proxied']);
        await run('git', ['-C', work, 'push', '-q', 'origin', 'HEAD:main']);
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
      const moved = (await run('git', ['--git-dir', forgeBare(), 'rev-parse', 'main'])).stdout.trim();

      const result = await send(`# On top of the new commit\ntest -f PROXIED.md && echo HAS-PROXIED\necho x > via-proxy.txt\n`);
      expect(result).toMatchObject({ success: true, error_type: null });
      expect(result.logs_tail).toContain('HAS-PROXIED');
      expect(fleet.spawn!.warmPool()).toMatchObject({ claims: 1, repoClaims: 1 });
      const parent = (await run('git', ['--git-dir', forgeBare(), 'rev-parse', `${result.commit_sha}^`])).stdout.trim();
      expect(parent).toBe(moved);
    }, 300_000);
  });

  describe('a host process', () => {
    const procs: FleetProcess[] = [];
    const hosts: string[] = [];
    afterAll(() => {
      for (const proc of procs) if (proc.child.exitCode === null) proc.child.kill('SIGKILL');
      // A test that failed half-way leaves its host's containers: they go with it.
      for (const host of hosts) removeContainersWithLabel(`${LABELS.host}=${host}`);
    });

    it('SIGTERM leaves no idle pool container', async () => {
      const e = env({ FLEET_HOST_CONCURRENCY: '1' });
      hosts.push(e.FLEET_HOST_ID!);
      const proc = spawnFleetProcess(e, ['spawn']);
      procs.push(proc);
      await proc.ready;
      await logLine(proc, 'warm pool full');
      expect(containersWithLabel(`${LABELS.host}=${e.FLEET_HOST_ID}`)).toHaveLength(2);
      proc.child.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
      expect(containersWithLabel(`${LABELS.host}=${e.FLEET_HOST_ID}`)).toEqual([]);
    }, 180_000);

    it('a host killed with -9 and started again leaves none of its old pool', async () => {
      const e = env({ FLEET_HOST_CONCURRENCY: '1' });
      const label = `${LABELS.host}=${e.FLEET_HOST_ID}`;
      hosts.push(e.FLEET_HOST_ID!);
      const first = spawnFleetProcess(e, ['spawn']);
      procs.push(first);
      await first.ready;
      await logLine(first, 'warm pool full');
      const old = containersWithLabel(label);
      expect(old).toHaveLength(2);
      first.child.kill('SIGKILL');
      await first.exited;
      expect(containersWithLabel(label)).toEqual(old);

      const second = spawnFleetProcess(e, ['spawn']);
      procs.push(second);
      await second.ready;
      // Its pool instance beats no more: once its key expires (a lock duration), the new host removes its containers.
      // (At start-up when the key is gone by then, or by the pool's own check on a later beat.)
      await logLine(second, /removed a pool container of a dead pool instance|removed an orphaned worker container/, 2);
      await logLine(second, 'warm pool full');
      const now = containersWithLabel(label);
      expect(now).toHaveLength(2);
      expect(now.some((id) => old.includes(id))).toBe(false);
      second.child.kill('SIGTERM');
      expect(await second.exited).toBe(0);
      expect(containersWithLabel(label)).toEqual([]);
    }, 240_000);

    it('under FLEET_EGRESS=proxy, a host killed with -9 and started again removes the old pool egress and claim directories', async () => {
      const e = env({ FLEET_HOST_CONCURRENCY: '1', FLEET_EGRESS: 'proxy', FLEET_DOCKER_NETWORK: 'none' });
      const label = `${LABELS.host}=${e.FLEET_HOST_ID}`;
      hosts.push(e.FLEET_HOST_ID!);
      const first = spawnFleetProcess(e, ['spawn']);
      procs.push(first);
      await first.ready;
      await logLine(first, 'warm pool full');
      const mountOf = (id: string, target: string) =>
        docker('inspect', '--format', `{{range .Mounts}}{{if eq .Destination "${target}"}}{{.Source}}{{end}}{{end}}`, id);
      const egressDirs = containersWithLabel(label).map((id) => mountOf(id, EGRESS_MOUNT));
      const claimDirs = containersWithLabel(label).map((id) => mountOf(id, '/fleet/input'));
      expect(egressDirs).toHaveLength(2);
      expect(egressDirs.every((dir) => dir.startsWith(join(tmpdir(), 'fleet-pool-egress-')) && existsSync(dir))).toBe(true);
      expect(claimDirs.every((dir) => dir.startsWith(join(tmpdir(), 'fleet-pool-claim-')) && existsSync(dir))).toBe(true);
      const dirs = [...egressDirs, ...claimDirs];
      first.child.kill('SIGKILL');
      await first.exited;
      // A directory younger than a minute may belong to a container about to be created: aged here, not waited for.
      const old = new Date(Date.now() - 5 * 60_000);
      for (const dir of dirs) utimesSync(dir, old, old);

      const second = spawnFleetProcess(e, ['spawn']);
      procs.push(second);
      await second.ready;
      await logLine(second, 'removed the egress directory of a dead pool instance', 2);
      await logLine(second, 'removed the claim directory of a dead pool instance', 2);
      expect(dirs.filter((dir) => existsSync(dir))).toEqual([]);
      await logLine(second, 'warm pool full');
      second.child.kill('SIGTERM');
      expect(await second.exited).toBe(0);
      expect(containersWithLabel(label)).toEqual([]);
    }, 240_000);
  });
});
