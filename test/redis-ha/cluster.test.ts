import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openOps } from '../../src/cli/ops/connect.ts';
import { readStatus } from '../../src/cli/ops/status.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { startFleet } from '../../src/fleet.ts';
import { createLogger } from '../../src/logger.ts';
import { channels, LEGACY_RESULT_KEYS, type FlowResult } from '../../src/protocol.ts';
import { connectRedis, redisTargetFromEnv, type RedisTarget } from '../../src/redis-connection.ts';
import { basic, baseUrl } from '../ops/support.ts';
import { startGitHubTestServer, type GitHubTestServer } from '../servers/github.ts';
import { startLlmTestServer, type LlmTestServer } from '../servers/llm.ts';
import { completedEvent } from '../support/fakes/runtime.ts';
import { legacyRequest, publishJson, ResultListener, startTestFleet, testEnv, uid, type TestFleet } from '../support/fleet.ts';
import { startClusterTopology, type ClusterTopology } from '../support/redis-topology.ts';
import { countingRuntime, topologyEnv } from './support.ts';

const WORKER_TOKEN = `ghp_${'W0rkerTokenForClust'.repeat(2)}`;
const REVIEWER_TOKEN = `ghp_${'Rev1ewerTokenForClus'.repeat(2)}`;
const ADMIN = { user: 'admin', password: 'cluster-board-password' };

