import { burstThroughBridge, burstToRawSubscriber } from './bench/bridge-burst.ts';
import { startRedis } from './test/support/redis.ts';
import { FLEET_REDIS_ARGS } from './src/embedded-redis.ts';
const [mode, what, countText, bytesText] = process.argv.slice(2);
const server = await startRedis({ args: mode === 'fleet' ? FLEET_REDIS_ARGS : [] });
try {
  const f = what === 'raw' ? await burstToRawSubscriber(server.url, Number(countText), Number(bytesText)) : await burstThroughBridge(server.url, Number(countText), Number(bytesText), { concurrency: Number(process.env.C ?? 64) });
  console.log(mode, what, countText, bytesText, JSON.stringify(f));
} finally { await server.stop(); }
process.exit(0);
