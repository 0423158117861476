import type { Redis } from 'ioredis';
import type { ContainerSpec } from '../../src/container-runtime.ts';
import { channels, type SpawnResult } from '../../src/protocol.ts';
import { connectRedis, type RedisTarget } from '../../src/redis-connection.ts';
import { completedEvent, FakeRuntime } from '../support/fakes/runtime.ts';

/** Test settings for a fleet on `target` instead of REDIS_URL (testEnv always sets one). */
export function topologyEnv(base: Record<string, string>, vars: Record<string, string>): Record<string, string> {
  const { REDIS_URL: _url, ...rest } = base;
  return { ...rest, ...vars };
}

/**
 * Results as they are published, through a connection that follows the topology (a Sentinel
 * subscriber reconnects to the promoted primary). Pub/sub may miss one published while it
 * reconnects: the tests also read `fleet:result:{id}`, which decides.
 */
export class TopologyResults {
  private readonly results = new Map<string, SpawnResult[]>();
  private readonly waiters = new Map<string, (r: SpawnResult) => void>();

  private constructor(private readonly client: Redis) {
    client.on('pmessage', (_p: string, channel: string, message: string) => {
      const id = channel.slice(channels.result('').length);
      const parsed = JSON.parse(message) as SpawnResult;
      this.results.set(id, [...(this.results.get(id) ?? []), parsed]);
      this.waiters.get(id)?.(parsed);
    });
  }

  static async start(target: RedisTarget): Promise<TopologyResults> {
    const client = connectRedis(target, 'subscriber', 'test:results');
    client.on('error', () => {});
    await client.psubscribe(channels.result('*'));
    return new TopologyResults(client);
  }

  all(id: string): SpawnResult[] {
    return this.results.get(id) ?? [];
  }

  next(id: string, timeoutMs = 60_000): Promise<SpawnResult> {
    const existing = this.results.get(id)?.[0];
    if (existing) return Promise.resolve(existing);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no result for ${id} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.set(id, (r) => {
        clearTimeout(timer);
        this.waiters.delete(id);
        resolve(r);
      });
    });
  }

  close(): void {
    this.client.disconnect();
  }
}

/** The request id a container was made for. */
export const requestOf = (spec: ContainerSpec) => spec.env.FLEET_REQUEST_ID!;

/** A runtime whose containers complete at once, counting the runs of each request. */
export function countingRuntime(script?: (spec: ContainerSpec) => string[]): { runtime: FakeRuntime; runs: Map<string, number> } {
  const runs = new Map<string, number>();
  const runtime = new FakeRuntime((spec) => {
    runs.set(requestOf(spec), (runs.get(requestOf(spec)) ?? 0) + 1);
    return { lines: script ? script(spec) : [completedEvent()] };
  });
  return { runtime, runs };
}
