/**
 * gVisor (issue 12 item 4): a job runs end to end under FLEET_RUNTIME=runsc, with Docker-in-Docker off and
 * network none, in the REAL worker image with the custom agent. The shared dockerd is never reconfigured: a
 * private dockerd (the fault suite's helper) gets runsc from a daemon.json of its own, and the worker image
 * is loaded into it. With no network at all, the repository comes from inside the container: a test image
 * adds a bare repository under /srv/git on top of the worker image, and FLEET_GIT_BASE_URL is file:///srv/git.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channels } from '../../src/protocol.ts';
import { dockerAvailable } from '../support/docker.ts';
import { EventRecorder, legacyRequest, publishJson, ResultListener, startTestFleet, testEnv, uid } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { PrivateDockerd } from '../faults/private-dockerd.ts';
import { buildWorkerImage } from '../worker-image/harness.ts';

const RUNSC = '/usr/bin/runsc';
const runscInstalled = spawnSync(RUNSC, ['--version'], { stdio: 'ignore' }).status === 0;
const usable = dockerAvailable && PrivateDockerd.usable() && runscInstalled;
if (!runscInstalled && dockerAvailable && process.env.FLEET_REQUIRE_DOCKER === '1') {
  throw new Error('FLEET_REQUIRE_DOCKER=1 but runsc is not installed: run scripts/install-prereqs.sh (it installs runsc)');
}
if (!usable && dockerAvailable) {
  console.warn('\n*** NOTICE: runsc (apt-get install runsc) or root is missing: the gVisor test is SKIPPED ***\n');
}

const REPO = 'acme/widgets';

/** A bare repository with one commit on main, in `dir/acme/widgets.git`. */
function seedRepository(dir: string): string {
  const bare = join(dir, `${REPO}.git`);
  const work = join(dir, '..', 'seed');
  mkdirSync(join(dir, 'acme'), { recursive: true });
  const git = (cwd: string, ...args: string[]) =>
    execFileSync('git', ['-c', 'user.name=fleet-test', '-c', 'user.email=t@fleet.invalid', '-C', cwd, ...args], {
      encoding: 'utf8',
    }).trim();
  execFileSync('git', ['init', '--quiet', '--bare', '--initial-branch=main', bare]);
  execFileSync('git', ['init', '--quiet', '--initial-branch=main', work]);
  writeFileSync(join(work, 'README.md'), '# widgets\n');
  git(work, 'add', '--all');
  git(work, 'commit', '--quiet', '-m', 'seed');
  git(work, 'push', '--quiet', bare, 'HEAD:main');
  return git(bare, 'rev-parse', 'main');
}

(usable ? describe : describe.skip)('gVisor: FLEET_RUNTIME=runsc, DinD off, network none, the real worker image', () => {
  let dockerd: PrivateDockerd;
  let redisServer: TestRedis;
  let redis: Redis;
  let results: ResultListener;
  let events: EventRecorder;
  let image: string;
  let seeded: string;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fleet-runsc-'));
    const configFile = join(dir, 'daemon.json');
    // The platform stays gVisor's default: --platform=kvm hangs on this machine.
    writeFileSync(configFile, JSON.stringify({ runtimes: { runsc: { path: RUNSC, runtimeArgs: ['--network=none'] } } }));
    const workerImage = await buildWorkerImage();
    dockerd = await PrivateDockerd.start(0, { configFile, onDisk: true, image: workerImage });
    // The repository inside the image: with network none nothing outside the container can be reached.
    const context = join(dir, 'context');
    seeded = seedRepository(join(context, 'git'));
    writeFileSync(join(context, 'Dockerfile'), `FROM ${workerImage}\nCOPY git /srv/git\n`);
    image = `fleet-runsc-e2e:${uid('t')}`;
    dockerd.cli(['build', '--quiet', '--network', 'none', '-t', image, context]);
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    results = await ResultListener.start(redisServer.url);
    events = await EventRecorder.start(redisServer.url);
  }, 30 * 60_000);

  afterAll(async () => {
    events?.close();
    await results?.close();
    redis?.disconnect();
    await redisServer?.stop();
    await dockerd?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('clones, runs the custom agent, commits and pushes; the kernel it saw is gVisor and its only interface is lo', async () => {
    const fleet = await startTestFleet(
      testEnv(redisServer.url, image, {
        FLEET_DOCKER_HOST: dockerd.host,
        FLEET_RUNTIME: 'runsc',
        FLEET_DIND: 'off',
        FLEET_DOCKER_NETWORK: 'none',
        FLEET_GIT_BASE_URL: 'file:///srv/git',
        FLEET_AGENT_CMD: 'sh TASK.md',
        FLEET_WORKER_MEMORY: '1g',
      }),
      ['bridge', 'spawn'],
    );
    try {
      const request = legacyRequest({
        agent: 'custom',
        timeout_seconds: 300,
        task_title: 'Add the greeting',
        task_content: [
          '# Add the greeting',
          'echo "hello from gVisor" > hello.txt',
          'echo "KERNEL=$(uname -r)"',
          // gVisor refuses /sys/class/net to a non-root user; its /proc/net/dev lists the interfaces.
          `echo "INTERFACES=$(awk 'NR > 2 { printf "%s ", $1 }' /proc/net/dev)"`,
        ].join('\n'),
      });
      const id = request.request_id as string;
      await publishJson(redis, channels.spawn, request);
      const result = await results.next(id, 240_000);

      expect(result).toMatchObject({ success: true, exit_code: 0, branch: 'main', error_type: null, files_changed: ['hello.txt'] });
      expect(result.commit_sha).toMatch(/^[0-9a-f]{40}$/);
      expect(result.commit_sha).not.toBe(seeded);
      // gVisor's Sentry answers uname with its own kernel version (4.4.0), not the host's.
      expect(result.logs_tail).toMatch(/KERNEL=4\.4\.0/);
      expect(result.logs_tail).toMatch(/INTERFACES=lo: \n/);
      expect(execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim()).not.toBe('4.4.0');
      const types = (await events.untilResult(id)).map((e) => e.event_type);
      expect(types[0]).toBe('started');
      expect(types.at(-1)).toBe('completed');
      // The container goes from the daemon that ran it (the result comes first, removal after it).
      await expect.poll(() => dockerd.containersWithLabel(`fleet.request_id=${id}`), { timeout: 30_000, interval: 100 }).toEqual([]);
    } finally {
      await fleet.stop();
    }
  }, 300_000);
});
