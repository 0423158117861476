/**
 * The bench processor unit tests run on: a real redis-server, real BullMQ queues and jobs, no Worker
 * loop. A test adds a job (or a flow), takes it into `active` with a token the way a worker would
 * (`Worker.getNextJob` on a worker that never runs), calls the processor function itself, and then
 * settles the job as BullMQ's worker would. moveToWaitingChildren, updateData, getChildrenValues,
 * moveToDelayed and moveToWait all run for real.
 */
import { randomBytes } from 'node:crypto';
import { FlowProducer, Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { pino } from 'pino';
import { QUEUE_NAMES, type QueueName } from '../../queues/common.ts';
import type { MergeQueue } from '../../queues/merge.ts';
import type { ReviewQueue } from '../../queues/review.ts';
import type { SpawnQueue } from '../../queues/spawn.ts';
import { buildRequestFlow } from '../../src/flow/build.ts';
import type { FlowStepDeps } from '../../src/flow/steps.ts';
import { fleetKeys, type FleetKeys } from '../../src/keys.ts';
import { channels, type SpawnRequest, type WorkerResult } from '../../src/protocol.ts';
import { createSecretBox } from '../../src/secrets.ts';
import type { FakeGitHub } from '../support/fakes/forge.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';

export const uid = (label = 't') => `${label}-${randomBytes(4).toString('hex')}`;
export const silentLogger = pino({ level: 'silent' });
export const secrets = createSecretBox('unit-test-secret-key-of-32-characters-or-more');
/** Shaped like a real token, so the redactor's shape rules would catch it too. */
export const WORKER_TOKEN = `ghp_${'W0rkerUnitToken'.repeat(3)}`;
export const REVIEWER_TOKEN = `ghp_${'Rev1ewerUnitToken'.repeat(3)}`;
/** The fixed clock of every test: results and events carry it. */
export const NOW = Date.parse('2030-01-02T03:04:05.000Z');

/** BullMQ's moved-the-job signals: the job is parked, not finished. */
const MOVED = new Set(['WaitingChildrenError', 'DelayedError', 'WaitingError']);

export type Settled<R> = { value: R; error?: undefined } | { error: Error; value?: undefined };

/** One test's queues under their own prefix, on the file's redis-server. */
export class Bench {
  readonly prefix = uid('unit');
  readonly keys: FleetKeys = fleetKeys(this.prefix);
  readonly redis: Redis;
  readonly queues: { spawn: SpawnQueue; review: ReviewQueue; merge: MergeQueue };
  readonly flows: FlowProducer;
  private readonly takers = new Map<QueueName, Worker>();

  constructor(private readonly url: string) {
    const opts = { connection: { url }, prefix: this.prefix };
    this.redis = new Redis(url);
    this.queues = {
      spawn: new Queue(QUEUE_NAMES.spawn, opts) as SpawnQueue,
      review: new Queue(QUEUE_NAMES.review, opts) as ReviewQueue,
      merge: new Queue(QUEUE_NAMES.merge, opts) as MergeQueue,
    };
    this.flows = new FlowProducer(opts);
  }

  /**
   * Takes the next waiting job of `queue` into `active`, as a worker would; throws when none waits.
   * `id` checks it is the job the test expects.
   */
  async take<D = unknown, R = unknown>(queue: QueueName, id?: string): Promise<{ job: Job<D, R>; token: string }> {
    let taker = this.takers.get(queue);
    if (!taker) {
      taker = new Worker(queue, null, { connection: { url: this.url }, prefix: this.prefix, autorun: false });
      this.takers.set(queue, taker);
    }
    const token = uid('lock');
    const job = (await taker.getNextJob(token, { block: false })) as Job<D, R> | undefined;
    if (!job) throw new Error(`no job waits on ${queue}`);
    if (id !== undefined && job.id !== id) throw new Error(`took ${job.id} from ${queue}, expected ${id}`);
    return { job, token };
  }

  /**
   * Runs a processor on a taken job and settles the job as BullMQ's worker does: a value completes it,
   * a moved-the-job error leaves it where the processor put it, any other error fails it (BullMQ then
   * retries it while attempts remain).
   */
  async settle<R>(job: Job, token: string, run: Promise<R>): Promise<Settled<R>> {
    try {
      const value = await run;
      await job.moveToCompleted(value, token, false);
      return { value };
    } catch (error) {
      const e = error as Error;
      if (!MOVED.has(e.name)) await job.moveToFailed(e, token, false);
      return { error: e };
    }
  }

  /** Takes the next job of `queue` and completes it with `value` (a child this test plays). */
  async complete(queue: QueueName, value: unknown, id?: string): Promise<Job> {
    const { job, token } = await this.take(queue, id);
    await job.moveToCompleted(value, token, false);
    return job;
  }

  /** Takes the next job of `queue` and fails it for good. */
  async fail(queue: QueueName, message: string, id?: string): Promise<Job> {
    const { job, token } = await this.take(queue, id);
    await job.moveToFailed(new UnrecoverableError(message), token, false);
    return job;
  }

  async state(queue: QueueName, id: string): Promise<string> {
    const job = await (this.queues[queue] as Queue).getJob(id);
    return job ? job.getState() : 'missing';
  }

  /**
   * Adds a request's flow as the bridge does (buildRequestFlow: root → merge → review → spawn per scope,
   * as the request asks), with the token sealed. Returns the request.
   */
  async addFlow(overrides: Partial<SpawnRequest> = {}): Promise<SpawnRequest> {
    const request: SpawnRequest = {
      request_id: uid('req'),
      repo: 'acme/widgets',
      task_content: 'Add a wishlist',
      task_title: 'Wishlist',
      model: 'claude-sonnet-4-5-20250929',
      agents_content: null,
      timeout_seconds: 600,
      agent: 'claude',
      mode: 'pr',
      review: true,
      result_format: 'v2',
      ...overrides,
    };
    await this.flows.add(
      buildRequestFlow(request, secrets.seal(WORKER_TOKEN), { attempts: 1, keepLogs: 100, acceptedAt: NOW - 60_000, source: 'api' }),
    );
    return request;
  }

  /** The review and merge steps' dependencies, on this bench and `github`. */
  stepDeps(github: FakeGitHub, extra: Partial<FlowStepDeps> = {}): FlowStepDeps {
    return {
      forges: github.forges,
      hostToken: undefined,
      secrets,
      redis: this.redis,
      keys: this.keys,
      spawnQueue: this.queues.spawn,
      reviewQueue: this.queues.review,
      requestQueue: this.queues.merge,
      logger: silentLogger,
      now: () => NOW,
      ...extra,
    };
  }

  async close(): Promise<void> {
    await Promise.all([...this.takers.values()].map((w) => w.close()));
    await Promise.all([this.flows.close(), ...Object.values(this.queues).map((q) => q.close())]);
    this.redis.disconnect();
  }
}

/**
 * Everything published on the protocol's channels (results and events), with a fence: a message
 * published after the processor returned arrives after everything it published, so `fence()`
 * resolves once the recorder holds all of it. No sleeping.
 */
export class ChannelRecorder {
  readonly messages: { channel: string; body: Record<string, unknown> }[] = [];
  private readonly fences = new Map<string, () => void>();

  private constructor(
    private readonly sub: Redis,
    private readonly pub: Redis,
  ) {
    sub.on('pmessage', (_pattern: string, channel: string, message: string) => {
      const fence = this.fences.get(channel);
      if (fence) return fence();
      this.messages.push({ channel, body: JSON.parse(message) as Record<string, unknown> });
    });
  }

  static async start(url: string): Promise<ChannelRecorder> {
    const recorder = new ChannelRecorder(new Redis(url), new Redis(url));
    await recorder.sub.psubscribe('worker:*', 'test-fence:*');
    return recorder;
  }

  async fence(): Promise<void> {
    const channel = `test-fence:${uid()}`;
    const passed = new Promise<void>((resolve) => this.fences.set(channel, resolve));
    await this.pub.publish(channel, '{}');
    await passed;
    this.fences.delete(channel);
  }

  /** Results published for a request. */
  results(requestId: string): Record<string, unknown>[] {
    return this.messages.filter((m) => m.channel === channels.result(requestId)).map((m) => m.body);
  }

  /** Events of a request, as its own channel carried them. */
  events(requestId: string): Record<string, unknown>[] {
    return this.messages.filter((m) => m.channel === channels.events(requestId)).map((m) => m.body);
  }

  /** Every message whose text holds `text` (a secret must never be there). */
  containing(text: string): unknown[] {
    return this.messages.filter((m) => JSON.stringify(m.body).includes(text));
  }

  close(): void {
    this.sub.disconnect();
    this.pub.disconnect();
  }
}

/** A worker step's result as the spawn processor returns it; successful unless `fields` say otherwise. */
export function workerResult(requestId: string, fields: Partial<WorkerResult> = {}): WorkerResult {
  return {
    request_id: requestId,
    success: true,
    exit_code: 0,
    output: 'done',
    commit_sha: 'c0ffee',
    branch: null,
    files_changed: ['a.txt'],
    summary: 'done',
    error_type: null,
    error_message: null,
    logs_tail: null,
    ...fields,
  };
}

/** What a processor test file shares: one redis-server per file, a fresh Bench (prefix) per test, and a recorder. */
export interface Lab {
  readonly server: TestRedis;
  readonly bench: Bench;
  readonly recorder: ChannelRecorder;
}

/** Registers the per-file and per-test hooks every processor test file needs and returns what they make. */
export function useLab(): Lab {
  const lab = {} as { server: TestRedis; bench: Bench; recorder: ChannelRecorder };
  beforeAll(async () => {
    lab.server = await startRedis();
    lab.recorder = await ChannelRecorder.start(lab.server.url);
  });
  afterAll(async () => {
    lab.recorder?.close();
    await lab.server?.stop();
  });
  beforeEach(() => {
    lab.bench = new Bench(lab.server.url);
  });
  afterEach(async () => {
    await lab.bench.close();
  });
  return lab;
}
