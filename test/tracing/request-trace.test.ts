import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it, describe } from 'vitest';
import { channels, LEGACY_RESULT_KEYS, type FlowResult } from '../../src/protocol.ts';
import { completedEvent, FakeRuntime } from '../support/fakes/runtime.ts';
import { legacyRequest, publishJson, ResultListener, startTestFleet, testEnv, uid, type TestFleet } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { startGitHubTestServer, type GitHubTestServer } from '../servers/github.ts';
import { startLlmTestServer, type LlmTestServer } from '../servers/llm.ts';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../servers/otlp.ts';

/**
 * `a` is not after `b`, to the millisecond: the SDK takes a span's times from clocks anchored at different moments
 * (a span of another trace, a remote parent), so times of two spans differ by a fraction of a millisecond.
 */
const notAfter = (a: bigint, b: bigint) => a / 1_000_000n <= b / 1_000_000n + 1n;

const WORKER_TOKEN = `ghp_${'W0rkerTokenForTraces'.repeat(2)}`;
const REVIEWER_TOKEN = `ghp_${'Rev1ewerTokenForTraces'.repeat(2)}`;

describe('OpenTelemetry: one trace per request, exported over OTLP/HTTP (real Redis and BullMQ, fake containers)', () => {
  let redisServer: TestRedis;
  let redis: Redis;
  let github: GitHubTestServer;
  let llm: LlmTestServer;
  let otlp: OtlpReceiver;
  let results: ResultListener;
  let fleet: TestFleet;
  /** Each worker "pushes" its branch on the test GitHub, as a real one would, and reports the commit. */
  const runtime = new FakeRuntime((spec) => {
    if (!spec.env.FLEET_SCOPE) return { lines: ['a plain worker', completedEvent()] };
    const sha = randomBytes(20).toString('hex');
    github.pushBranch(spec.env.REPO!, spec.env.FLEET_BRANCH!, sha);
    return {
      lines: [
        `working on ${spec.env.FLEET_SCOPE}`,
        completedEvent({ commit_sha: sha, branch: spec.env.FLEET_BRANCH, files_changed: [`${spec.env.FLEET_SCOPE}.ts`] }),
      ],
    };
  });

  beforeAll(async () => {
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    github = await startGitHubTestServer({ users: { [WORKER_TOKEN]: 'fleet-bot', [REVIEWER_TOKEN]: 'fleet-reviewer' } });
    llm = await startLlmTestServer();
    otlp = await startOtlpReceiver();
    results = await ResultListener.start(redisServer.url);
    fleet = await startTestFleet(
      testEnv(redisServer.url, undefined, {
        FLEET_GITHUB_API_URL: github.url,
        FLEET_LLM_BASE_URL: llm.url,
        FLEET_LLM_API_KEY: 'llm-test-key-123456',
        FLEET_REVIEWER_GITHUB_TOKEN: REVIEWER_TOKEN,
        FLEET_CI_POLL_MS: '300',
        OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
        OTEL_SERVICE_NAME: 'fleet-under-test',
        // Spans go out within 50 ms of ending, not the SDK's 5 s.
        OTEL_BSP_SCHEDULE_DELAY: '50',
      }),
      ['bridge', 'spawn', 'review', 'merge'],
      { runtime },
    );
  });
  afterAll(async () => {
    await fleet?.stop();
    await results?.close();
    await otlp?.close();
    await llm?.close();
    await github?.close();
    redis?.disconnect();
    await redisServer?.stop();
  });

  // Before the flow test, which stops the fleet to flush its spans.
  it('a legacy request is traced too, but its result keeps exactly the eleven legacy keys', async () => {
    const request = legacyRequest({ github_token: WORKER_TOKEN });
    const id = request.request_id as string;
    await publishJson(redis, channels.spawn, request);
    const result = await results.next(id, 60_000);
    expect(Object.keys(result)).toEqual([...LEGACY_RESULT_KEYS]);
    const data = JSON.parse((await redis.hget(`${fleet.config.prefix}:spawn:${id}`, 'data'))!) as { traceId?: string };
    expect(data.traceId).toMatch(/^[0-9a-f]{32}$/);
    const run = await otlp.waitForSpan((s) => s.name === 'container run' && s.attributes['fleet.request_id'] === id);
    expect(run.traceId).toBe(data.traceId);
  });

  it('a two-scope flow request (review, merge) is one trace: bridge → enqueue → jobs → containers → review → CI → merge → result', async () => {
    const repo = `acme/${uid('repo')}`;
    github.addRepo(repo);
    const request = legacyRequest({
      repo,
      github_token: WORKER_TOKEN,
      tasks: [
        { scope: 'web', task_content: 'web task' },
        { scope: 'api', task_content: 'api task' },
      ],
      review: true,
      merge: true,
      result_format: 'v2',
    });
    const id = request.request_id as string;
    await publishJson(redis, channels.spawn, request);
    const result = (await results.next(id, 60_000)) as FlowResult & { trace_id?: string };
    expect(result).toMatchObject({ success: true, error_type: null });
    expect(result.scopes.map((s) => s.merged)).toEqual([true, true]);

    // The v2 result names the trace, after the legacy keys; the root job's data carries it too.
    const traceId = result.trace_id!;
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(Object.keys(result).indexOf('trace_id')).toBeGreaterThan(Object.keys(result).indexOf('logs_tail'));
    const root = JSON.parse((await redis.hget(`${fleet.config.prefix}:merge:${id}`, 'data'))!) as { traceId?: string };
    expect(root.traceId).toBe(traceId);
    // Each worker got the trace as TRACEPARENT (W3C: version, trace id, parent span id, sampled).
    expect(runtime.createCalls.filter((spec) => spec.env.FLEET_REQUEST_ID === id).map((spec) => spec.env.TRACEPARENT)).toEqual([
      expect.stringMatching(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`)),
      expect.stringMatching(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`)),
    ]);

    // Every span is out once the root's processing span has ended and the exporter flushed (stop flushes).
    await otlp.waitForSpan((s) => s.name === 'process merge' && s.attributes['bullmq.job.id'] === id && s.traceId === traceId);
    await fleet.stop();

    const ofRequest = (s: ReceivedSpan) => {
      const jobId = String(s.attributes['bullmq.job.id'] ?? '');
      return s.attributes['fleet.request_id'] === id || jobId === id || jobId.startsWith(`${id}~`);
    };
    // Exactly one trace holds everything of this request.
    expect(new Set(otlp.spans.filter(ofRequest).map((s) => s.traceId))).toEqual(new Set([traceId]));
    const spans = otlp.spans.filter((s) => s.traceId === traceId);
    expect(spans.every((s) => s.serviceName === 'fleet-under-test')).toBe(true);

    // One root, the bridge's receive; every other span's parent is in the trace.
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const roots = spans.filter((s) => s.parentSpanId === undefined);
    expect(roots.map((s) => s.name)).toEqual(['bridge receive']);
    expect(roots[0]!.attributes).toMatchObject({ 'fleet.request_id': id, 'fleet.intake': 'enqueued' });
    expect(spans.filter((s) => s.parentSpanId !== undefined && !byId.has(s.parentSpanId))).toEqual([]);
    const parentOf = (s: ReceivedSpan) => byId.get(s.parentSpanId!)!;
    const ancestors = (s: ReceivedSpan): string[] => (s.parentSpanId ? [parentOf(s).name, ...ancestors(parentOf(s))] : []);
    const named = (name: string, jobId?: string) =>
      spans.filter((s) => s.name === name && (jobId === undefined || s.attributes['bullmq.job.id'] === jobId));

    // The enqueue (BullMQ's addFlow) is the receive's child.
    const [addFlow] = named('addFlow merge');
    expect(parentOf(addFlow!).name).toBe('bridge receive');

    for (const scope of ['web', 'api']) {
      const [spawn] = named('process spawn', `${id}~${scope}`);
      expect(spawn, `process spawn of ${scope}`).toBeDefined();
      // The job's span descends from the enqueue, through BullMQ's propagation in the job.
      expect(ancestors(spawn!)).toContain('addFlow merge');
      const children = spans.filter((s) => s.parentSpanId === spawn!.spanId);
      const create = children.find((s) => s.name === 'container create')!;
      const run = children.find((s) => s.name === 'container run')!;
      const start = spans.find((s) => s.name === 'container start' && s.parentSpanId === run.spanId)!;
      expect([create, run, start].every(Boolean)).toBe(true);
      // In order: the job starts, the container is created, started and run; then its review, then its merge.
      expect(notAfter(spawn!.startNs, create.startNs)).toBe(true);
      expect(notAfter(create.endNs, run.startNs)).toBe(true);
      expect(notAfter(run.startNs, start.startNs)).toBe(true);
      const reviews = named('process review', `${id}~${scope}~review`);
      const merges = named('process merge', `${id}~${scope}~merge`);
      expect(reviews.length).toBeGreaterThan(0);
      expect(merges.length).toBeGreaterThan(0);
      const lastReview = reviews.reduce((a, b) => (a.endNs > b.endNs ? a : b));
      const lastMerge = merges.reduce((a, b) => (a.endNs > b.endNs ? a : b));
      expect(notAfter(run.endNs, lastReview.endNs)).toBe(true);
      expect(notAfter(lastReview.endNs, lastMerge.endNs)).toBe(true);
      for (const step of [...reviews, ...merges]) expect(ancestors(step)).toContain('bridge receive');
      // The merge step looked at CI, then merged, inside its runs.
      const mergeSpanIds = new Set(merges.map((m) => m.spanId));
      const looks = spans.filter((x) => x.name === 'ci look' && mergeSpanIds.has(x.parentSpanId!));
      const merged = spans.filter((x) => x.name === 'pull request merge' && mergeSpanIds.has(x.parentSpanId!));
      expect(looks.length).toBeGreaterThan(0);
      expect(merged).toHaveLength(1);
      expect(notAfter(looks[0]!.endNs, merged[0]!.startNs)).toBe(true);
      expect(notAfter(lastReview.endNs, looks[0]!.startNs)).toBe(true);
    }

    // The one published result, by the root's processing span, after every container run.
    const published = named('result publish').filter((s) => s.attributes['fleet.published'] === true);
    expect(published).toHaveLength(1);
    expect(parentOf(published[0]!)).toMatchObject({ name: 'process merge', attributes: { 'bullmq.job.id': id } });
    const lastRun = named('container run').reduce((a, b) => (a.endNs > b.endNs ? a : b));
    expect(notAfter(lastRun.endNs, published[0]!.startNs)).toBe(true);
    expect(notAfter(roots[0]!.startNs, addFlow!.startNs)).toBe(true);
  });
});
