import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ContainerRuntime, WorkerContainer } from '../../src/container-runtime.ts';
import { createDockerRuntime } from '../../src/docker-runtime.ts';
import { channels } from '../../src/protocol.ts';
import { containersWithLabel, describeDocker, removeContainersWithLabel, testImage } from '../support/docker.ts';
import { completedLine, legacyRequest, publishJson, ResultListener, startTestFleet, testEnv, type TestFleet } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';

/**
 * The real Docker runtime, with every container's removal held until the test opens the gate: the order of
 * "result published" and "container removed" is then a fact the test observes, not a race it hopes to win.
 */
function gatedRemoval(): { runtime: ContainerRuntime; open(): void; removalsAsked: () => number } {
  const real = createDockerRuntime();
  let open!: () => void;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  let asked = 0;
  const runtime: ContainerRuntime = {
    ...real,
    async create(spec, files) {
      const c = await real.create(spec, files);
      const gated: WorkerContainer = {
        id: c.id,
        start: () => c.start(),
        lines: (max) => c.lines(max),
        wait: () => c.wait(),
        exitState: () => c.exitState(),
        kill: () => c.kill(),
        async remove(options) {
          asked++;
          await gate;
          await c.remove(options);
        },
      };
      return gated;
    },
  };
  return { runtime, open, removalsAsked: () => asked };
}

describeDocker('result before teardown (real Redis, real Docker)', () => {
  let server: TestRedis;
  let redis: Redis;
  let results: ResultListener;
  let fleet: TestFleet | undefined;
  let hostLabel = '';
  let gated: ReturnType<typeof gatedRemoval> | undefined;

  beforeAll(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
    results = await ResultListener.start(server.url);
  });
  afterAll(async () => {
    // A failed assertion leaves the gate shut: open it, or the fleet's stop waits on the held removal.
    gated?.open();
    await fleet?.stop();
    if (hostLabel) removeContainersWithLabel(hostLabel);
    await results?.close();
    redis?.disconnect();
    await server?.stop();
  });

  it('publishes the result while the container is still being removed, and frees the slot only once it is gone', async () => {
    const env = testEnv(server.url, testImage(), { FLEET_HOST_CONCURRENCY: '1' });
    hostLabel = `fleet.host=${env.FLEET_HOST_ID}`;
    gated = gatedRemoval();
    fleet = await startTestFleet(env, ['bridge', 'spawn'], { runtime: gated.runtime });
    const first = legacyRequest({ task_content: completedLine('first') });
    const second = legacyRequest({ task_content: completedLine('second') });
    await publishJson(redis, channels.spawn, first);
    await publishJson(redis, channels.spawn, second);

    // Removal is held: the result can only arrive if it goes out before teardown.
    expect(await results.next(first.request_id as string, 30_000)).toMatchObject({ success: true, summary: 'first' });
    expect(gated.removalsAsked()).toBe(1);
    expect(containersWithLabel(`fleet.request_id=${first.request_id}`)).toHaveLength(1);
    // The cap (1) holds by Docker's own count: the second job waits for the first container to be gone.
    expect(containersWithLabel(hostLabel)).toHaveLength(1);
    expect(fleet.spawn!.running()).toBe(1);

    gated.open();
    expect(await results.next(second.request_id as string, 30_000)).toMatchObject({ success: true, summary: 'second' });
    expect(results.all(first.request_id as string)).toHaveLength(1);
    expect(results.all(second.request_id as string)).toHaveLength(1);
    await expect.poll(() => containersWithLabel(hostLabel).length, { timeout: 10_000, interval: 100 }).toBe(0);
  });
});
