import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { loadConfig } from '../src/config.ts';
import { startFleet } from '../src/fleet.ts';
import { createLogger } from '../src/logger.ts';
import { channels } from '../src/protocol.ts';
import { startRedis } from '../test/support/redis.ts';

/**
 * Redis memory per thousand queued requests, for README "Redis in production": INFO memory's
 * used_memory before and after 1000 legacy requests go through a bridge onto the spawn queue (no
 * spawn role runs, so they stay queued), for a small task and for a 16 KiB one. The baseline is the
 * same server with the bridge running and nothing queued.
 */
export async function benchRedisMemory(options: { count?: number } = {}): Promise<object[]> {
  const count = options.count ?? 1000;
  const server = await startRedis();
  const redis = new Redis(server.url);
  const rows: object[] = [];
  try {
    for (const taskBytes of [200, 16 * 1024]) {
      const prefix = `mem${taskBytes}`;
      const config = loadConfig({
        REDIS_URL: server.url,
        FLEET_PREFIX: prefix,
        FLEET_BOARD_PORT: '0',
        FLEET_SECRET_KEY: 'bench-secret-key-with-at-least-32-characters',
        FLEET_LOG_LEVEL: 'silent',
      });
      const fleet = await startFleet({ config, roles: ['bridge'], logger: createLogger({ level: 'silent' }) });
      const queue = new Queue('spawn', { connection: { url: server.url }, prefix });
      try {
        const used = async () => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
        const before = await used();
        const task = 'x'.repeat(taskBytes);
        for (let i = 0; i < count; i++) {
          await redis.publish(
            channels.spawn,
            JSON.stringify({
              request_id: `mem-${taskBytes}-${i}`,
              repo: 'acme/widgets',
              github_token: 'ghp_benchbenchbenchbenchbenchbenchbench',
              task_content: task,
              task_title: 'AI generated changes',
              model: 'claude-sonnet-4-5-20250929',
              agents_content: null,
              timeout_seconds: 600,
            }),
          );
        }
        // Pub/sub hands the messages over asynchronously: wait until the bridge has queued them all.
        const deadline = Date.now() + 60_000;
        let queued = await queue.getWaitingCount();
        while (queued < count && Date.now() < deadline) {
          await fleet.bridge!.idle();
          await new Promise((r) => setTimeout(r, 100));
          queued = await queue.getWaitingCount();
        }
        const after = await used();
        rows.push({
          task_bytes: taskBytes,
          queued,
          used_memory_before_mb: (before / 2 ** 20).toFixed(2),
          used_memory_after_mb: (after / 2 ** 20).toFixed(2),
          mb_per_1000_queued: ((((after - before) / queued) * 1000) / 2 ** 20).toFixed(2),
        });
      } finally {
        await queue.close();
        await fleet.stop();
      }
    }
  } finally {
    redis.disconnect();
    await server.stop();
  }
  return rows;
}
