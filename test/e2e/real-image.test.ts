import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channels, LEGACY_RESULT_KEYS } from '../../src/protocol.ts';
import { containersWithLabel, describeDocker } from '../support/docker.ts';
import { EventRecorder, legacyRequest, publishJson, ResultListener, startTestFleet, testEnv, TEST_TOKEN, uid } from '../support/fleet.ts';
import { startGitDaemon } from '../support/git-daemon.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { BUSYBOX, buildWorkerImage, tinyImageTar } from '../worker-image/harness.ts';

// The REAL coding worker image end to end through an in-process fleet (bridge + spawn roles): a
// legacy request with `agent: "custom"` goes in, the worker clones from a loopback `git daemon`
// (git://, so no credentials are involved), the custom agent runs the request's task as a script
// (FLEET_AGENT_CMD='sh TASK.md'), the entrypoint commits and pushes, and one result comes out.
// Workers use network `host` to reach the daemon on 127.0.0.1; nothing leaves loopback.

const run = promisify(execFile);
const REPO = 'acme/widgets';
const AGENT_CMD = 'sh TASK.md';

interface GitServer {
  url: string;
  /** The bare repository as the daemon serves it. */
  git(...args: string[]): Promise<string>;
  /** Adds files on main from a seed repository, pushing over git:// as any other client would. */
  seed(files: Record<string, string | Buffer>): Promise<string>;
  stop(): Promise<void>;
}

