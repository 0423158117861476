// Publishes a burst of legacy spawn requests on worker:spawn, all at once (one pipeline), as an
// orchestrator fanning out a big job does. Runs as its own process so the sender's memory and CPU
// stay out of the bridge's figures.
//   node test/support/publish-burst.mjs REDIS_URL COUNT TASK_BYTES ID_PREFIX
// Prints one JSON line: {"published": n, "receivers": total subscribers reached, "ms": elapsed}.
import { Redis } from 'ioredis';

const [url, countText, bytesText, idPrefix] = process.argv.slice(2);
const count = Number(countText);
const bytes = Number(bytesText);
if (!url || !(count > 0) || !(bytes > 0) || !idPrefix) {
  console.error('usage: publish-burst.mjs REDIS_URL COUNT TASK_BYTES ID_PREFIX');
  process.exit(2);
}
// Lines of text, as a task is: JSON-escaping adds a little, as it does for real tasks.
const line = 'Refactor the module so that every handler is "small" and tested.\n';
const task = line.repeat(Math.ceil(bytes / line.length)).slice(0, bytes);
const redis = new Redis(url, { maxRetriesPerRequest: null });
const pipeline = redis.pipeline();
for (let i = 0; i < count; i++) {
  pipeline.publish(
    'worker:spawn',
    JSON.stringify({
      request_id: `${idPrefix}-${i}`,
      repo: 'acme/widgets',
      github_token: 'ghp_burstburstburstburstburstburstburst1',
      task_content: task,
      task_title: 'burst',
      model: 'claude-sonnet-4-5-20250929',
      agents_content: null,
      timeout_seconds: 600,
    }),
  );
}
const started = performance.now();
const replies = await pipeline.exec();
const receivers = replies.reduce((sum, [error, n]) => sum + (error ? 0 : Number(n)), 0);
console.log(JSON.stringify({ published: count, receivers, ms: Math.round(performance.now() - started) }));
redis.disconnect();
