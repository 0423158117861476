import { startRedis } from '../test/support/redis.ts';
import { startClusterTopology, startSentinelTopology } from '../test/support/redis-topology.ts';
import { fleetPath, type LatencyRow } from './dispatch.ts';

/**
 * Dispatch overhead (publish on worker:spawn → container create, through the real bridge, queue and
 * spawn processor) on the three topologies fleet connects to, in one run on this machine: a single
 * redis-server (the baseline), a Sentinel-managed primary with a replica, and a three-primary
 * Cluster. Same fleet code, same loopback; only the connections differ.
 */
export async function benchRedisTopologies(
  options: { idle?: number; burst?: number; cap?: number } = {},
): Promise<(LatencyRow & { redis: string })[]> {
  const idle = options.idle ?? 200;
  const burst = options.burst ?? 500;
  const cap = options.cap ?? 8;
  const rows: (LatencyRow & { redis: string })[] = [];
  const measure = async (redis: string, env: Record<string, string>) => {
    rows.push({ redis, ...(await fleetPath(env, 'idle', idle, 1)) });
    rows.push({ redis, ...(await fleetPath(env, 'burst', burst, cap)) });
  };
  const single = await startRedis();
  try {
    await measure('single (baseline)', { REDIS_URL: single.url });
  } finally {
    await single.stop();
  }
  const sentinel = await startSentinelTopology();
  try {
    await measure('sentinel (1 primary + 1 replica)', { REDIS_SENTINELS: sentinel.sentinelList, REDIS_SENTINEL_NAME: sentinel.name });
  } finally {
    await sentinel.stop();
  }
  const cluster = await startClusterTopology();
  try {
    await measure('cluster (3 primaries)', { REDIS_CLUSTER_NODES: cluster.nodeList });
  } finally {
    await cluster.stop();
  }
  return rows;
}
