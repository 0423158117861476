import { spawnSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LABELS } from '../../src/container-runtime.ts';
import { containersWithLabel, describeDocker, removeContainersWithLabel, testImage } from '../support/docker.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { uid } from '../support/fleet.ts';
import { runFleet } from './support.ts';

describeDocker('fleet reap', () => {
  let redis: TestRedis;
  const prefix = uid();
  const host = `reap-${prefix}`;

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    removeContainersWithLabel(`${LABELS.host}=${host}`);
    await redis?.stop();
  });

  /** A stopped worker container labelled as fleet labels them (never started: nothing runs). */
  const create = (job: string, lock: string): string => {
    const labels = { [LABELS.host]: host, [LABELS.prefix]: prefix, [LABELS.job]: job, [LABELS.lock]: lock, [LABELS.requestId]: job };
    const out = spawnSync('docker', ['create', ...Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]), testImage()], {
      encoding: 'utf8',
    });
    expect(out.status, out.stderr).toBe(0);
    return out.stdout.trim();
  };

  it('removes the containers no job attempt holds, keeps the live one, and prints what it removed', async () => {
    const orphan = create('job-gone', 'token-old');
    const stale = create('job-moved', 'token-old');
    const live = create('job-live', 'token-live');
    const client = new Redis(redis.url);
    await client.set(`${prefix}:spawn:job-moved:lock`, 'token-new');
    await client.set(`${prefix}:spawn:job-live:lock`, 'token-live');
    await client.quit();

    const env = { REDIS_URL: redis.url, FLEET_PREFIX: prefix, FLEET_HOST_ID: host };
    const run = await runFleet(['reap'], env);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`removed 2 orphaned worker container(s) of host ${host}`);
    expect(run.stdout).toContain(orphan.slice(0, 12));
    expect(run.stdout).toContain(stale.slice(0, 12));
    expect(containersWithLabel(`${LABELS.host}=${host}`)).toEqual([live]);

    const again = await runFleet(['reap'], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`no orphaned worker container of host ${host}`);
  });
});
