import { once, EventEmitter } from 'node:events';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createGitHubForges, tokenId, type GitHubForges } from '../../src/github/index.ts';
import { uid } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { FAST_LIMITS, memoryLogger } from './helpers.ts';

const TOKEN = 'ghp_evict_me_0123456789abcdef';
const OTHER = 'ghp_keep_me_0123456789abcdefg';
const REPO = 'acme/widgets';
const HEARTBEAT_MS = 20;

/**
 * A GitHub API that knows one call (GET /repos/:owner/:repo) and can hold its answers: a request it holds
 * stays in flight for as long as the test wants.
 */
class GateServer extends EventEmitter {
  url = '';
  holding = false;
  private readonly held: ServerResponse[] = [];
  private readonly server: Server = createServer((req, res) => {
    this.emit('request', req.url);
    if (this.holding) this.held.push(res);
    else this.answer(res);
  });

  async listen() {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  release() {
    this.holding = false;
    for (const res of this.held.splice(0)) this.answer(res);
  }

  async close() {
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, 'close');
  }

  private answer(res: ServerResponse) {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ full_name: REPO, default_branch: 'main' }));
  }
}

let redis: TestRedis;
let admin: Redis;
let gate: GateServer;
let forges: GitHubForges | undefined;
let prefix: string;

beforeAll(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url);
});
afterAll(async () => {
  admin.disconnect();
  await redis.stop();
});
beforeEach(async () => {
  prefix = uid('gh');
  gate = new GateServer();
  await gate.listen();
});
afterEach(async () => {
  await forges?.close();
  forges = undefined;
  await gate.close();
});

/** Pub/sub channels of this test's limiters, for one token or all. */
const channels = (token?: string) => admin.pubsub('CHANNELS', `b_${prefix}:gh:*${token ? `${tokenId(token)}*` : ''}`) as Promise<string[]>;

/** Lua script calls Redis ran (Bottleneck's heartbeats and jobs are scripts). */
async function scriptCalls(): Promise<number> {
  const info = await admin.info('commandstats');
  return [...info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
}

/** Script calls during `ms` of wall time: a window of many heartbeats, to see whether anything still polls. */
async function scriptCallsDuring(ms: number): Promise<number> {
  const before = await scriptCalls();
  await new Promise((r) => setTimeout(r, ms));
  return (await scriptCalls()) - before;
}

/** Subscriptions of every connection this Redis has (the limiters share one subscriber connection). */
async function subscriptions(): Promise<number> {
  const list = await admin.client('LIST');
  return [...String(list).matchAll(/ sub=(\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
}

function start(options: { clientIdleMs: number; now?: () => number }) {
  forges = createGitHubForges({
    apiUrl: gate.url,
    redis: redis.url,
    prefix,
    logger: memoryLogger(),
    limits: FAST_LIMITS,
    heartbeatIntervalMs: HEARTBEAT_MS,
    ...options,
  });
  return forges;
}

describe('idle GitHub clients', () => {
  it('are dropped after clientIdleMs: their limiters stop polling Redis and leave their subscriptions', async () => {
    const github = start({ clientIdleMs: 1_000 });
    expect(await github.forToken(TOKEN).getDefaultBranch(REPO)).toBe('main');
    expect(await channels(TOKEN)).not.toEqual([]);
    expect(await subscriptions()).toBeGreaterThan(0);
    // Alive, its limiters poll Redis: a heartbeat script every HEARTBEAT_MS.
    expect(await scriptCallsDuring(10 * HEARTBEAT_MS)).toBeGreaterThanOrEqual(3);

    // Nothing to wait on but the sweep's timer: poll for its effect, bounded.
    await vi.waitFor(async () => expect(await channels()).toEqual([]), { timeout: 5_000, interval: 50 });
    expect(github.clientCount).toBe(0);
    expect(await github.limiterStats()).toEqual([]);
    expect(await subscriptions()).toBe(0);
    expect(await scriptCallsDuring(10 * HEARTBEAT_MS)).toBe(0);
  });

  it('are kept while a request is in flight, however long, and while recently used', async () => {
    let clock = 1_000_000;
    const github = start({ clientIdleMs: 60_000, now: () => clock });
    const forge = github.forToken(TOKEN);
    expect(await forge.getDefaultBranch(REPO)).toBe('main');
    await github.forToken(OTHER).getDefaultBranch(REPO);

    gate.holding = true;
    const arrived = once(gate, 'request');
    const slow = forge.getDefaultBranch(REPO);
    await arrived;
    clock += 10 * 60_000;
    // OTHER is idle and goes; TOKEN's request is still in flight: it stays, subscribed and polling.
    expect(await github.evictIdle()).toBe(1);
    expect(await channels(OTHER)).toEqual([]);
    expect(await channels(TOKEN)).not.toEqual([]);
    expect(github.clientCount).toBe(1);

    gate.release();
    expect(await slow).toBe('main');
    clock += 59_000;
    expect(await github.evictIdle()).toBe(0);
    expect(await channels(TOKEN)).not.toEqual([]);
    clock += 2_000;
    expect(await github.evictIdle()).toBe(1);
    expect(await channels()).toEqual([]);
    expect(await scriptCallsDuring(10 * HEARTBEAT_MS)).toBe(0);
  });

  it('leave their forges usable: a dropped forge that is used again is tracked, and dropped, again', async () => {
    let clock = 0;
    const github = start({ clientIdleMs: 1_000, now: () => clock });
    const kept = github.forToken(TOKEN);
    await kept.getDefaultBranch(REPO);
    clock += 2_000;
    expect(await github.evictIdle()).toBe(1);
    expect(github.clientCount).toBe(0);

    expect(await kept.getDefaultBranch(REPO)).toBe('main');
    expect(github.clientCount).toBe(1);
    expect(await channels(TOKEN)).not.toEqual([]);
    clock += 2_000;
    expect(await github.evictIdle()).toBe(1);
    expect(await channels()).toEqual([]);
  });

  it('refuses a clientIdleMs that is not a positive number of milliseconds', () => {
    expect(() => start({ clientIdleMs: 0 })).toThrow(/clientIdleMs must be a number of milliseconds > 0, got 0/);
  });
});
