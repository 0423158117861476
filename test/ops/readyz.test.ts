import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { startTestFleet, type TestFleet } from '../support/fleet.ts';
import { baseUrl, opsEnv } from './support.ts';

let redis: TestRedis;
let t: TestFleet;

beforeAll(async () => {
  redis = await startRedis();
  t = await startTestFleet(opsEnv(redis.url), ['bridge', 'board']);
});
afterAll(async () => {
  await t?.stop();
  await redis?.stop();
});

interface Readiness {
  status: string;
  checks: { name: string; ok: boolean; error?: string }[];
}

describe('/readyz and /healthz', () => {
  it('is ready with Redis up, 503 with Redis down, and ready again once Redis is back', async () => {
    const up = await fetch(`${baseUrl(t)}/readyz`);
    expect(up.status).toBe(200);
    expect(((await up.json()) as Readiness).checks).toEqual([
      { name: 'redis', ok: true },
      { name: 'bridge', ok: true },
    ]);

    await redis.kill();
    try {
      const down = await fetch(`${baseUrl(t)}/readyz`);
      expect(down.status).toBe(503);
      const body = (await down.json()) as Readiness;
      expect(body.status).toBe('not ready');
      expect(body.checks[0]).toMatchObject({ name: 'redis', ok: false });
      // Which check failed, never why: error texts (hosts, ports, paths) stay in the log.
      expect(body.checks.every((c) => Object.keys(c).sort().join() === 'name,ok')).toBe(true);
      expect(JSON.stringify(body)).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|did not answer/);
      // The bridge lost its subscription with Redis: every message published now would be lost.
      await expect
        .poll(async () => ((await (await fetch(`${baseUrl(t)}/readyz`)).json()) as Readiness).checks.find((c) => c.name === 'bridge')?.ok, {
          timeout: 10_000,
          interval: 100,
        })
        .toBe(false);

      // The process itself is fine, and a scrape still answers, fleet-wide gauges left out.
      expect((await fetch(`${baseUrl(t)}/healthz`)).status).toBe(200);
      const metrics = await fetch(`${baseUrl(t)}/metrics`);
      expect(metrics.status).toBe(200);
      const text = await metrics.text();
      expect(text).toMatch(/^fleet_metrics_collect_errors_total\{collector="queue_jobs"\} 1$/m);
      expect(text).toMatch(/^fleet_metrics_collect_errors_total\{collector="hosts"\} 1$/m);
      expect(text).not.toMatch(/^fleet_queue_jobs\{/m);
    } finally {
      // A fleet cannot stop cleanly without its Redis; bring it back whatever happened above.
      await redis.restart();
    }
    await expect.poll(async () => (await fetch(`${baseUrl(t)}/readyz`)).status, { timeout: 30_000, interval: 200 }).toBe(200);
  });
});