async function startGitServer(): Promise<GitServer> {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-e2e-git-'));
  const bare = join(dir, 'repos', `${REPO}.git`);
  const work = join(dir, 'seed');
  const git = async (cwd: string, ...args: string[]) =>
    (
      await run('git', ['-c', 'user.name=fleet-e2e', '-c', 'user.email=e2e@fleet.invalid', '-C', cwd, ...args], {
        maxBuffer: 64 * 1024 * 1024,
      })
    ).stdout.trim();
  mkdirSync(join(dir, 'repos', 'acme'), { recursive: true });
  await run('git', ['init', '--quiet', '--bare', '--initial-branch=main', bare]);
  await run('git', ['init', '--quiet', '--initial-branch=main', work]);

  const daemon = await startGitDaemon(join(dir, 'repos'), REPO);
  const { url } = daemon;

  return {
    url,
    git: (...args) => git(bare, ...args),
    async seed(files) {
      if (await git(bare, 'rev-parse', '--verify', '--quiet', 'main').catch(() => '')) {
        await git(work, 'fetch', '--quiet', `${url}/${REPO}.git`, 'main');
        await git(work, 'reset', '--quiet', '--hard', 'FETCH_HEAD');
      }
      for (const [name, content] of Object.entries(files)) writeFileSync(join(work, name), content);
      await git(work, 'add', '--all');
      await git(work, 'commit', '--quiet', '-m', `seed ${Object.keys(files).join(', ')}`);
      await git(work, 'push', '--quiet', `${url}/${REPO}.git`, 'HEAD:main');
      return git(bare, 'rev-parse', 'main');
    },
    async stop() {
      await daemon.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describeDocker('the real worker image through the fleet', () => {
  let redisServer: TestRedis;
  let redis: Redis;
  let results: ResultListener;
  let events: EventRecorder;
  let gitServer: GitServer;
  let image: string;

  beforeAll(async () => {
    image = await buildWorkerImage();
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    results = await ResultListener.start(redisServer.url);
    events = await EventRecorder.start(redisServer.url);
    gitServer = await startGitServer();
    await gitServer.seed({ 'README.md': '# widgets\n' });
  }, 30 * 60_000);

  afterAll(async () => {
    events?.close();
    await results?.close();
    redis?.disconnect();
    await redisServer?.stop();
    await gitServer?.stop();
  });

  const env = (overrides: Record<string, string> = {}) =>
    testEnv(redisServer.url, image, {
      FLEET_DOCKER_NETWORK: 'host',
      FLEET_GIT_BASE_URL: gitServer.url,
      FLEET_AGENT_CMD: AGENT_CMD,
      FLEET_DIND: 'off',
      FLEET_WORKER_MEMORY: '1g',
      ...overrides,
    });

  describe('without Docker-in-Docker', () => {
    let fleet: Awaited<ReturnType<typeof startTestFleet>>;
    beforeAll(async () => {
      fleet = await startTestFleet(env(), ['bridge', 'spawn']);
    });
    afterAll(async () => {
      await fleet?.stop();
    });

    it('answers a legacy request with the pushed commit: eleven keys, events in order, no TASK.md or AGENTS.md in the commit', async () => {
      const before = await gitServer.git('rev-parse', 'main');
      const request = legacyRequest({
        agent: 'custom',
        timeout_seconds: 300,
        task_title: 'Add the greeting',
        agents_content: '# Rules\nKeep it short.\n',
        task_content: [
          '# Add the greeting',
          'echo "hello from the agent" > hello.txt',
          'mkdir -p src && echo "export {}" > src/index.ts',
          'echo "AGENT_UID=$(id -u)"',
        ].join('\n'),
      });
      const id = request.request_id as string;
      await publishJson(redis, channels.spawn, request);
      const result = await results.next(id, 240_000);

      expect(Object.keys(JSON.parse(results.raw.get(id)![0]!))).toEqual([...LEGACY_RESULT_KEYS]);
      const head = await gitServer.git('rev-parse', 'main');
      expect(head).not.toBe(before);
      expect(await gitServer.git('rev-parse', 'main^')).toBe(before);
      expect(result).toMatchObject({
        request_id: id,
        success: true,
        exit_code: 0,
        commit_sha: head,
        branch: 'main',
        error_type: null,
        error_message: null,
      });
      expect([...result.files_changed!].sort()).toEqual(['hello.txt', 'src/index.ts']);
      expect(await gitServer.git('log', '-1', '--format=%s', head)).toBe('feat: Add the greeting');
      expect((await gitServer.git('ls-tree', '-r', '--name-only', head)).split('\n').sort()).toEqual([
        'README.md',
        'hello.txt',
        'src/index.ts',
      ]);
      expect(await gitServer.git('show', `${head}:hello.txt`)).toBe('hello from the agent');
      expect(result.logs_tail).toMatch(/AGENT_UID=[1-9]/);
      expect(JSON.stringify(result)).not.toContain(TEST_TOKEN);

      const mine = await events.untilResult(id);
      const types = mine.map((e) => e.event_type);
      expect(types[0]).toBe('started');
      expect(types.at(-1)).toBe('completed');
      expect(types.slice(1, -1).every((t) => t === 'progress')).toBe(true);
      expect(mine.filter((e) => e.event_type === 'progress').map((e) => (e as { stage?: string }).stage)).toEqual([
        'prepare',
        'clone',
        'run',
        'commit',
        'push',
      ]);
      expect(mine[0]).toMatchObject({ repo: REPO, task_summary: '# Add the greeting', worker_type: 'custom' });
      expect(mine.at(-1)).toMatchObject({ commit_sha: head });
      await expect.poll(() => containersWithLabel(`fleet.request_id=${id}`), { timeout: 15_000, interval: 100 }).toEqual([]);
    }, 300_000);

    it('reports a failing agent with a long log as task_failed, with its exit code', async () => {
      const request = legacyRequest({
        agent: 'custom',
        timeout_seconds: 300,
        task_content: '# Fail loudly\nfor i in $(seq 1 300); do printf "line %s %0200d\\n" "$i" 0; done\nexit 5\n',
      });
      const id = request.request_id as string;
      await publishJson(redis, channels.spawn, request);
      const result = await results.next(id, 240_000);
      expect(result).toMatchObject({ success: false, exit_code: 5, error_type: 'task_failed', commit_sha: null });
      expect(result.error_message).toContain('exited with code 5');
      expect(result.logs_tail).toContain('line 300');
      expect((await events.untilResult(id)).map((e) => e.event_type).at(-1)).toBe('failed');
    }, 300_000);
  });

  describe('Docker-in-Docker in caps mode with the slot cache', () => {
    let fleet: Awaited<ReturnType<typeof startTestFleet>>;
    const tinyTag = `${uid('fleet-e2e-tiny')}:1`;

    beforeAll(async () => {
      await gitServer.seed({ 'tiny.tar': tinyImageTar(tinyTag) });
      fleet = await startTestFleet(env({ FLEET_DIND: 'caps', FLEET_DIND_CACHE: 'on', FLEET_HOST_CONCURRENCY: '1' }), ['bridge', 'spawn']);
    }, 300_000);

    afterAll(async () => {
      await fleet?.stop();
      if (fleet) await run('docker', ['volume', 'rm', '--force', `${fleet.config.prefix}-dind-${fleet.config.hostId}-0`]).catch(() => {});
    });

    it('keeps an image one job loaded for the next job on the slot', async () => {
      const volume = `${fleet.config.prefix}-dind-${fleet.config.hostId}-0`;
      const load = legacyRequest({ agent: 'custom', timeout_seconds: 300, task_content: '# Load the image\ndocker load -i tiny.tar\n' });
      await publishJson(redis, channels.spawn, load);
      const loaded = await results.next(load.request_id as string, 240_000);
      expect(loaded).toMatchObject({ success: true, commit_sha: null, error_type: null });
      expect(loaded.logs_tail).toContain(`Loaded image: ${tinyTag}`);
      expect((await run('docker', ['volume', 'inspect', '--format', '{{.Name}}', volume])).stdout.trim()).toBe(volume);

      const list = legacyRequest({
        agent: 'custom',
        timeout_seconds: 300,
        task_content: '# List the images\ndocker image ls --format "IMAGE={{.Repository}}:{{.Tag}}"\n',
      });
      await publishJson(redis, channels.spawn, list);
      const listed = await results.next(list.request_id as string, 240_000);
      expect(listed).toMatchObject({ success: true, error_type: null });
      expect(listed.logs_tail!.split('\n')).toContain(`IMAGE=${tinyTag}`);
      // The inner dockerd shared the host's network namespace: it was kept off the network.
      expect(listed.logs_tail).toContain("shares the host's network namespace");
      for (const request of [load, list])
        await expect
          .poll(() => containersWithLabel(`fleet.request_id=${request.request_id as string}`), { timeout: 15_000, interval: 100 })
          .toEqual([]);
    }, 600_000);

    // An inner container whose PID 1 ignores SIGTERM holds the inner dockerd's shutdown for its stop timeout
    // (4 s): long enough that the result must come while the worker is still stopping, were it not sealed early.
    it.skipIf(!BUSYBOX)(
      'publishes the result while the worker is still stopping its inner dockerd, then lets it exit on its own before removal',
      async () => {
        const request = legacyRequest({
          agent: 'custom',
          timeout_seconds: 300,
          task_content: `# Leave a stubborn inner container\ndocker load -q -i tiny.tar && docker run -d --stop-timeout 4 --pull never ${tinyTag} /bin/busybox sleep 600\n`,
        });
        const id = request.request_id as string;
        const since = Math.floor(Date.now() / 1000);
        await publishJson(redis, channels.spawn, request);
        expect(await results.next(id, 240_000)).toMatchObject({ success: true, exit_code: 0, error_type: null });
        const [container] = containersWithLabel(`fleet.request_id=${id}`);
        expect(container).toBeDefined();
        expect((await run('docker', ['inspect', '--format', '{{.State.Running}}', container!])).stdout.trim()).toBe('true');

        await expect.poll(() => containersWithLabel(`fleet.request_id=${id}`), { timeout: 30_000, interval: 100 }).toEqual([]);
        // It stopped by itself with code 0 (its inner dockerd done), not killed by the removal.
        const events = await run('docker', [
          'events',
          '--since',
          String(since),
          '--until',
          String(Math.floor(Date.now() / 1000) + 1),
          '--filter',
          `container=${container}`,
          '--format',
          '{{.Action}} {{index .Actor.Attributes "exitCode"}}',
        ]);
        const actions = events.stdout.trim().split('\n');
        expect(actions).toContain('die 0');
        expect(actions.filter((a) => a.startsWith('kill'))).toEqual([]);
      },
      300_000,
    );
  });
});
