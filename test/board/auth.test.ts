import { Queue, Worker, type Job } from 'bullmq';
import express from 'express';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBoardRouter } from '../../board/board.ts';
import { createLogger } from '../../src/logger.ts';
import { ADMIN, READER, basic, baseUrl, opsEnv } from '../ops/support.ts';
import { startTestFleet, type TestFleet } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';

const API = '/admin/queues/api/queues';

let redis: TestRedis;
let t: TestFleet;
let queue: Queue;
let completed: Job;
let failed: Job;

beforeAll(async () => {
  redis = await startRedis();
  t = await startTestFleet(
    opsEnv(redis.url, {
      FLEET_BOARD_USER: ADMIN.user,
      FLEET_BOARD_PASSWORD: ADMIN.password,
      FLEET_BOARD_READONLY_USER: READER.user,
      FLEET_BOARD_READONLY_PASSWORD: READER.password,
    }),
    ['board'],
  );
  // Jobs made by a plain BullMQ worker: these tests are about the board, not the spawn path.
  queue = new Queue('spawn', { connection: { url: redis.url }, prefix: t.config.prefix });
  const data = (id: string) => ({
    request: { request_id: id, repo: 'o/r', task_content: 'x' },
    sealedToken: 'v1.SEALED-CIPHERTEXT-abcdef',
    source: 'cli',
    acceptedAt: Date.now(),
  });
  await queue.add('spawn', data('ok-1'), { jobId: 'ok-1' });
  await queue.add('spawn', data('bad-1'), { jobId: 'bad-1' });
  const worker = new Worker(
    'spawn',
    async (job) => {
      await job.log('container output line 1');
      if (job.id === 'bad-1') throw new Error('task failed on purpose');
      return { success: true };
    },
    { connection: { url: redis.url }, prefix: t.config.prefix },
  );
  const settled = new Promise<void>((resolve) => {
    let n = 0;
    const done = () => ++n === 2 && resolve();
    worker.on('completed', done);
    worker.on('failed', done);
  });
  await settled;
  await worker.close();
  completed = (await queue.getJob('ok-1'))!;
  failed = (await queue.getJob('bad-1'))!;
}, 30_000);

afterAll(async () => {
  await queue?.close();
  await t?.stop();
  await redis?.stop();
});

const call = (
  path: string,
  init: { method?: string; auth?: { user: string; password: string }; headers?: Record<string, string>; body?: unknown } = {},
) =>
  fetch(`${baseUrl(t)}${path}`, {
    method: init.method ?? 'GET',
    headers: {
      ...(init.auth ? { authorization: basic(init.auth) } : {}),
      ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...init.headers,
    },
    body: init.body !== undefined ? JSON.stringify(init.body) : undefined,
  });

describe('board authentication', () => {
  it('answers 401 with a basic-auth challenge without credentials or with wrong ones', async () => {
    for (const path of [
      '/admin/queues',
      '/admin/queues/queue/spawn',
      `${API}`,
      `${API}/spawn/ok-1/logs`,
      '/admin/queues/static/images/logo.svg',
    ]) {
      const anonymous = await call(path);
      expect(anonymous.status, path).toBe(401);
      expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic realm="fleet board"/);
    }
    expect((await call('/admin/queues', { auth: { user: ADMIN.user, password: 'wrong' } })).status).toBe(401);
    expect((await call('/admin/queues', { auth: { user: READER.user, password: ADMIN.password } })).status).toBe(401);
    expect((await call(`${API}/spawn/bad-1/retry`, { method: 'PUT' })).status).toBe(401);
  });

  it('serves the board to both accounts, in read-only mode to the read-only one', async () => {
    const page = await call('/admin/queues', { auth: ADMIN });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<div id="root">');
    expect((await call('/admin/queues', { auth: READER })).status).toBe(200);

    const admin = (await (await call(`${API}?activeQueue=spawn`, { auth: ADMIN })).json()) as {
      queues: { name: string; readOnlyMode: boolean }[];
    };
    const reader = (await (await call(`${API}?activeQueue=spawn`, { auth: READER })).json()) as {
      queues: { name: string; readOnlyMode: boolean }[];
    };
    expect(admin.queues.map((q) => q.name).sort()).toEqual(['merge', 'review', 'spawn']);
    expect(admin.queues.every((q) => !q.readOnlyMode)).toBe(true);
    expect(reader.queues.every((q) => q.readOnlyMode)).toBe(true);
  });

  it('leaves /healthz, /readyz and /metrics outside the board', async () => {
    expect((await call('/healthz')).status).toBe(200);
    const ready = await call('/readyz');
    expect(ready.status).toBe(200); // Redis is up, so every check passes
    expect(await ready.json()).toMatchObject({ status: 'ready' });
    expect((await call('/metrics')).status).toBe(200);
  });
});