// A three-primary Redis Cluster made with `redis-cli --cluster create`; the fleet runs every role on it.
describe('Redis Cluster (three primaries, REDIS_CLUSTER_NODES)', () => {
  let cluster: ClusterTopology;
  let target: RedisTarget;
  let redis: Redis;
  let results: ResultListener;
  let github: GitHubTestServer;
  let llm: LlmTestServer;
  let fleet: TestFleet;
  let env: Record<string, string>;
  const { runtime, runs } = countingRuntime((spec) => {
    if (!spec.env.FLEET_BRANCH) return [completedEvent()];
    // A flow's scope worker "pushes" its branch, as the real one does, so a pull request can be opened.
    const sha = github.pushBranch(spec.env.REPO!, spec.env.FLEET_BRANCH);
    return [completedEvent({ commit_sha: sha, branch: spec.env.FLEET_BRANCH, files_changed: [`${spec.env.FLEET_SCOPE ?? 'x'}.txt`] })];
  });

  beforeAll(async () => {
    cluster = await startClusterTopology();
    target = redisTargetFromEnv({ REDIS_CLUSTER_NODES: cluster.nodeList })!;
    redis = connectRedis(target, 'command', 'test:cmd');
    results = await ResultListener.start(target);
    github = await startGitHubTestServer({ users: { [WORKER_TOKEN]: 'fleet-bot', [REVIEWER_TOKEN]: 'fleet-reviewer' } });
    llm = await startLlmTestServer();
    env = topologyEnv(testEnv('unused'), {
      REDIS_CLUSTER_NODES: cluster.nodeList,
      FLEET_PREFIX: `{${uid('fleet')}}`,
      FLEET_GITHUB_API_URL: github.url,
      FLEET_LLM_BASE_URL: llm.url,
      FLEET_LLM_API_KEY: 'llm-test-key-123456',
      FLEET_REVIEWER_GITHUB_TOKEN: REVIEWER_TOKEN,
      FLEET_CI_POLL_MS: '300',
      FLEET_BOARD_USER: ADMIN.user,
      FLEET_BOARD_PASSWORD: ADMIN.password,
    });
    fleet = await startTestFleet(env, ['bridge', 'spawn', 'review', 'merge', 'board'], { runtime });
  }, 60_000);

  afterAll(async () => {
    await fleet?.stop();
    results?.close();
    redis?.disconnect();
    await llm?.close();
    await github?.close();
    await cluster?.stop();
  });

  it('refuses a FLEET_PREFIX without a hash tag at start, naming it', async () => {
    const env = topologyEnv(testEnv('unused'), { REDIS_CLUSTER_NODES: cluster.nodeList, FLEET_PREFIX: 'fleet' });
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(/FLEET_PREFIX: "fleet" has no Redis Cluster hash tag.*\{fleet\}/);
    // A config built some other way is checked again by startFleet, before any connection is made.
    const config = { ...loadConfig(topologyEnv(env, { FLEET_PREFIX: '{fleet}' })), prefix: 'fleet' };
    await expect(startFleet({ config, roles: ['bridge'], logger: createLogger({ level: 'silent' }) })).rejects.toThrow(
      /FLEET_PREFIX: "fleet" has no Redis Cluster hash tag/,
    );
    // `{}` is no hash tag: Redis would hash the whole key.
    expect(() => loadConfig(topologyEnv(env, { FLEET_PREFIX: '{}fleet' }))).toThrow(/FLEET_PREFIX/);
  });

  it('round-trips a legacy request through the bridge: eleven keys, one result, stored in fleet:result', async () => {
    const request = legacyRequest();
    const id = request.request_id as string;
    await publishJson(redis, channels.spawn, request);
    const result = await results.next(id, 30_000);
    expect(result).toMatchObject({ request_id: id, success: true, error_type: null });
    expect(Object.keys(result).sort()).toEqual([...LEGACY_RESULT_KEYS].sort());
    expect(JSON.parse((await redis.get(channels.resultKey(id)))!)).toEqual(result);
    expect(runs.get(id)).toBe(1);
    expect(results.all(id)).toHaveLength(1);
  });

  it('runs a two-scope flow (PRs, LLM review, merges) with the GitHub limiters on the cluster', async () => {
    const repo = `acme/${uid('repo')}`;
    github.addRepo(repo);
    const request = legacyRequest({
      repo,
      github_token: WORKER_TOKEN,
      tasks: [
        { scope: 'frontend', task_content: 'change the frontend' },
        { scope: 'backend', task_content: 'change the backend' },
      ],
      review: true,
      merge: true,
      result_format: 'v2',
    });
    await publishJson(redis, channels.spawn, request);
    const result = (await results.next(request.request_id as string, 120_000)) as FlowResult;
    expect(result).toMatchObject({ success: true, error_type: null });
    expect(result.scopes.map((s) => [s.scope, s.merged])).toEqual([
      ['frontend', true],
      ['backend', true],
    ]);
    for (const pr of result.pull_requests) expect(github.pullState(repo, pr.number).merged).toBe(true);
    expect(github.totalViolations()).toBe(0);
    // The limiters kept their state on the cluster, all of one token's keys in the prefix's slot.
    const limiterKeys: string[] = [];
    for (const node of cluster.nodes) {
      const { Redis: Plain } = await import('ioredis');
      const client = new Plain(node.port, node.host);
      limiterKeys.push(...(await client.keys(`b_${fleet.config.prefix}:gh:*`)));
      client.disconnect();
    }
    expect(limiterKeys.length).toBeGreaterThan(0);
    const slots = new Set(await Promise.all(limiterKeys.map((k) => redis.call('CLUSTER', 'KEYSLOT', k))));
    expect(slots.size).toBe(1);
  });

  it('serves the board, which lists the queues with their jobs', async () => {
    const response = await fetch(`${baseUrl(fleet)}/admin/queues/api/queues?activeQueue=spawn`, {
      headers: { authorization: basic(ADMIN) },
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { queues: { name: string; counts: Record<string, number> }[] };
    const spawn = body.queues.find((q) => q.name === 'spawn');
    expect(spawn?.counts.completed).toBeGreaterThanOrEqual(1);
  });

  it('answers operator commands (fleet status) through the cluster', async () => {
    const ops = await openOps({ ...env, FLEET_DATA_DIR: fleet.config.dataDir });
    try {
      const status = await readStatus(ops);
      expect(status.prefix).toBe(fleet.config.prefix);
      expect(status.queues.spawn.completed).toBeGreaterThanOrEqual(1);
      expect(status.hosts.map((h) => h.host)).toContain(fleet.config.hostId);
      expect(status.bridges.length).toBe(1);
    } finally {
      await ops.close();
    }
  });
});
