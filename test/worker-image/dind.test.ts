import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { describeDocker } from '../support/docker.ts';
import {
  type BareRepo,
  type RunOptions,
  type WorkerRun,
  BUSYBOX,
  buildWorkerImage,
  docker,
  fakeToken,
  makeBareRepo,
  openForAgent,
  removeLeftovers,
  runWorker,
  tinyImageTar,
  uniqueName,
  workerImageDir,
} from './harness.ts';

// Docker-in-Docker in the TEST-ONLY caps mode, with exactly the settings in worker-image/dind-caps.json
// (what the spawn role applies for FLEET_DIND=caps). The inner /var/lib/docker is a named volume, as the
// per-slot cache (FLEET_DIND_CACHE) gives it.
interface DindCaps {
  CapAdd: string[];
  SecurityOpt: string[];
  CgroupnsMode: string;
  Env: string[];
  DataRoot: string;
}
const caps = JSON.parse(readFileSync(join(workerImageDir, 'dind-caps.json'), 'utf8')) as DindCaps;

describeDocker('coding worker image: docker-in-docker (caps mode)', () => {
  let image: string;
  let repo: BareRepo;
  let fixtures: string;
  const tinyTag = `${uniqueName('fleet-test-tiny')}:1`;
  const volumes: string[] = [];
  const runs: WorkerRun[] = [];

  beforeAll(async () => {
    image = await buildWorkerImage();
    repo = await makeBareRepo();
    fixtures = mkdtempSync(join(tmpdir(), 'fleet-test-fixtures-'));
    openForAgent(fixtures);
    // A tiny image: it runs when the host has a static busybox, else it can only be loaded and listed.
    writeFileSync(join(fixtures, 'tiny.tar'), tinyImageTar(tinyTag));
    openForAgent(join(fixtures, 'tiny.tar'));
  }, 30 * 60_000);

  afterEach(async () => {
    await Promise.all(runs.splice(0).map((r) => r.remove()));
  });

  afterAll(async () => {
    repo?.cleanup();
    if (fixtures) rmSync(fixtures, { recursive: true, force: true });
    const leaked = await removeLeftovers();
    for (const v of volumes) await docker(['volume', 'rm', '--force', v]).catch(() => {});
    expect(leaked).toEqual([]);
  });

  async function newVolume(): Promise<string> {
    const name = uniqueName('fleet-test-dind-cache');
    await docker(['volume', 'create', '--label', 'fleet.test=worker-image', name]);
    volumes.push(name);
    return name;
  }

  async function worker(cmd: string, volume: string, extraEnv: Record<string, string> = {}) {
    const env: Record<string, string> = {
      REPO: 'acme/widgets',
      FLEET_GIT_URL: 'file:///srv/origin.git',
      FLEET_BRANCH: uniqueName('fleet/dind'),
      FLEET_AGENT: 'custom',
      FLEET_DIND_TIMEOUT: '60',
      FLEET_AGENT_CMD: cmd,
      ...extraEnv,
    };
    for (const kv of caps.Env) {
      const [k, ...v] = kv.split('=');
      env[k!] = v.join('=');
    }
    const options: RunOptions = {
      env,
      input: { 'TASK.md': '# Use docker\n' },
      binds: { [repo.path]: '/srv/origin.git', [fixtures]: '/fixtures:ro' },
      volumes: { [volume]: caps.DataRoot },
      capAdd: caps.CapAdd,
      securityOpt: caps.SecurityOpt,
      cgroupns: caps.CgroupnsMode,
    };
    const result = await runWorker(image, options);
    runs.push(result);
    return result;
  }

  it('starts the inner dockerd, so `docker info` works for the agent', async () => {
    const run = await worker('docker info --format "SERVER={{.ServerVersion}} DRIVER={{.Driver}}"', await newVolume());
    expect(run.exitCode).toBe(0);
    expect(run.logLines.find((l) => l.startsWith('SERVER='))).toMatch(/^SERVER=\S+ DRIVER=overlay2$/);
  }, 180_000);

  it('keeps images in the slot volume: an image loaded by one job is listed by the next', async () => {
    const volume = await newVolume();
    const first = await worker('docker load -i /fixtures/tiny.tar', volume);
    expect(first.exitCode).toBe(0);
    expect(first.stdout).toContain(`Loaded image: ${tinyTag}`);

    const list = 'docker image ls --format "IMAGE={{.Repository}}:{{.Tag}}"';
    const second = await worker(list, volume);
    expect(second.exitCode).toBe(0);
    expect(second.logLines).toContain(`IMAGE=${tinyTag}`);

    const elsewhere = await worker(list, await newVolume());
    expect(elsewhere.exitCode).toBe(0);
    expect(elsewhere.logLines).not.toContain(`IMAGE=${tinyTag}`);
  }, 300_000);

  it.skipIf(!BUSYBOX)(
    'runs a container inside the worker',
    async () => {
      const run = await worker(
        `docker load -q -i /fixtures/tiny.tar >/dev/null && docker run --rm --pull never ${tinyTag} /bin/busybox echo INNER-OK`,
        await newVolume(),
      );
      expect(run.exitCode).toBe(0);
      expect(run.logLines).toContain('INNER-OK');
    },
    180_000,
  );

  it.skipIf(!BUSYBOX)(
    'runs `docker compose` inside the worker',
    async () => {
      const compose = `services:\n  hello:\n    image: ${tinyTag}\n    command: ["/bin/busybox", "echo", "COMPOSE-OK"]\n`;
      const run = await worker(
        [
          'docker load -q -i /fixtures/tiny.tar >/dev/null',
          'mkdir -p /tmp/app && cd /tmp/app',
          `printf '%s' '${compose}' > compose.yaml`,
          'docker compose up --no-build --abort-on-container-exit 2>&1',
        ].join('\n'),
        await newVolume(),
      );
      expect(run.exitCode).toBe(0);
      expect(run.stdout).toMatch(/hello.*COMPOSE-OK/); // compose colours the prefix
    },
    180_000,
  );

  // The docker group is root-equivalent; this checks that even then the token is in no process's
  // environment and not on disk while the agent runs (it could still be read from memory: see the
  // entrypoint's header).
  it.skipIf(!BUSYBOX)(
    'leaves no token in any environ or under /run/fleet, even for root through the docker group',
    async () => {
      const token = fakeToken();
      const run = await worker(
        [
          `docker load -q -i /fixtures/tiny.tar >/dev/null`,
          // --pid host is the worker's own PID namespace; the caps make the reader's a superset of root's,
          // which reading another process's environ requires.
          `docker run --rm --pull never --pid host --cap-add SYS_ADMIN --cap-add NET_ADMIN -v /run:/host-run ${tinyTag} /bin/busybox sh -c '` +
            `for f in /proc/[0-9]*/environ; do /bin/busybox tr "\\0" "\\n" < $f; done; ` +
            `echo FILES:; /bin/busybox find /host-run/fleet; /bin/busybox cat /host-run/fleet/* 2>/dev/null; echo SCAN-DONE'`,
        ].join('\n'),
        await newVolume(),
        { GITHUB_TOKEN: token },
      );
      expect(run.exitCode).toBe(0);
      expect(run.logLines).toContain('SCAN-DONE');
      // Root's own processes were read: PID 1's environment holds the fleet's settings.
      expect(run.logLines).toContain('FLEET_GIT_URL=file:///srv/origin.git');
      expect(run.stdout).not.toContain(token);
    },
    180_000,
  );
});