describe('job details on the board', () => {
  it('shows logs and progress but never the sealed token', async () => {
    const body = await (await call(`${API}/spawn/ok-1`, { auth: READER })).text();
    expect(body).toContain('"sealedToken":"[sealed]"');
    expect(body).not.toContain('SEALED-CIPHERTEXT');
    const list = await (await call(`${API}?activeQueue=spawn&status=latest`, { auth: ADMIN })).text();
    expect(list).toContain('ok-1');
    expect(list).not.toContain('SEALED-CIPHERTEXT');
    const logs = (await (await call(`${API}/spawn/ok-1/logs`, { auth: READER })).json()) as string[];
    expect(logs).toEqual(['container output line 1']);
  });
});

describe('read-only account', () => {
  const writes: { method: string; path: string; body?: unknown }[] = [
    { method: 'PUT', path: `${API}/spawn/bad-1/retry` },
    { method: 'PUT', path: `${API}/spawn/ok-1/clean` },
    { method: 'PUT', path: `${API}/spawn/ok-1/promote` },
    { method: 'PUT', path: `${API}/spawn/retry/failed` },
    { method: 'PUT', path: `${API}/spawn/clean/completed` },
    { method: 'PUT', path: `${API}/spawn/promote` },
    { method: 'PUT', path: `${API}/spawn/pause` },
    { method: 'PUT', path: `${API}/spawn/resume` },
    { method: 'PUT', path: `${API}/pause` },
    { method: 'PUT', path: `${API}/spawn/empty` },
    { method: 'PUT', path: `${API}/spawn/obliterate`, body: {} },
    { method: 'PUT', path: `${API}/spawn/concurrency`, body: { concurrency: 1 } },
    { method: 'POST', path: `${API}/spawn/add`, body: { name: 'x', data: {} } },
    { method: 'PATCH', path: `${API}/spawn/ok-1/update-data`, body: { jobData: {} } },
    { method: 'DELETE', path: `${API}/spawn/ok-1` },
  ];

  it('is refused every write route, and nothing changes', async () => {
    for (const write of writes) {
      const response = await call(write.path, { method: write.method, auth: READER, body: write.body });
      expect(response.status, `${write.method} ${write.path}`).toBe(403);
    }
    expect(await failed.getState()).toBe('failed');
    expect(await completed.getState()).toBe('completed');
    expect(await queue.isPaused()).toBe(false);
    expect(await queue.count()).toBe(0);
  });

  it('while the admin account retries and removes jobs', async () => {
    const retry = await call(`${API}/spawn/bad-1/retry`, { method: 'PUT', auth: ADMIN });
    expect([200, 204]).toContain(retry.status);
    expect(await failed.getState()).toBe('waiting');

    const remove = await call(`${API}/spawn/ok-1/clean`, { method: 'PUT', auth: ADMIN });
    expect(remove.status).toBe(204);
    expect(await queue.getJob('ok-1')).toBeUndefined();
  });

  it('refuses writes that a browser marks as coming from another site, even for the admin', async () => {
    const response = await call(`${API}/spawn/pause`, { method: 'PUT', auth: ADMIN, headers: { 'sec-fetch-site': 'cross-site' } });
    expect(response.status).toBe(403);
    expect(await queue.isPaused()).toBe(false);
  });
});

describe('a board without credentials', () => {
  const logger = createLogger({ level: 'silent' });

  it('refuses to start on a non-loopback address', () => {
    expect(() =>
      createBoardRouter({ queues: [queue], accounts: { admin: undefined, readonly: undefined }, listenHost: '0.0.0.0', logger }),
    ).toThrow(/FLEET_BOARD_USER/);
  });

  it('answers only requests addressed to localhost (no DNS rebinding)', async () => {
    const app = express();
    app.use(
      '/admin/queues',
      createBoardRouter({ queues: [queue], accounts: { admin: undefined, readonly: undefined }, listenHost: '127.0.0.1', logger }),
    );
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      expect((await fetch(`http://127.0.0.1:${port}/admin/queues`)).status).toBe(200);
      // fetch may not set Host; node:http may.
      const rebound = await new Promise<number>((resolve, reject) => {
        request({ host: '127.0.0.1', port, path: '/admin/queues', headers: { host: `evil.example:${port}` } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        })
          .on('error', reject)
          .end();
      });
      expect(rebound).toBe(403);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
