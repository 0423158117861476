import { Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetClient } from '../../src/client.ts';
import type { ContainerSpec, InputFile, WorkerContainer } from '../../src/container-runtime.ts';
import { channels, type SpawnResult } from '../../src/protocol.ts';
import { connectRedis, redisTargetFromEnv, type RedisTarget } from '../../src/redis-connection.ts';
import { completedEvent, FakeRuntime } from '../support/fakes/runtime.ts';
import {
  legacyRequest,
  publishJson,
  ResultListener,
  startTestFleet,
  TEST_SECRET_KEY,
  testEnv,
  uid,
  type TestFleet,
} from '../support/fleet.ts';
import { startSentinelTopology, type SentinelTopology } from '../support/redis-topology.ts';
import { requestOf, topologyEnv } from './support.ts';

const BURST = 40;
const KILL_AFTER = 15;

/** Containers that take a moment, so jobs are running (holding locks) when the primary dies. */
class BusyRuntime extends FakeRuntime {
  readonly runs = new Map<string, number>();
  constructor(private readonly workMs: number) {
    super(() => ({ lines: [completedEvent()] }));
  }
  override async create(spec: ContainerSpec, files: InputFile[]): Promise<WorkerContainer> {
    this.runs.set(requestOf(spec), (this.runs.get(requestOf(spec)) ?? 0) + 1);
    // Simulated work, not synchronisation: it only widens the window in which the kill lands mid-job.
    await new Promise((r) => setTimeout(r, this.workMs));
    return super.create(spec, files);
  }
}

// Two lock durations: 10 s outlasts the failover (workers keep their locks); 1 s lapses during it, so
// jobs stall and run once more, and fleet:result still lets only one result out.
describe.each([
  { lockSeconds: 10, locks: 'kept', workMs: 150 },
  { lockSeconds: 1, locks: 'lapsed', workMs: 1_000 },
])(
  'Sentinel failover (locks $locks): one primary, one replica, three sentinels; the primary is killed -9 mid-burst',
  ({ lockSeconds, locks, workMs }) => {
    let topology: SentinelTopology;
    let target: RedisTarget;
    let redis: Redis;
    let results: ResultListener;
    let fleet: TestFleet;
    let client: FleetClient;
    const runtime = new BusyRuntime(workMs);

    beforeAll(async () => {
      topology = await startSentinelTopology();
      const vars = { REDIS_SENTINELS: topology.sentinelList, REDIS_SENTINEL_NAME: topology.name };
      target = redisTargetFromEnv(vars)!;
      redis = connectRedis(target, 'command', 'test:cmd');
      redis.on('error', () => {});
      results = await ResultListener.start(target);
      fleet = await startTestFleet(
        topologyEnv(testEnv('unused'), {
          ...vars,
          FLEET_HOST_CONCURRENCY: '4',
          FLEET_LOCK_DURATION: String(lockSeconds),
          FLEET_STALLED_INTERVAL: '1',
        }),
        ['bridge', 'spawn'],
        { runtime },
      );
      client = new FleetClient({ redis: target, prefix: fleet.config.prefix, secretKey: TEST_SECRET_KEY });
    }, 60_000);

    afterAll(async () => {
      await client?.close();
      await fleet?.stop();
      results?.close();
      redis?.disconnect();
      await topology?.stop();
    });

    /** The request's result: from pub/sub, or from fleet:result when it was published while we reconnected. */
    async function finalOf(id: string): Promise<SpawnResult> {
      for (;;) {
        const stored = await redis.get(channels.resultKey(id));
        if (stored) return JSON.parse(stored) as SpawnResult;
        await results.next(id, 2_000).catch(() => null);
      }
    }

    it('gives every request acknowledged before the kill exactly one result, reruns only stalled jobs, and the bridge serves again', async () => {
      const before: string[] = [];
      const after: string[] = [];
      let kill: Awaited<ReturnType<SentinelTopology['killPrimary']>> | undefined;
      let killedAt = 0;
      // The bridge resubscribes on the promoted primary: from the kill on, publish a legacy probe every
      // 100 ms (one published while the bridge still reconnects is lost, as PROTOCOL §1 says) until
      // one has been served. The first probe job's creation time is when the bridge took requests again.
      const probes: string[] = [];
      const probe = async () => {
        for (let i = 0; i < 300; i++) {
          const request = legacyRequest({ request_id: uid('probe') });
          probes.push(request.request_id as string);
          await publishJson(redis, channels.spawn, request);
          if ((await redis.exists(...probes.map((id) => channels.resultKey(id)).slice(-20))) > 0) return;
          // Pacing of the probes, not synchronisation: the loop ends on the served probe above.
          await new Promise((r) => setTimeout(r, 100));
        }
      };
      let probing: Promise<void> | undefined;
      for (let i = 0; i < BURST; i++) {
        const request = legacyRequest({ request_id: uid('burst') });
        // Enqueues after the kill wait out the failover (maxRetriesPerRequest: null) and land on the new primary.
        await client.enqueue(request as Parameters<FleetClient['enqueue']>[0]);
        (kill ? after : before).push(request.request_id as string);
        if (before.length === KILL_AFTER && !kill) {
          killedAt = Date.now();
          kill = await topology.killPrimary();
          probing = probe();
        }
      }
      const promoted = await kill!.promoted;
      expect(promoted.port).not.toBe(kill!.killedPort);

      await probing;
      expect(fleet.bridge!.stats()).toMatchObject({ subscribed: true });
      expect(fleet.bridge!.stats().resubscribes).toBeGreaterThanOrEqual(1);

      const connection = connectRedis(target, 'queue', 'test:queue');
      const queue = new Queue('spawn', { connection, prefix: fleet.config.prefix });
      try {
        const served = (await Promise.all(probes.map((id) => Job.fromId(queue, id)))).filter((job) => job !== undefined);
        expect(served.length).toBeGreaterThan(0);
        const bridgeBackMs = Math.min(...served.map((job) => job.timestamp)) - killedAt;
        const reran: string[] = [];
        const failed: string[] = [];
        for (const id of [...before, ...after]) {
          const final = await finalOf(id);
          expect(final, id).toMatchObject({ request_id: id });
          // With kept locks nothing stalls; with lapsed ones a job may stall out (crash) but is never lost.
          if (locks === 'kept') expect(final.success, id).toBe(true);
          if (!final.success) failed.push(`${id}: ${final.error_type} ${final.error_message}`);
          // Never two results on the channel for one request: fleet:result decided.
          expect(results.all(id).length, id).toBeLessThanOrEqual(1);
          const runs = runtime.runs.get(id) ?? 0;
          expect(runs, id).toBeGreaterThanOrEqual(1);
          expect(runs, id).toBeLessThanOrEqual(2);
          if (runs === 2) {
            // A second run happens only for a job whose lock lapsed, and BullMQ counted that stall.
            const job = await Job.fromId(queue, id);
            expect(job?.stalledCounter, id).toBeGreaterThanOrEqual(1);
            reran.push(id);
          }
        }
        console.info(
          `[redis-ha] locks ${locks}: sentinel failover (kill -9 to +switch-master): ${promoted.failoverMs} ms; bridge serving again after ${bridgeBackMs} ms; ` +
            `${before.length} acknowledged before the kill and ${after.length} after, all with exactly one result; reran after a stall: ${reran.length}; failed: ${failed.length ? failed.join('; ') : 0}`,
        );
      } finally {
        await queue.close();
        connection.disconnect();
      }
    }, 120_000);
  },
);
