import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeDocker, testImage } from '../support/docker.ts';
import { startTestFleet, testEnv, type TestFleet } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';

interface Readiness {
  status: string;
  checks: { name: string; ok: boolean }[];
}

/** A misconfigured host (a runtime Docker lacks, such as sysbox not installed) is out of rotation from its start. */
describeDocker('first start: a FLEET_RUNTIME that Docker does not know (real Docker)', () => {
  let server: TestRedis;
  const fleets: TestFleet[] = [];

  beforeAll(async () => {
    server = await startRedis();
  });
  afterAll(async () => {
    for (const f of fleets) await f.stop();
    await server?.stop();
  });

  it('/readyz is 503 and names the runtime; the same host with a known runtime is ready', async () => {
    const image = testImage();
    const wrong = await startTestFleet(testEnv(server.url, image, { FLEET_RUNTIME: 'nonexistent' }), ['spawn']);
    fleets.push(wrong);
    const response = await fetch(`http://127.0.0.1:${wrong.httpPort}/readyz`);
    expect(response.status).toBe(503);
    const body = (await response.json()) as Readiness;
    expect(body.checks.filter((c) => !c.ok)).toEqual([{ name: 'runtime nonexistent', ok: false }]);

    const right = await startTestFleet(testEnv(server.url, image), ['spawn']);
    fleets.push(right);
    const ready = await fetch(`http://127.0.0.1:${right.httpPort}/readyz`);
    expect(((await ready.json()) as Readiness).checks).toContainEqual({ name: 'runtime runc', ok: true });
    expect(ready.status).toBe(200);
  });
});
